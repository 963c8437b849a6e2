"""Groups: named sets of connections that a message is sent to at once, across processes.

``Group("job:1").send(message)`` reaches every member of the group ``job:1``, in this
process and (with a broker that spans processes, e.g. Redis) in every other one; it returns
at once and may be called from any thread, task or WSGI view.

The design (DESIGN.md, "Groups across processes"):

* A per-process :class:`Hub` owns group membership and every socket write; a
  :class:`~stargate.brokers.Broker` only moves messages between processes.
* A group send encodes the frame **once** per frame family (RFC 6455, with or without a
  shared permessage-deflate setting, or hixie), delivers to the local members first, then
  publishes **once**.  A slow member is handled by its own connection's overflow policy
  (:meth:`~stargate.server.WebSocket.send_encoded`) and never delays the others.
* A process subscribes to a group's broker channel only while it has local members, and
  ignores its own messages when they come back.
* Across processes delivery is at most once, in order per publisher; the hub tells the
  application when a gap may have happened (:meth:`Hub.on_gap`).  See ``docs/groups.md``.

Membership cleans itself up when a connection closes, and a connection that belongs to a
group stays open after its handler returns (the seed's "listeners"); removing it from its
last group after its handler returned closes it.

Groups are identified by name: two ``Group("room")`` objects of one hub are the same group.
``Group()`` without a name is an anonymous group local to its process.

A forked child is another process: every hub it inherited gets a new id (random, so unique
across hosts too, never the pid) and forgets what belonged to the parent's event loops
(members, subscriptions, mailboxes, a started broker), see :meth:`Hub._after_fork`.
Otherwise a module-level ``Group`` imported before a pre-fork server forks would give every
worker one id, and each would drop the others' messages as its own echoes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .brokers import Broker, BrokerGap, make_broker
from .brokers.envelope import HEADER_SIZE, EnvelopeError, Kind, decode, encode
from .masking import BytesLike

if TYPE_CHECKING:
    from .server.sync import SyncWebSocket
    from .server.websocket import WebSocket

__all__ = ["Gap", "Group", "Hub", "configure", "default_hub", "set_default_hub"]

logger = logging.getLogger("stargate.groups")

Message = str | bytes
_GROUP_PREFIX = "g:"
_PROCESS_PREFIX = "p:"
_EVERYONE = "all"
#: Origins (publishing processes) whose last sequence number is remembered.
_MAX_ORIGINS = 4096


def _unwrap(ws: WebSocket | SyncWebSocket) -> WebSocket:
    inner = getattr(ws, "ws", None)
    return inner if inner is not None else ws  # type: ignore[return-value]


def _normalize(message: str | BytesLike) -> Message:
    if isinstance(message, str | bytes):
        return message
    return bytes(message)


#: A combined write of messages sent from other threads carries at most this many bytes
#: (past it, the next messages go in another write).
_MAX_BATCH = 64 * 1024


class _Mailbox:
    """What other threads ask of one event loop, in order, with one wakeup per batch.

    A send from a worker thread (a WSGI view, a sync handler) is queued here rather than
    scheduled on its own: the loop is woken once for whatever accumulated, and consecutive
    sends to one group go out as **one write per member** (the frames of every message, each
    encoded once per frame family, joined).  Joins and leaves go through the same queue, so
    the operations of one thread keep their order.
    """

    __slots__ = ("hub", "items", "loop", "scheduled")

    def __init__(self, hub: Hub, loop: asyncio.AbstractEventLoop) -> None:
        self.hub = hub
        self.loop = loop
        #: ``(func, args)``; ``func`` is ``None`` for a group send ``(state, name, message)``.
        self.items: deque[tuple[Callable[..., object] | None, tuple[Any, ...]]] = deque()
        self.scheduled = False

    def post(self, func: Callable[..., object] | None, args: tuple[Any, ...]) -> None:
        self.items.append((func, args))
        if not self.scheduled:
            # Read after the append: a drain that already cleared the flag also takes this
            # item, or we schedule another (harmless if it finds nothing).
            self.scheduled = True
            try:
                self.loop.call_soon_threadsafe(self.drain)
            except RuntimeError:  # the loop is closed: its connections are gone with it
                self.items.clear()

    def drain(self) -> None:
        self.scheduled = False
        items = self.items
        hub = self.hub
        batch: list[Message] = []
        batch_state: _GroupState | None = None
        batch_name = ""
        size = 0
        for _ in range(len(items)):
            func, args = items.popleft()
            if func is None:
                state, name, message = args
                if state is batch_state and size + len(message) <= _MAX_BATCH:
                    batch.append(message)
                    size += len(message)
                    continue
                if batch_state is not None:
                    hub._send_batch(batch_state, batch_name, batch)
                batch_state, batch_name, batch, size = state, name, [message], len(message)
                continue
            if batch_state is not None:
                hub._send_batch(batch_state, batch_name, batch)
                batch_state, batch = None, []
            try:
                func(*args)
            except Exception:
                logger.exception("%r: %r failed", hub, func)
        if batch_state is not None:
            hub._send_batch(batch_state, batch_name, batch)


@dataclass(frozen=True, slots=True)
class Gap:
    """Messages from other processes may have been lost (told by :meth:`Hub.on_gap`).

    ``groups`` are the groups concerned (``None``: unknown, maybe all); ``direct`` says
    whether messages to everyone or to single connections may be concerned too;
    ``dropped`` counts this process's own messages that never left it (0 when only
    receiving was affected).  An application typically re-sends the current state to the
    members of the groups concerned.
    """

    reason: str
    groups: frozenset[str] | None
    dropped: int = 0
    direct: bool = False


class _GroupState:
    """The local members of one group, served by one event loop."""

    __slots__ = ("__weakref__", "channel", "families", "hub", "loop", "members", "name", "pending")

    def __init__(self, hub: Hub, name: str, channel: str | None) -> None:
        self.hub = hub
        self.name = name
        #: The broker channel, ``None`` for a group local to this process.
        self.channel = channel
        self.loop: asyncio.AbstractEventLoop | None = None
        self.members: dict[int, WebSocket] = {}
        #: Members by frame family: every member of one family shares one encoded frame.
        self.families: dict[str, dict[int, Callable[[bytes], None]]] = {}
        #: Adds scheduled on the loop but not yet done (the state must outlive them).
        self.pending = 0

    def member_closed(self, ws: WebSocket) -> None:
        self.hub._leave(self, ws, True)

    def _forget_members(self) -> None:
        """After a fork: the members and the loop were the parent's."""
        self.loop = None
        self.members = {}
        self.families = {}
        self.pending = 0


