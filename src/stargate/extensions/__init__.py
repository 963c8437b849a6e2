"""WebSocket extensions (RFC 6455 section 9); today permessage-deflate (RFC 7692)."""

from .permessage_deflate import (
    PerMessageDeflate,
    PerMessageDeflateClientOffer,
    PerMessageDeflateOffer,
)

__all__ = ["PerMessageDeflate", "PerMessageDeflateClientOffer", "PerMessageDeflateOffer"]
