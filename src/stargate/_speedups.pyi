from .events import Event

DIRECT_EVENTS: bool

def apply_mask(data: bytes | bytearray | memoryview, mask: bytes, /) -> bytes: ...
def read_messages(
    buf: bytes | bytearray | memoryview,
    pos: int,
    events: list[Event],
    expect_mask: bool,
    max_length: int,
    /,
) -> int: ...
def build_frame(
    first: int, payload: bytes | bytearray | memoryview | str, key: bytes | None, /
) -> bytes: ...
def build_header(first: int, length: int, key: bytes | None, /) -> bytes: ...
def split_upgrade_head(
    data: bytes, max_header_size: int, max_headers: int, /
) -> tuple[str, list[tuple[str, str]], str, bool, int] | None: ...

class MessageBuffer:
    def add(
        self,
        source: bytes | bytearray | memoryview,
        start: int,
        stop: int,
        key: bytes | None,
        offset: int,
        limit: int,
        /,
    ) -> None: ...
    def take(self) -> bytes: ...
    def __len__(self) -> int: ...
