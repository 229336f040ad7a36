"""The contract's error codes and the SignalingError that carries one."""

from __future__ import annotations

from typing import Any

import pytest

from signaling.protocol.errors import ErrorCode, SignalingError, shorten, valid_ref
from signaling.protocol.facts import MAX_ID_LENGTH

# ---------------------------------------------------------------------------------------------------------------
# Error codes


def test_error_codes_are_the_contracts_and_its_extensions() -> None:
    assert [code.value for code in ErrorCode] == [
        "bad-json",
        "invalid-message",
        "unknown-type",
        "not-joined",
        "already-joined",
        "room-full",
        "unknown-peer",
        "unauthorized",
        "rate-limited",
        "unavailable",  # extension (docs/protocol.md): cluster mode, its Redis unreachable
    ]


def test_signaling_error_takes_a_code_and_rejects_unknown_codes() -> None:
    err = SignalingError(ErrorCode.ROOM_FULL, "full", ref=3)
    assert err.code is ErrorCode.ROOM_FULL and err.ref == 3 and str(err) == "room-full: full"
    with pytest.raises(ValueError):
        SignalingError("no-such-code", "x")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "ref"),
    [
        (7, 7),
        (-1, -1),
        (10**30, 10**30),
        ("abc", "abc"),
        ("x" * MAX_ID_LENGTH, "x" * MAX_ID_LENGTH),
        ("x" * (MAX_ID_LENGTH + 1), None),
        (True, None),
        (1.5, None),
        (None, None),
        ([1], None),
    ],
)
def test_valid_ref(value: Any, ref: Any) -> None:
    assert valid_ref(value) == ref


def test_shorten_keeps_quotes_of_client_input_bounded() -> None:
    assert shorten("abc") == "abc"
    assert shorten("x" * 64) == "x" * 64
    assert shorten("x" * 65) == "x" * 61 + "..."
    assert len(shorten("y" * 10_000)) == 64
