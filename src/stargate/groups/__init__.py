"""Groups: named sets of connections that a message is sent to at once, across processes.

``Group("job:1").send(message)`` reaches every member of the group ``job:1``, in this
process and (with a broker that spans processes, e.g. Redis) in every other one; it returns
at once and may be called from any thread, task or WSGI view.

The design (docs/design.md, "Groups and brokers"; docs/groups.md in full):

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

The package, one concept per module: :mod:`.group` (the handle applications use),
:mod:`.hub` (membership, writes and the process's hub), :mod:`.members` (a group's local
members and encode-once delivery), :mod:`.mailbox` (calls from other threads, batched per
loop), :mod:`.relay` (traffic between processes: envelopes, order, gaps).
"""

from .group import Group
from .hub import Hub, configure, default_hub, set_default_hub
from .relay import Gap

__all__ = ["Gap", "Group", "Hub", "configure", "default_hub", "set_default_hub"]
