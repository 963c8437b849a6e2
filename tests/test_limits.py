"""Tests of stargate.limits: every resource a peer can make us spend has a safe default."""

from __future__ import annotations

import dataclasses

import pytest

from stargate.limits import KiB, Limits, MiB

FIELDS = ("max_message_size", "max_frame_size", "max_header_size")


def test_units() -> None:
    assert (KiB, MiB) == (1024, 1024 * 1024)


def test_safe_defaults() -> None:
    """A connection made without limits is bounded all the same: 1 MiB per message and
    per frame, 16 KiB of handshake head, as docs/security.md states."""
    limits = Limits()
    assert limits.max_message_size == 1 * MiB
    assert limits.max_frame_size == 1 * MiB
    assert limits.max_header_size == 16 * KiB
    assert tuple(f.name for f in dataclasses.fields(Limits)) == FIELDS


@pytest.mark.parametrize("name", FIELDS)
@pytest.mark.parametrize("value", [1, 7, 2**63])
def test_any_positive_value_is_accepted(name: str, value: int) -> None:
    limits = Limits(**{name: value})
    assert getattr(limits, name) == value


@pytest.mark.parametrize("name", FIELDS)
@pytest.mark.parametrize("value", [0, -1, -(2**63)])
def test_a_limit_that_admits_nothing_is_refused(name: str, value: int) -> None:
    """Zero or less would refuse every frame, message or request: a configuration mistake,
    reported at once with the setting's name rather than as failing connections later."""
    with pytest.raises(ValueError, match=f"^{name} must be positive$"):
        Limits(**{name: value})


def test_limits_are_immutable_and_shared_safely() -> None:
    """One Limits serves every connection of a server: no connection can change another's
    limits through it, and equal settings compare (and hash) equal."""
    limits = Limits(max_message_size=10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        limits.max_message_size = 20  # type: ignore[misc]
    assert not hasattr(limits, "__dict__")
    assert limits == Limits(max_message_size=10) != Limits()
    assert hash(limits) == hash(Limits(max_message_size=10))
    changed = dataclasses.replace(limits, max_frame_size=5)
    assert (changed.max_message_size, changed.max_frame_size) == (10, 5)
    assert limits.max_frame_size == MiB
    with pytest.raises(ValueError, match="max_frame_size must be positive"):
        dataclasses.replace(limits, max_frame_size=0)