class Hub:
    """One process's groups: membership, every socket write, and its broker.

    ``Hub(broker)`` takes a :class:`~stargate.brokers.Broker` or a URL
    (:func:`~stargate.brokers.make_broker`: ``None`` or ``memory://`` for the in-process
    default, ``redis://host:6379/0`` for Redis).  Most applications use the process's
    :func:`default_hub` through :class:`Group` and configure it once with
    :func:`configure` (``stargate serve --broker URL`` does).

    The broker runs on one event loop: :meth:`start` on the server's loop (``stargate
    serve`` does), or the loop of the first connection added.  Connections of other loops
    (tests running several servers) are served on their own loops.
    """

    def __init__(self, broker: Broker | str | None = None) -> None:
        #: This hub's process id in envelopes: random, 8 bytes (new in a forked child).
        self.origin = os.urandom(8)
        self.id = self.origin.hex()
        self._broker = broker if isinstance(broker, Broker) else make_broker(broker)
        #: The URL the broker was made from (``None`` and the default: the in-memory one),
        #: to make the child's own after a fork; unknown for a broker object.
        self._broker_url: str | None = None if isinstance(broker, Broker) else broker
        self._broker_given = isinstance(broker, Broker)
        self._lock = threading.RLock()
        self._groups: dict[str, _GroupState] = {}
        self._known: dict[int, WebSocket] = {}
        self._sequence = 0
        self._last_seen: OrderedDict[bytes, int] = OrderedDict()
        self._gap_callbacks: list[Callable[[Gap], object]] = []
        self._mailboxes: dict[asyncio.AbstractEventLoop, _Mailbox] = {}
        #: Envelopes from the broker refused as malformed, oversized or of another version.
        self.rejected = 0
        #: Gaps reported so far, and the last one.
        self.gaps = 0
        self.last_gap: Gap | None = None
        #: Anonymous groups (not in ``_groups``), to reset them after a fork.
        self._anonymous_states: weakref.WeakSet[_GroupState] = weakref.WeakSet()
        _hubs.add(self)

    def __repr__(self) -> str:
        return f"<Hub {self.id} {self._broker!r} groups={len(self._groups)}>"

    # -- running things on a loop -------------------------------------------------------------

    def _call(
        self, loop: asyncio.AbstractEventLoop, func: Callable[..., object], *args: Any
    ) -> None:
        """Run ``func(*args)`` on ``loop``: now if we are on it, else through its mailbox."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            func(*args)
        else:
            self._mailbox(loop).post(func, args)

    def _mailbox(self, loop: asyncio.AbstractEventLoop) -> _Mailbox:
        mailbox = self._mailboxes.get(loop)
        if mailbox is None:
            with self._lock:
                mailbox = self._mailboxes.get(loop)
                if mailbox is None:
                    for old in [old for old in self._mailboxes if old.is_closed()]:
                        del self._mailboxes[old]
                    mailbox = self._mailboxes[loop] = _Mailbox(self, loop)
        return mailbox

    # -- configuration and lifetime ------------------------------------------------------------

    @property
    def broker(self) -> Broker:
        return self._broker

    def use_broker(self, broker: Broker | str | None) -> None:
        """Replace the broker (a :class:`~stargate.brokers.Broker` or a URL); only before
        it started."""
        if self._broker.running:
            raise RuntimeError("the hub's broker is running: close() the hub first")
        self._broker = broker if isinstance(broker, Broker) else make_broker(broker)
        self._broker_url = None if isinstance(broker, Broker) else broker
        self._broker_given = isinstance(broker, Broker)

    def _after_fork(self) -> None:
        """In a forked child: a new identity, and nothing of the parent's event loops.

        The child is another process: with the parent's id it would drop the parent's (and
        its siblings') messages as its own echoes, and with the parent's sequence numbers
        theirs would look like duplicates.  Members, registered connections, mailboxes and
        subscriptions belong to loops that do not run here; a lock may have been held by a
        thread that does not exist here.  A broker started in the parent is replaced by a
        fresh one from the same URL (it would write to the parent's connections).
        """
        self.origin = os.urandom(8)
        self.id = self.origin.hex()
        self._lock = threading.RLock()
        self._sequence = 0
        self._last_seen = OrderedDict()
        self._mailboxes = {}
        self._known = {}
        for state in list(self._groups.values()):
            state._forget_members()
        self._groups = {}
        for state in list(self._anonymous_states):
            state._forget_members()
        if self._broker.loop is not None:
            if self._broker_given:
                logger.warning(
                    "%r: its broker was started before this process forked and cannot be "
                    "remade here: give this process its own with configure()",
                    self,
                )
            else:
                self._broker = make_broker(self._broker_url)

    async def start(self) -> None:
        """Start the broker on the running loop (connecting in the background) and subscribe
        to the channels of the groups that have local members."""
        loop = asyncio.get_running_loop()
        broker = self._broker
        if broker.running and broker.loop is not loop:
            raise RuntimeError("the hub's broker runs on another event loop")
        self._ensure_broker(loop)

    async def close(self) -> None:
        """Stop the broker (local groups keep working; a later add starts it again)."""
        await self._broker.close()

    def _ensure_broker(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the broker on ``loop`` (we are on it) unless it runs on a live loop."""
        broker = self._broker
        if broker.running:
            return
        broker.start(loop, self._received, self._broker_gap)
        with self._lock:
            channels = [s.channel for s in self._groups.values() if s.channel and s.members]
            if self._known:
                channels += [self._process_channel, _EVERYONE]
        for channel in channels:
            broker.subscribe(channel)

    @property
    def _process_channel(self) -> str:
        return _PROCESS_PREFIX + self.id

    # -- gaps ----------------------------------------------------------------------------------

    def on_gap(self, callback: Callable[[Gap], object]) -> Callable[[Gap], object]:
        """Call ``callback(gap)`` (on the broker's loop) whenever messages from or to other
        processes may have been lost, e.g. after the broker reconnected.  Usable as a
        decorator; returns ``callback``."""
        self._gap_callbacks.append(callback)
        return callback

    def remove_gap_callback(self, callback: Callable[[Gap], object]) -> None:
        if callback in self._gap_callbacks:
            self._gap_callbacks.remove(callback)

    def _broker_gap(self, gap: BrokerGap) -> None:
        if gap.channels is None:
            groups: frozenset[str] | None = None
            direct = True
        else:
            names = set()
            direct = False
            for channel in gap.channels:
                if channel.startswith(_GROUP_PREFIX):
                    names.add(channel[len(_GROUP_PREFIX) :])
                else:
                    direct = True
            groups = frozenset(names)
        event = Gap(gap.reason, groups, gap.dropped, direct)
        self.gaps += 1
        self.last_gap = event
        logger.warning("%r: messages between processes may have been lost: %s", self, event)
        for callback in list(self._gap_callbacks):
            try:
                callback(event)
            except Exception:
                logger.exception("%r: gap callback failed", self)

    # -- groups --------------------------------------------------------------------------------

    def group(self, name: str) -> Group:
        """The group called ``name`` (a handle: every handle of a name is the same group)."""
        return Group(name, hub=self)

    def groups(self) -> dict[str, int]:
        """``{name: local members}`` of the named groups with local members or adds under
        way (a snapshot)."""
        with self._lock:
            return {name: len(state.members) for name, state in self._groups.items()}

    def _state(self, name: str) -> _GroupState:
        with self._lock:
            state = self._groups.get(name)
            if state is None:
                state = self._groups[name] = _GroupState(self, name, _GROUP_PREFIX + name)
            return state

    def _join(self, target: str | _GroupState, ws: WebSocket) -> None:
        """Add ``ws`` to the group named ``target`` (or an anonymous group's state) on
        ``ws``'s loop; called from any thread."""
        loop = ws._loop
        with self._lock:
            state = target if isinstance(target, _GroupState) else self._state(target)
            if state.loop is None or (
                state.loop is not loop and not state.members and not state.pending
            ):
                # An empty group follows the loop of its next member: a module-level group
                # (the demo's room) outlives a server's loop (tests, a restarted server).
                state.loop = loop
            elif state.loop is not loop:
                raise ValueError("a group serves the connections of one event loop")
            state.pending += 1
        self._call(loop, self._joined, state, ws)

    def _joined(self, state: _GroupState, ws: WebSocket) -> None:
        with self._lock:
            state.pending -= 1
            if ws.id in state.members or ws.closed:
                self._forget_if_empty(state)
                return
            state.members[ws.id] = ws
            state.families.setdefault(ws.frame_family, {})[ws.id] = ws.send_encoded
            first = len(state.members) == 1
        ws._retain()
        ws.add_close_callback(state.member_closed)
        self._register_local(ws)
        if first and state.channel is not None:
            self._ensure_broker(ws._loop)
            self._sync(state.channel)

    def _leave(self, state: _GroupState, ws: WebSocket, closed: bool) -> None:
        """Take ``ws`` out of ``state`` (on its loop)."""
        with self._lock:
            if state.members.pop(ws.id, None) is None:
                return
            family = state.families.get(ws.frame_family)
            if family is not None:
                family.pop(ws.id, None)
                if not family:
                    del state.families[ws.frame_family]
            last = not state.members
            self._forget_if_empty(state)
        if not closed:
            ws.remove_close_callback(state.member_closed)
            ws._release()
        if last and state.channel is not None:
            self._sync(state.channel)

    def _forget_if_empty(self, state: _GroupState) -> None:
        """Drop an empty named group's state (under the lock): names come and go."""
        if (
            not state.members
            and not state.pending
            and state.channel is not None
            and self._groups.get(state.name) is state
        ):
            del self._groups[state.name]

    # -- connections known to the hub (for send_to and send_all) ------------------------------

    def connection_id(self, ws: WebSocket | SyncWebSocket) -> str:
        """The id that names ``ws`` in every process: ``"<hub id>.<connection id>"``."""
        return f"{self.id}.{_unwrap(ws).id}"

    def register(self, ws: WebSocket | SyncWebSocket) -> str:
        """Make ``ws`` reachable by :meth:`send_to` and :meth:`send_all` without joining a
        group (a group member is registered by joining); returns its :meth:`connection_id`.
        Unlike group membership, it does not keep the connection open."""
        inner = _unwrap(ws)
        self._call(inner._loop, self._register_local, inner)
        return self.connection_id(inner)

    def _register_local(self, ws: WebSocket) -> None:
        with self._lock:
            if ws.id in self._known or ws.closed:
                return
            self._known[ws.id] = ws
            first = len(self._known) == 1
        ws.add_close_callback(self._forget_connection)
        if first:
            self._ensure_broker(ws._loop)
            self._sync(self._process_channel)
            self._sync(_EVERYONE)

    def _forget_connection(self, ws: WebSocket) -> None:
        with self._lock:
            if self._known.pop(ws.id, None) is None:
                return
            last = not self._known
        if last:
            self._sync(self._process_channel)
            self._sync(_EVERYONE)

    @property
    def connections(self) -> int:
        """Local connections known to the hub (group members and registered ones)."""
        return len(self._known)

    # -- subscriptions -------------------------------------------------------------------------

    def _wants(self, channel: str) -> bool:
        with self._lock:
            if channel.startswith(_GROUP_PREFIX):
                state = self._groups.get(channel[len(_GROUP_PREFIX) :])
                return state is not None and bool(state.members)
            return bool(self._known)

    def _sync(self, channel: str) -> None:
        """Make the broker's subscription to ``channel`` follow the local members."""
        loop = self._broker.loop
        if loop is not None and not loop.is_closed():
            self._call(loop, self._sync_now, channel)

    def _sync_now(self, channel: str) -> None:
        broker = self._broker
        if not broker.running:
            return
        if self._wants(channel):
            broker.subscribe(channel)
        else:
            broker.unsubscribe(channel)

    def is_subscribed(self, name: str) -> bool:
        """Whether messages other processes send to group ``name`` now reach this one."""
        return self._broker.is_subscribed(_GROUP_PREFIX + name)

    async def wait_subscribed(self, name: str, timeout: float | None = None) -> bool:
        """Wait until :meth:`is_subscribed` (``False`` after ``timeout`` seconds)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self.is_subscribed(name):
            if deadline is not None and loop.time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    # -- sending -------------------------------------------------------------------------------

    def send(self, name: str, message: str | BytesLike) -> None:
        """Send ``message`` to every member of group ``name`` in every process."""
        self._send(self._groups.get(name), name, _normalize(message))

    def _send(self, state: _GroupState | None, name: str, message: Message) -> None:
        local = state is not None and state.channel is None
        if not local:
            self._check_size(name, message)
        loop = state.loop if state is not None else None
        if loop is not None and not loop.is_closed():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                self._send_now(state, name, message)  # type: ignore[arg-type]
            else:
                self._mailbox(loop).post(None, (state, name, message))
        elif not local:
            self._publish_soon(Kind.GROUP, name, message)

    def _send_now(self, state: _GroupState, name: str, message: Message) -> None:
        """On the group's loop: local members first, then one publish."""
        self._deliver(state, message)
        if state.channel is not None:
            self._publish_soon(Kind.GROUP, name, message)

    def _send_batch(self, state: _GroupState, name: str, messages: list[Message]) -> None:
        """On the group's loop: several messages in one write per member, then one publish
        each, in order."""
        if len(messages) == 1:
            self._send_now(state, name, messages[0])
            return
        members = state.members
        for sends in list(state.families.values()):
            if not sends:
                continue
            first = members.get(next(iter(sends)))
            if first is None:
                continue
            encode = first._conn.encode_shared
            frames = []
            for message in messages:
                try:
                    frames.append(encode(message))
                except TypeError:
                    continue  # binary to hixie connections: they cannot carry it
            if not frames:
                continue
            joined = b"".join(frames)
            for send in tuple(sends.values()):
                try:
                    send(joined)
                except Exception:  # a closing member: it leaves by its close callback
                    logger.debug("%r: a send to a member of %r skipped", self, state.name)
        if state.channel is not None:
            for message in messages:
                self._publish_soon(Kind.GROUP, name, message)

    def _deliver(self, state: _GroupState, message: Message) -> None:
        members = state.members
        for sends in list(state.families.values()):
            if not sends:
                continue
            first = members.get(next(iter(sends)))
            if first is None:
                continue
            try:
                frame = first._conn.encode_shared(message)
            except TypeError:
                continue  # binary to hixie connections: they cannot carry it
            for send in tuple(sends.values()):
                try:
                    send(frame)
                except Exception:  # a closing member: it leaves by its close callback
                    logger.debug("%r: a send to a member of %r skipped", self, state.name)

    def send_to(
        self, connection: str | int | WebSocket | SyncWebSocket, message: str | BytesLike
    ) -> None:
        """Send ``message`` to one connection, in whichever process it is: a
        :meth:`connection_id` (``"<hub id>.<n>"``), a local connection's ``id`` or the
        connection itself.  Unknown ids are ignored."""
        msg = _normalize(message)
        if isinstance(connection, str):
            hub_id, _, local_id = connection.rpartition(".")
            if hub_id != self.id:
                self._check_size(connection, msg)
                self._publish_soon(Kind.CONNECTION, connection, msg)
                return
            if not local_id.isdigit():
                return
            connection = int(local_id)
        if isinstance(connection, int):
            ws = self._known.get(connection)
            if ws is None:
                return
        else:
            ws = _unwrap(connection)
        self._call(ws._loop, self._send_one, ws, msg)

    @staticmethod
    def _send_one(ws: WebSocket, message: Message) -> None:
        if ws.closed:
            return
        try:
            ws.send_encoded(ws._conn.encode_shared(message))
        except Exception:
            logger.debug("send to %r skipped", ws)

    def send_all(self, message: str | BytesLike) -> None:
        """Send ``message`` to every connection known to a hub (group members and
        :meth:`register`-ed ones), in every process."""
        msg = _normalize(message)
        self._check_size(_EVERYONE, msg)
        self._deliver_all(msg)
        self._publish_soon(Kind.EVERYONE, "", msg)

    def _deliver_all(self, message: Message) -> None:
        with self._lock:
            loops = {ws._loop for ws in self._known.values()}
        for loop in loops:
            self._call(loop, self._deliver_all_now, loop, message)

    def _deliver_all_now(self, loop: asyncio.AbstractEventLoop, message: Message) -> None:
        frames: dict[str, bytes | None] = {}
        for ws in list(self._known.values()):
            if ws._loop is not loop:
                continue
            family = ws.frame_family
            if family in frames:
                frame = frames[family]
            else:
                try:
                    frame = ws._conn.encode_shared(message)
                except TypeError:
                    frame = None
                frames[family] = frame
            if frame is None:
                continue
            try:
                ws.send_encoded(frame)
            except Exception:
                logger.debug("%r: send to %r skipped", self, ws)

    # -- the broker ----------------------------------------------------------------------------

    def _check_size(self, target: str, message: Message) -> None:
        """Refuse, in the caller, a message the broker could not carry."""
        limit = self._broker.max_message_size - HEADER_SIZE - len(target) * 4
        size = len(message)
        if isinstance(message, str) and size * 4 > limit:
            size = len(message.encode("utf-8", "surrogatepass"))
        if size > limit:
            raise ValueError(
                f"message of {size} bytes exceeds what the broker carries ({limit} bytes)"
            )

    def _publish_soon(self, kind: Kind, target: str, message: Message) -> None:
        loop = self._broker.loop
        if loop is not None and not loop.is_closed():
            self._call(loop, self._publish, kind, target, message)

    def _publish(self, kind: Kind, target: str, message: Message) -> None:
        """On the broker's loop: one envelope, one publish, numbered in publish order."""
        broker = self._broker
        if not broker.running:
            return
        if kind is Kind.GROUP:
            channel = _GROUP_PREFIX + target
        elif kind is Kind.CONNECTION:
            channel = _PROCESS_PREFIX + target.rpartition(".")[0]
        else:
            channel = _EVERYONE
        self._sequence += 1
        try:
            data = encode(
                self.origin,
                self._sequence,
                kind,
                target,
                message,
                max_size=broker.max_message_size,
            )
            broker.publish(channel, data)
        except ValueError:
            logger.exception("%r: message to %r not published", self, target)

    def _received(self, channel: str, data: bytes) -> None:
        """On the broker's loop: a message from another process (or our own, ignored)."""
        broker = self._broker
        try:
            envelope = decode(data, max_size=broker.max_message_size)
        except EnvelopeError as exc:
            self.rejected += 1
            if self.rejected <= 10 or self.rejected % 1000 == 0:
                logger.warning(
                    "%r: envelope on %r refused (%d so far): %s", self, channel, self.rejected, exc
                )
            return
        origin = envelope.origin
        if origin == self.origin:
            return
        seen = self._last_seen
        last = seen.get(origin)
        if last is not None:
            if envelope.sequence <= last:
                return  # older than what we delivered: order per publisher is kept
            seen.move_to_end(origin)
        elif len(seen) >= _MAX_ORIGINS:
            seen.popitem(last=False)
        seen[origin] = envelope.sequence
        kind = envelope.kind
        if kind is Kind.GROUP:
            if channel != _GROUP_PREFIX + envelope.target:
                return
            state = self._groups.get(envelope.target)
            if state is not None and state.loop is not None:
                self._call(state.loop, self._deliver, state, envelope.message)
        elif kind is Kind.CONNECTION:
            hub_id, _, local_id = envelope.target.rpartition(".")
            if hub_id == self.id and local_id.isdigit():
                ws = self._known.get(int(local_id))
                if ws is not None:
                    self._call(ws._loop, self._send_one, ws, envelope.message)
        else:
            self._deliver_all(envelope.message)


class Group:
    """A named set of WebSocket connections (a handle on its :class:`Hub`'s group).

    ``Group("room")`` is the group ``room`` of the process's :func:`default_hub` (or of
    ``hub``): every handle of one name is the same group, in this process and, with a broker
    that spans processes, in all of them.  ``Group()`` is an anonymous group of this process
    only.  ``len``, ``in`` and iteration see the local members.
    """

    __slots__ = ("_anonymous", "hub", "name")

    def __init__(self, name: str = "", *, hub: Hub | None = None) -> None:
        self.name = name
        self.hub = hub if hub is not None else default_hub()
        self._anonymous: _GroupState | None = None
        if not name:
            self._anonymous = _GroupState(self.hub, "", None)
            self.hub._anonymous_states.add(self._anonymous)

    def _peek(self) -> _GroupState | None:
        if self._anonymous is not None:
            return self._anonymous
        return self.hub._groups.get(self.name)

    @property
    def local(self) -> bool:
        """Whether the group is of this process only (an anonymous group)."""
        return self._anonymous is not None

    def __repr__(self) -> str:
        return f"<Group {self.name!r} members={len(self)}>"

    def __len__(self) -> int:
        state = self._peek()
        return 0 if state is None else len(state.members)

    def __contains__(self, ws: object) -> bool:
        state = self._peek()
        inner = getattr(ws, "ws", ws)
        return state is not None and getattr(inner, "id", None) in state.members

    def __iter__(self) -> Iterator[WebSocket]:
        state = self._peek()
        return iter(() if state is None else list(state.members.values()))

    def add(self, ws: WebSocket | SyncWebSocket) -> None:
        """Add a connection (from any thread); it leaves by itself when it closes, and it
        stays open after its handler returns while it belongs to a group."""
        self.hub._join(self._anonymous or self.name, _unwrap(ws))

    def remove(self, ws: WebSocket | SyncWebSocket) -> None:
        """Take a connection out (from any thread); if its handler has returned and no other
        group holds it, it is closed (1000)."""
        inner = _unwrap(ws)
        state = self._peek()
        if state is not None:
            self.hub._call(inner._loop, self.hub._leave, state, inner, False)

    def send(self, message: str | BytesLike) -> None:
        """Send ``message`` (``str``: text, bytes: binary) to every member in every process;
        returns at once, from any thread or task.  Raises :class:`ValueError` if it is too
        large for the broker."""
        self.hub._send(self._peek(), self.name, _normalize(message))

    def is_subscribed(self) -> bool:
        """Whether other processes' messages to this group reach this one now."""
        return self._anonymous is not None or self.hub.is_subscribed(self.name)

    async def wait_subscribed(self, timeout: float | None = None) -> bool:
        """Wait until other processes' messages to this group reach this one (after the
        first local member joined); ``False`` after ``timeout`` seconds."""
        if self._anonymous is not None:
            return True
        return await self.hub.wait_subscribed(self.name, timeout)


_default: Hub | None = None
_default_lock = threading.Lock()
#: Every hub of the process, to give each a new identity in a forked child.
_hubs: weakref.WeakSet[Hub] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    global _default_lock
    _default_lock = threading.Lock()
    for hub in list(_hubs):
        try:
            hub._after_fork()
        except Exception:  # never let a fork fail the child's start
            logger.exception("%r: resetting after fork failed", hub)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def default_hub() -> Hub:
    """The process's hub (created with the in-memory broker on first use)."""
    global _default
    hub = _default
    if hub is None:
        with _default_lock:
            if _default is None:
                _default = Hub()
            hub = _default
    return hub


def set_default_hub(hub: Hub) -> None:
    """Make ``hub`` the process's hub for groups created from now on."""
    global _default
    with _default_lock:
        _default = hub


def configure(broker: Broker | str | None) -> Hub:
    """Give the process's hub a broker (or a broker URL) before serving; returns the hub.
    Groups created before keep working: they are handles on the same hub."""
    hub = default_hub()
    hub.use_broker(broker)
    return hub
