from django.db import close_old_connections, connections
from django.http import HttpResponse
from django.shortcuts import render

from stargate.groups import Group

from .models import Note

board = Group("board")


def page(request):
    return render(request, "board/page.html", {"notes": Note.objects.order_by("-id")[:20]})


def socket(request):
    upgrade = request.META.get("stargate.websocket")  # Django's META is the WSGI environ
    if upgrade is None:
        return HttpResponse("this URL is for WebSockets\n", status=426)
    upgrade.accept(handler)
    return HttpResponse()  # discarded: the server answers 101


def handler(ws):
    """Runs in a worker thread for the whole connection, outside any Django request."""
    board.add(ws)
    try:
        for text in ws:
            close_old_connections()  # what Django does when a request starts ...
            note = Note.objects.create(text=text[:500])
            close_old_connections()  # ... and when it ends
            board.send(f"{note.id}: {note.text}")
    finally:
        connections.close_all()  # this thread's connections: the thread serves others next
