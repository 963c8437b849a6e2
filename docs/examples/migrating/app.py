from pyramid.config import Configurator

from stargate.pyramid import WebSocketAwareResource, WebSocketView


class Root(WebSocketAwareResource):  # was: from stargate import WebSocketAwareResource
    __name__ = ""
    __parent__ = None


class Echo(WebSocketView):  # was: from stargate import WebSocketView
    def handler(self, websocket):  # the same method; async def works too
        self.context.add_listener(websocket)
        for message in websocket:  # was: while True: m = ws.wait(); if m is None: break
            self.context.send(message)  # to every listener of this resource


def main(global_config, **settings):
    root = Root()  # one object for the life of the process: it keeps the listeners
    with Configurator(settings=settings, root_factory=lambda request: root) as config:
        config.include("stargate.pyramid")
        # was: config.add_view(Echo, context=Root, custom_predicates=(is_websocket,))
        config.add_view(Echo, context=Root, websocket=True)
        return config.make_wsgi_app()
