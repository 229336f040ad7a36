"""mask.py: every unmasking strategy agrees with the per-byte reference, for every size class and input type."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from signaling.ws import mask
from signaling.ws.mask import apply_mask, mask_bigint, mask_numpy, mask_translate

from .helpers import MASK, ref_mask

Strategy = Callable[[bytes | bytearray | memoryview, bytes], bytes]

STRATEGIES = [
    pytest.param(mask_bigint, id="bigint"),
    pytest.param(mask_translate, id="translate"),
    pytest.param(mask_numpy, id="numpy"),
    pytest.param(apply_mask, id="apply_mask"),
]

# Around every word size and threshold, odd sizes included, up to past the 64-bit length boundary.
SIZES = sorted(
    {0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 125, 126, 127, 255, 257, 1000, 4095, 4096, 4097}
    | {mask.NUMPY_THRESHOLD + d for d in (-1, 0, 1)}
    | {mask.TRANSLATE_THRESHOLD + d for d in (-1, 0, 1)}
    | {65535, 65536, 65537, 70001}
)

_rng = random.Random(6455)
_DATA = _rng.randbytes(max(SIZES) + 8)
KEYS = [MASK, b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", bytes([1, 2, 3, 4])]
_REFERENCE = {(n, k): ref_mask(_DATA[:n], k) for n in SIZES for k in KEYS[:2]}


def reference(n: int, key: bytes) -> bytes:
    if (n, key) not in _REFERENCE:
        _REFERENCE[n, key] = ref_mask(_DATA[:n], key)
    return _REFERENCE[n, key]


def test_rfc_example() -> None:
    assert apply_mask(b"Hello", MASK) == bytes.fromhex("7f9f4d5158")


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("size", SIZES, ids=str)
def test_strategies_agree(strategy: Strategy, size: int) -> None:
    for key in KEYS[:2]:
        data = _DATA[:size]
        expected = reference(size, key)
        for arg in (data, bytearray(data), memoryview(data)):
            out = strategy(arg, key)
            assert type(out) is bytes
            assert out == expected


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("size", [1, 7, 768, 1025, 4099], ids=str)
@pytest.mark.parametrize("offset", [1, 3, 5], ids=lambda o: f"offset{o}")
def test_unaligned_memoryview(strategy: Strategy, size: int, offset: int) -> None:
    """A memoryview slice that starts mid-buffer, as the connection's streaming path passes."""
    view = memoryview(_DATA)[offset : offset + size]
    assert strategy(view, MASK) == ref_mask(_DATA[offset : offset + size], MASK)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("key", KEYS, ids=lambda k: k.hex())
def test_involution(strategy: Strategy, key: bytes) -> None:
    data = _DATA[:5001]
    assert strategy(strategy(data, key), key) == data


@pytest.mark.parametrize("size", [0, 5, 767, 768, 1023, 1024, 1025, 4097, 70001], ids=str)
def test_apply_mask_without_numpy(monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    monkeypatch.setattr(mask, "HAVE_NUMPY", False)
    for arg in (_DATA[:size], memoryview(_DATA)[1 : size + 1]):
        assert apply_mask(arg, MASK) == ref_mask(bytes(arg), MASK)


def test_mask_numpy_without_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mask, "_np", None)
    with pytest.raises(RuntimeError):
        mask_numpy(b"x" * 16, MASK)
