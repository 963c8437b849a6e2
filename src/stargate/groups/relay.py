"""Group traffic between processes: channels, envelopes, order per publisher, gaps.

The hub hands the relay what must reach other processes (one publish per group send) and
gets back, from the broker, what other processes sent.  The relay numbers what this process
publishes, wraps it in the versioned binary envelope (:mod:`stargate.brokers.envelope`,
never pickle), drops its own messages when they come back, keeps the order of each
publisher (an older sequence number than one delivered is dropped), refuses malformed
envelopes, and turns the broker's gaps (a reconnect, a dropped backlog) into :class:`Gap`
events about the groups concerned.

Channels: ``g:<group>`` for a group, ``p:<hub id>`` for one process's connections
(``send_to``), ``all`` for everyone (``send_all``).  Delivery across processes is at most
once (Redis pub/sub is): see ``docs/groups.md``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from ..brokers import Broker, BrokerGap
from ..brokers.envelope import HEADER_SIZE, MAX_TARGET_SIZE, EnvelopeError, Kind, decode, encode
from .members import Message, utf8_size

logger = logging.getLogger("stargate.groups")

GROUP_PREFIX = "g:"
PROCESS_PREFIX = "p:"
EVERYONE = "all"
#: Origins (publishing processes) whose last sequence number is remembered.
MAX_ORIGINS = 4096


def group_channel(name: str) -> str:
    return GROUP_PREFIX + name


def process_channel(hub_id: str) -> str:
    return PROCESS_PREFIX + hub_id


@dataclass(frozen=True, slots=True)
class Gap:
    """Messages from other processes may have been lost (told by ``Hub.on_gap``).

    ``groups`` are the groups concerned (``None``: unknown, maybe all); ``direct`` says
    whether messages to everyone or to single connections may be concerned too;
    ``dropped`` counts this process's own messages that never left it (0 when only
    receiving was affected).  An application typically re-sends the current state to the
    members of the groups concerned.
    """

    #: What happened (``"subscriber reconnected"``, a dropped backlog ...), for logs.
    reason: str
    #: The groups whose messages may be lost; ``None``: unknown, maybe all.
    groups: frozenset[str] | None
    #: This process's own messages that never left it (0 when only receiving was hit).
    dropped: int = 0
    #: Whether messages to everyone or to single connections may be lost too.
    direct: bool = False


class Relay:
    """One hub's side of the broker: publish, receive, order, gaps."""

    def __init__(
        self,
        origin: bytes,
        broker: Broker,
        *,
        on_group: Callable[[str, Message], None],
        on_connection: Callable[[int, Message], None],
        on_everyone: Callable[[Message], None],
    ) -> None:
        self.origin = origin
        self.broker = broker
        self.on_group = on_group
        self.on_connection = on_connection
        self.on_everyone = on_everyone
        self.sequence = 0
        self.last_seen: OrderedDict[bytes, int] = OrderedDict()
        #: Envelopes from the broker refused as malformed, oversized or of another version.
        self.rejected = 0

    @property
    def hub_id(self) -> str:
        return self.origin.hex()

    def renew(self, origin: bytes) -> None:
        """A new identity (a forked child): numbering and what was seen start over."""
        self.origin = origin
        self.sequence = 0
        self.last_seen = OrderedDict()

    def check_size(self, target: str, message: Message) -> None:
        """Refuse, in the caller, a message the broker could not carry, or a target (group
        name, connection id) longer than an envelope can name or not UTF-8."""
        name_size = utf8_size(target, "a group name or connection id")
        if name_size > MAX_TARGET_SIZE:
            raise ValueError(
                f"target of {name_size} bytes exceeds the {MAX_TARGET_SIZE} bytes an "
                f"envelope can name: {target[:40]!r}..."
            )
        limit = self.broker.max_message_size - HEADER_SIZE - name_size
        size = len(message)
        if isinstance(message, str) and size * 4 > limit:
            size = len(message.encode("utf-8", "surrogatepass"))
        if size > limit:
            raise ValueError(
                f"message of {size} bytes exceeds what the broker carries ({limit} bytes)"
            )

    def publish(self, kind: Kind, target: str, message: Message) -> None:
        """On the broker's loop: one envelope, one publish, numbered in publish order."""
        broker = self.broker
        if not broker.running:
            return
        if kind is Kind.GROUP:
            channel = group_channel(target)
        elif kind is Kind.CONNECTION:
            channel = process_channel(target.rpartition(".")[0])
        else:
            channel = EVERYONE
        self.sequence += 1
        try:
            data = encode(
                self.origin, self.sequence, kind, target, message, max_size=broker.max_message_size
            )
            broker.publish(channel, data)
        except ValueError:
            logger.exception("message to %r not published", target)

    def received(self, channel: str, data: bytes) -> None:
        """On the broker's loop: a message from another process (or our own, ignored)."""
        try:
            envelope = decode(data, max_size=self.broker.max_message_size)
        except EnvelopeError as exc:
            self.rejected += 1
            if self.rejected <= 10 or self.rejected % 1000 == 0:
                logger.warning(
                    "envelope on %r refused (%d so far): %s", channel, self.rejected, exc
                )
            return
        origin = envelope.origin
        if origin == self.origin:
            return
        seen = self.last_seen
        last = seen.get(origin)
        if last is not None:
            if envelope.sequence <= last:
                return  # older than what we delivered: order per publisher is kept
            seen.move_to_end(origin)
        elif len(seen) >= MAX_ORIGINS:
            seen.popitem(last=False)
        seen[origin] = envelope.sequence
        kind = envelope.kind
        if kind is Kind.GROUP:
            if channel == group_channel(envelope.target):
                self.on_group(envelope.target, envelope.message)
        elif kind is Kind.CONNECTION:
            hub_id, _, local_id = envelope.target.rpartition(".")
            if hub_id == self.hub_id and local_id.isdigit():
                self.on_connection(int(local_id), envelope.message)
        else:
            self.on_everyone(envelope.message)


def gap_event(gap: BrokerGap) -> Gap:
    """The broker's gap (about channels) as the application's (about groups)."""
    if gap.channels is None:
        return Gap(gap.reason, None, gap.dropped, True)
    names = set()
    direct = False
    for channel in gap.channels:
        if channel.startswith(GROUP_PREFIX):
            names.add(channel[len(GROUP_PREFIX) :])
        else:
            direct = True
    return Gap(gap.reason, frozenset(names), gap.dropped, direct)
