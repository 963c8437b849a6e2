"""The per-process hub: group membership, every socket write, and the broker's traffic.

A :class:`Hub` owns the local members of every group (:mod:`.members`), runs what other
threads ask on the right event loop (:mod:`.mailbox`), and carries group traffic to and
from other processes through its broker (:mod:`.relay`).  A group send encodes the frame
once per frame family, delivers to the local members first, then publishes once; the hub
subscribes to a group's channel only while it has local members.

A forked child is another process: every hub it inherited gets a new id (random, so unique
across hosts too, never the pid) and forgets what belonged to the parent's event loops
(members, subscriptions, mailboxes, a started broker), see :meth:`Hub.after_fork`.
Otherwise a module-level ``Group`` imported before a pre-fork server forks would give every
worker one id, and each would drop the others' messages as its own echoes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..brokers import Broker, BrokerGap, make_broker
from ..brokers.envelope import Kind
from ..masking import BytesLike
from .mailbox import Mailbox
from .members import GroupState, Message, deliver_to, normalize, send_one, unwrap, utf8_size
from .relay import EVERYONE, Gap, Relay, gap_event, group_channel, process_channel

if TYPE_CHECKING:
    from ..server.sync import SyncWebSocket
    from ..server.websocket import WebSocket
    from .group import Group

logger = logging.getLogger("stargate.groups")


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class Hub:
    """One process's groups: membership, every socket write, and its broker.

    ``Hub(broker)`` takes a :class:`~stargate.brokers.Broker` or a URL
    (:func:`~stargate.brokers.make_broker`: ``None`` or ``memory://`` for the in-process
    default, ``redis://host:6379/0`` for Redis).  Most applications use the process's
    :func:`default_hub` through :class:`~stargate.groups.Group` and configure it once with
    :func:`configure` (``stargate serve --broker URL`` does).

    The broker runs on one event loop: :meth:`start` on the server's loop (``stargate
    serve`` does), or the loop of the first connection added.  Connections of other loops
    (tests running several servers) are served on their own loops.
    """

    def __init__(self, broker: Broker | str | None = None) -> None:
        #: This hub's process id in envelopes: random, 8 bytes (new in a forked child).
        self.origin = os.urandom(8)
        #: :attr:`origin` in hex: names this process in logs and in the broker channel of
        #: its connections (``p:<id>``, what :meth:`send_to` reaches).
        self.id = self.origin.hex()
        self._relay = Relay(
            self.origin,
            broker if isinstance(broker, Broker) else make_broker(broker),
            on_group=self._received_for_group,
            on_connection=self._received_for_connection,
            on_everyone=self._deliver_all,
        )
        #: The URL the broker was made from (``None``: the in-memory default), to make the
        #: child's own after a fork; unknown for a broker object.
        self._broker_url: str | None = None if isinstance(broker, Broker) else broker
        self._broker_given = isinstance(broker, Broker)
        self._lock = threading.RLock()
        self._groups: dict[str, GroupState] = {}
        self._known: dict[int, WebSocket] = {}
        self._gap_callbacks: list[Callable[[Gap], object]] = []
        self._mailboxes: dict[asyncio.AbstractEventLoop, Mailbox] = {}
        #: How many gaps the broker reported so far (see :meth:`on_gap`).
        self.gaps = 0
        #: The last gap reported, or ``None`` while there was none.
        self.last_gap: Gap | None = None
        #: Anonymous groups (not in ``_groups``), to reset them after a fork.
        self._anonymous: weakref.WeakSet[GroupState] = weakref.WeakSet()
        _hubs.add(self)

    def __repr__(self) -> str:
        return f"<Hub {self.id} {self.broker!r} groups={len(self._groups)}>"

    @property
    def rejected(self) -> int:
        """Envelopes from the broker refused as malformed, oversized or of another version."""
        return self._relay.rejected

    # -- running things on a loop -------------------------------------------------------------

    def call(
        self, loop: asyncio.AbstractEventLoop, func: Callable[..., object], *args: Any
    ) -> None:
        """Run ``func(*args)`` on ``loop``: now if we are on it, else through its mailbox
        (after whatever this thread asked of that loop before)."""
        if _running_loop() is loop:
            func(*args)
        else:
            self._mailbox(loop).post(func, args)

    def _mailbox(self, loop: asyncio.AbstractEventLoop) -> Mailbox:
        mailbox = self._mailboxes.get(loop)
        if mailbox is None:
            with self._lock:
                mailbox = self._mailboxes.get(loop)
                if mailbox is None:
                    for old in [old for old in self._mailboxes if old.is_closed()]:
                        del self._mailboxes[old]
                    mailbox = self._mailboxes[loop] = Mailbox(loop, self._send_batch)
        return mailbox

    # -- configuration and lifetime ------------------------------------------------------------

    @property
    def broker(self) -> Broker:
        """What carries group messages to and from other processes (replace it with
        :meth:`use_broker`, before it started)."""
        return self._relay.broker

    @property
    def broker_connected(self) -> bool:
        """Whether the broker can carry messages now (the in-memory one always can)."""
        return self.broker.connected

    def use_broker(self, broker: Broker | str | None) -> None:
        """Replace the broker (a :class:`~stargate.brokers.Broker` or a URL); only before
        it started."""
        if self.broker.running:
            raise RuntimeError("the hub's broker is running: close() the hub first")
        self._relay.broker = broker if isinstance(broker, Broker) else make_broker(broker)
        self._broker_url = None if isinstance(broker, Broker) else broker
        self._broker_given = isinstance(broker, Broker)

    def after_fork(self) -> None:
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
        self._relay.renew(self.origin)
        self._lock = threading.RLock()
        self._mailboxes = {}
        self._known = {}
        for state in list(self._groups.values()):
            state.forget_members()
        self._groups = {}
        for state in list(self._anonymous):
            state.forget_members()
        if self.broker.loop is not None:
            if self._broker_given:
                logger.warning(
                    "%r: its broker was started before this process forked and cannot be "
                    "remade here: give this process its own with configure()",
                    self,
                )
            else:
                self._relay.broker = make_broker(self._broker_url)

    async def start(self) -> None:
        """Start the broker on the running loop (connecting in the background) and subscribe
        to the channels of the groups that have local members."""
        loop = asyncio.get_running_loop()
        broker = self.broker
        if broker.running and broker.loop is not loop:
            raise RuntimeError("the hub's broker runs on another event loop")
        self._ensure_broker(loop)

    async def close(self) -> None:
        """Stop the broker (local groups keep working; a later add starts it again)."""
        await self.broker.close()

    def _ensure_broker(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the broker on ``loop`` (we are on it) unless it runs on a live loop."""
        broker = self.broker
        if broker.running:
            return
        broker.start(loop, self._relay.received, self._broker_gap)
        with self._lock:
            channels = [s.channel for s in self._groups.values() if s.channel and s.members]
            if self._known:
                channels += [process_channel(self.id), EVERYONE]
        for channel in channels:
            broker.subscribe(channel)

    # -- gaps ----------------------------------------------------------------------------------

    def on_gap(self, callback: Callable[[Gap], object]) -> Callable[[Gap], object]:
        """Call ``callback(gap)`` (on the broker's loop) whenever messages from or to other
        processes may have been lost, e.g. after the broker reconnected.  Usable as a
        decorator; returns ``callback``."""
        self._gap_callbacks.append(callback)
        return callback

    def remove_gap_callback(self, callback: Callable[[Gap], object]) -> None:
        """Undo :meth:`on_gap` (nothing happens if ``callback`` was not added)."""
        if callback in self._gap_callbacks:
            self._gap_callbacks.remove(callback)

    def _broker_gap(self, gap: BrokerGap) -> None:
        event = gap_event(gap)
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
        from .group import Group

        return Group(name, hub=self)

    def groups(self) -> dict[str, int]:
        """``{name: local members}`` of the named groups with local members or adds under
        way (a snapshot)."""
        with self._lock:
            return {name: len(state.members) for name, state in self._groups.items()}

    def lookup(self, name: str) -> GroupState | None:
        """The local state of group ``name``, if it has members or adds under way."""
        return self._groups.get(name)

    def local_group(self) -> GroupState:
        """The state of a new anonymous group, local to this process."""
        state = GroupState("", None, self._member_closed)
        self._anonymous.add(state)
        return state

    def _named(self, name: str) -> GroupState:
        utf8_size(name, "a group name")  # it names a broker channel: UTF-8
        with self._lock:
            state = self._groups.get(name)
            if state is None:
                state = GroupState(name, group_channel(name), self._member_closed)
                self._groups[name] = state
            return state

    def join(self, target: str | GroupState, ws: WebSocket) -> None:
        """Add ``ws`` to the group named ``target`` (or an anonymous group's state) on
        ``ws``'s loop; from any thread."""
        loop = ws.loop
        with self._lock:
            state = target if isinstance(target, GroupState) else self._named(target)
            if state.loop is not None and state.loop is not loop and state.loop.is_closed():
                # Members and joins still on their way belonged to a loop that is gone (a
                # stopped server): the group is empty for the next one.
                state.forget_members()
            if state.loop is None or (
                state.loop is not loop and not state.members and not state.pending
            ):
                # An empty group follows the loop of its next member: a module-level group
                # (the demo's room) outlives a server's loop (tests, a restarted server).
                state.loop = loop
            elif state.loop is not loop:
                raise ValueError("a group serves the connections of one event loop")
            state.pending += 1
        self.call(loop, self._joined, state, ws)

    def _joined(self, state: GroupState, ws: WebSocket) -> None:
        with self._lock:
            state.pending -= 1
            if ws.closed or not state.add(ws):
                self._forget_if_empty(state)
                return
            first = len(state.members) == 1
        ws.hold()
        ws.add_close_callback(state.member_closed)
        self._register_local(ws)
        if first and state.channel is not None:
            self._ensure_broker(ws.loop)
            self._sync(state.channel)

    def leave(self, state: GroupState, ws: WebSocket) -> None:
        """Take ``ws`` out of ``state`` (from any thread); if its handler has returned and
        no other group holds it, it is closed."""
        self.call(ws.loop, self._leave, state, ws, False)

    def _member_closed(self, state: GroupState, ws: WebSocket) -> None:
        self._leave(state, ws, True)

    def _leave(self, state: GroupState, ws: WebSocket, closed: bool) -> None:
        """Take ``ws`` out of ``state`` (on its loop)."""
        with self._lock:
            if not state.discard(ws):
                return
            last = not state.members
            self._forget_if_empty(state)
        if not closed:
            ws.remove_close_callback(state.member_closed)
            ws.release()
        if last and state.channel is not None:
            self._sync(state.channel)

    def _forget_if_empty(self, state: GroupState) -> None:
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
        return f"{self.id}.{unwrap(ws).id}"

    def register(self, ws: WebSocket | SyncWebSocket) -> str:
        """Make ``ws`` reachable by :meth:`send_to` and :meth:`send_all` without joining a
        group (a group member is registered by joining); returns its :meth:`connection_id`.
        Unlike group membership, it does not keep the connection open."""
        inner = unwrap(ws)
        self.call(inner.loop, self._register_local, inner)
        return self.connection_id(inner)

    def _register_local(self, ws: WebSocket) -> None:
        with self._lock:
            if ws.id in self._known or ws.closed:
                return
            self._known[ws.id] = ws
            first = len(self._known) == 1
        ws.add_close_callback(self._forget_connection)
        if first:
            self._ensure_broker(ws.loop)
            self._sync(process_channel(self.id))
            self._sync(EVERYONE)

    def _forget_connection(self, ws: WebSocket) -> None:
        with self._lock:
            if self._known.pop(ws.id, None) is None:
                return
            last = not self._known
        if last:
            self._sync(process_channel(self.id))
            self._sync(EVERYONE)

    @property
    def connections(self) -> int:
        """Local connections known to the hub (group members and registered ones)."""
        return len(self._known)

    # -- subscriptions -------------------------------------------------------------------------

    def _wants(self, channel: str) -> bool:
        with self._lock:
            if channel.startswith(group_channel("")):
                state = self._groups.get(channel[len(group_channel("")) :])
                return state is not None and bool(state.members)
            return bool(self._known)

    def _sync(self, channel: str) -> None:
        """Make the broker's subscription to ``channel`` follow the local members."""
        loop = self.broker.loop
        if loop is not None and not loop.is_closed():
            self.call(loop, self._sync_now, channel)

    def _sync_now(self, channel: str) -> None:
        broker = self.broker
        if not broker.running:
            return
        if self._wants(channel):
            broker.subscribe(channel)
        else:
            broker.unsubscribe(channel)

    def is_subscribed(self, name: str) -> bool:
        """Whether messages other processes send to group ``name`` now reach this one."""
        return self.broker.is_subscribed(group_channel(name))

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
        self.send_group(self._groups.get(name), name, normalize(message))

    def send_group(self, state: GroupState | None, name: str, message: Message) -> None:
        """Send to a group (its local ``state``, if any, and the other processes'); from any
        thread or task."""
        local = state is not None and state.channel is None
        if not local:
            self._relay.check_size(name, message)
        loop = state.loop if state is not None else None
        if state is not None and loop is not None and not loop.is_closed():
            if _running_loop() is loop:
                self._send_now(state, name, message)
            else:
                self._mailbox(loop).post_send(state, name, message)
        elif not local:
            self._publish_soon(Kind.GROUP, name, message)

    def _send_now(self, state: GroupState, name: str, message: Message) -> None:
        """On the group's loop: local members first, then one publish."""
        state.deliver(message)
        if state.channel is not None:
            self._publish_soon(Kind.GROUP, name, message)

    def _send_batch(self, state: GroupState, name: str, messages: list[Message]) -> None:
        """On the group's loop: several messages in one write per member, then one publish
        each, in order."""
        if len(messages) == 1:
            self._send_now(state, name, messages[0])
            return
        state.deliver_batch(messages)
        if state.channel is not None:
            for message in messages:
                self._publish_soon(Kind.GROUP, name, message)

    def send_to(
        self, connection: str | int | WebSocket | SyncWebSocket, message: str | BytesLike
    ) -> None:
        """Send ``message`` to one connection, in whichever process it is: a
        :meth:`connection_id` (``"<hub id>.<n>"``), a local connection's ``id`` or the
        connection itself.  Unknown ids are ignored."""
        msg = normalize(message)
        if isinstance(connection, str):
            hub_id, _, local_id = connection.rpartition(".")
            if hub_id != self.id:
                self._relay.check_size(connection, msg)
                self._publish_soon(Kind.CONNECTION, connection, msg)
                return
            if not local_id.isdigit():
                return
            connection = int(local_id)
        if isinstance(connection, int):
            ws = self._known.get(connection)
            if ws is None:
                # From a thread, the connection may be registered already in its loop's
                # mailbox, not yet here: look again there, after what this thread posted.
                for loop in self._loops_for_threads():
                    self.call(loop, self._send_to_known, loop, connection, msg)
                return
        else:
            ws = unwrap(connection)
        self.call(ws.loop, send_one, ws, msg)

    def send_all(self, message: str | BytesLike) -> None:
        """Send ``message`` to every connection known to a hub (group members and
        :meth:`register`-ed ones), in every process."""
        msg = normalize(message)
        self._relay.check_size(EVERYONE, msg)
        self._deliver_all(msg)
        self._publish_soon(Kind.EVERYONE, "", msg)

    def _send_to_known(
        self, loop: asyncio.AbstractEventLoop, local_id: int, message: Message
    ) -> None:
        ws = self._known.get(local_id)
        if ws is not None and ws.loop is loop:
            send_one(ws, message)

    def _loops_for_threads(self) -> list[asyncio.AbstractEventLoop]:
        """From a thread: the loops whose mailboxes may hold its registrations and joins
        (none on a loop, where they ran at once)."""
        if _running_loop() is not None:
            return []
        with self._lock:
            return [loop for loop in self._mailboxes if not loop.is_closed()]

    def _deliver_all(self, message: Message) -> None:
        with self._lock:
            loops = {ws.loop for ws in self._known.values()}
        loops.update(self._loops_for_threads())  # with registrations still on their way
        for loop in loops:
            self.call(loop, self._deliver_all_now, loop, message)

    def _deliver_all_now(self, loop: asyncio.AbstractEventLoop, message: Message) -> None:
        deliver_to([ws for ws in list(self._known.values()) if ws.loop is loop], message)

    # -- the broker ----------------------------------------------------------------------------

    def _publish_soon(self, kind: Kind, target: str, message: Message) -> None:
        loop = self.broker.loop
        if loop is not None and not loop.is_closed():
            self.call(loop, self._relay.publish, kind, target, message)

    def _received_for_group(self, name: str, message: Message) -> None:
        state = self._groups.get(name)
        if state is not None and state.loop is not None:
            self.call(state.loop, state.deliver, message)

    def _received_for_connection(self, local_id: int, message: Message) -> None:
        ws = self._known.get(local_id)
        if ws is not None:
            self.call(ws.loop, send_one, ws, message)


_default: Hub | None = None
_default_lock = threading.Lock()
#: Every hub of the process, to give each a new identity in a forked child.
_hubs: weakref.WeakSet[Hub] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    global _default_lock
    _default_lock = threading.Lock()
    for hub in list(_hubs):
        try:
            hub.after_fork()
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
