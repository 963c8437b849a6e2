from board import views
from django.urls import path

urlpatterns = [
    path("", views.page, name="page"),
    path("ws", views.socket, name="socket"),
]
