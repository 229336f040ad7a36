"""Client-to-server payload masking (RFC 6455 5.3), picked per size.

A per-byte Python loop would cap throughput at a few MB/s, so:
- small payloads: one big-int XOR (fastest below about 1 KiB: no allocation besides the result);
- larger payloads: numpy's vectorised XOR on 64-bit words when numpy is installed (>10 GB/s);
- larger payloads without numpy: four strided ``bytes.translate`` passes (~1 GB/s).
Every strategy is tested against the others; ``apply_mask`` picks one from the length alone.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "HAVE_NUMPY",
    "NUMPY_THRESHOLD",
    "apply_mask",
    "mask_bigint",
    "mask_numpy",
    "mask_translate",
]

try:  # optional accelerator: the server runs, slower, without it
    import numpy as _np

    HAVE_NUMPY = True
except ImportError:  # pragma: no cover - exercised by the "no numpy" test through monkeypatching
    _np = None  # type: ignore[assignment]
    HAVE_NUMPY = False

#: At and above this many bytes, numpy beats the big-int XOR (measured in bench/bench_mask.py).
NUMPY_THRESHOLD = 768
#: Without numpy, strided translate beats big-int XOR from about this size.
TRANSLATE_THRESHOLD = 1024

_XOR_TABLES = [bytes(b ^ k for b in range(256)) for k in range(256)]


def mask_bigint(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """XOR with the 4-byte mask repeated, as one arbitrary-precision integer operation."""
    n = len(data)
    if n == 0:
        return b""
    key = (mask * ((n + 3) >> 2))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def mask_translate(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """XOR every fourth byte through a 256-entry table: C-speed loops without numpy."""
    buf = bytearray(data)
    for i in range(4):
        buf[i::4] = buf[i::4].translate(_XOR_TABLES[mask[i]])
    return bytes(buf)


def mask_numpy(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """XOR 8 bytes at a time with numpy; the last n % 8 bytes go through the big-int path."""
    np: Any = _np
    if np is None:
        raise RuntimeError("numpy is not installed")
    n = len(data)
    words = n >> 3
    head = np.bitwise_xor(
        np.frombuffer(data, dtype=np.uint64, count=words),
        np.uint64(int.from_bytes(mask + mask, "little")),
    ).tobytes()
    rest = n & 7
    if rest:
        # The tail starts at a multiple of 8, so the mask phase is unchanged.
        tail = memoryview(data)[words << 3 :]
        return head + mask_bigint(tail, mask)
    return head  # type: ignore[no-any-return]


def apply_mask(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """Mask or unmask ``data`` with the 4-byte ``mask`` (the operation is its own inverse)."""
    n = len(data)
    if n < NUMPY_THRESHOLD:
        return mask_bigint(data, mask)
    if HAVE_NUMPY:
        return mask_numpy(data, mask)
    if n < TRANSLATE_THRESHOLD:
        return mask_bigint(data, mask)
    return mask_translate(data, mask)
