"""``python -m examples.chat [--port 6543]``: the chat example on one port."""

import secrets

from examples._run import load, run

app = load("examples.chat.app")
run(
    "The chat example: rooms, names, join and leave notices.",
    lambda: app.main(
        {}, **{"pyramid.includes": "stargate.pyramid", "chat.secret": secrets.token_hex()}
    ),
)
