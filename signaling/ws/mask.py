"""Client-to-server payload masking (RFC 6455 5.3), picked per size.

A per-byte Python loop would cap throughput at a few MB/s, so:
- small payloads (under 512 bytes): one big-int XOR, no allocation besides the result;
- larger payloads: one numpy XOR of the payload's bytes with the 4-byte key tiled to the same length, when
  numpy is installed (about 12 GB/s at 64 KiB; its fixed cost of about 1 µs is what sets the threshold);
- larger payloads without numpy: four strided ``bytes.translate`` passes (about 0.9 GB/s at 64 KiB).
Every strategy is tested against the others; ``apply_mask`` picks one from the length alone.

``unmask_utf8`` is the receive path's shortcut for text: with numpy it decodes the XOR's output array
directly, so the unmasked payload is never copied into a ``bytes`` object first. ``bench/bench_parse.py``
measures all of this against the ``websockets`` library's C code.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "HAVE_NUMPY",
    "LOW",
    "NUMPY_THRESHOLD",
    "REPEAT",
    "TRANSLATE_THRESHOLD",
    "apply_mask",
    "mask_bigint",
    "mask_numpy",
    "mask_translate",
    "unmask_utf8",
]

_np: Any
try:  # optional accelerator: the server runs, slower, without it
    import numpy as _np

    HAVE_NUMPY = True
    _xor = _np.bitwise_xor
    _frombuffer = _np.frombuffer
    _U8 = _np.uint8
except ImportError:  # pragma: no cover - exercised by the "no numpy" test through monkeypatching
    _np = None
    HAVE_NUMPY = False

#: At and above this many bytes numpy is used. Measured crossover with the big-int XOR: about 384 bytes (both
#: about 1.1 µs, CPython 3.11, numpy 2.4); 512 leaves a margin for numpy's per-call cost, which varies more.
NUMPY_THRESHOLD = 512
#: Without numpy, strided translate is used from this size. Measured: equal to big-int XOR at 512 bytes
#: (1.4 µs), 20% faster at 1 KiB, 33% at 4 KiB.
TRANSLATE_THRESHOLD = 512

_XOR_TABLES = [bytes(b ^ k for b in range(256)) for k in range(256)]

#: For the big-int XOR below NUMPY_THRESHOLD, the key as an integer without building its bytes: the 4-byte mask
#: (read as a little-endian int) times REPEAT[words] repeats it over that many 4-byte words, and ``& LOW[n]``
#: keeps its first n bytes. ~70 ns less than ``int.from_bytes((mask * words)[:n])`` at 250 bytes (~30 KiB and
#: ~130 KiB of tables).
REPEAT = [int.from_bytes(b"\x01\x00\x00\x00" * words, "little") for words in range((NUMPY_THRESHOLD >> 2) + 1)]
LOW = [(1 << (8 * n)) - 1 for n in range(NUMPY_THRESHOLD)]


def mask_bigint(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """XOR with the 4-byte mask repeated, as one arbitrary-precision integer operation."""
    n = len(data)
    if n == 0:
        return b""
    if n < NUMPY_THRESHOLD:
        key = int.from_bytes(mask, "little") * REPEAT[(n + 3) >> 2] & LOW[n]
    else:
        key = int.from_bytes((mask * ((n + 3) >> 2))[:n], "little")
    return (int.from_bytes(data, "little") ^ key).to_bytes(n, "little")


def _translate_in_place(buf: bytearray, mask: bytes) -> None:
    for i in range(4):
        buf[i::4] = buf[i::4].translate(_XOR_TABLES[mask[i]])


def mask_translate(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """XOR every fourth byte through a 256-entry table: C-speed loops without numpy."""
    buf = bytearray(data)
    _translate_in_place(buf, mask)
    return bytes(buf)


def mask_numpy(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """One vectorised XOR of the payload bytes with the key tiled to their length (any length, any alignment).

    Bytes rather than 64-bit words: no tail to patch up when the length is not a multiple of 8, no scalar to
    convert, and unaligned input (a payload starts anywhere in a read) costs nothing extra. Tiling the key is a
    C ``memcpy``, cheaper than a second numpy call.
    """
    if _np is None:
        raise RuntimeError("numpy is not installed")
    n = len(data)
    if n == 0:
        return b""
    out: bytes = _xor(_frombuffer(data, _U8, n), _frombuffer(mask * ((n >> 2) + 1), _U8, n)).tobytes()
    return out


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


def unmask_utf8(data: bytes | bytearray | memoryview, start: int, end: int, mask: bytes) -> str:
    """Unmask ``data[start:end]`` and decode it as UTF-8; raises ``UnicodeDecodeError`` on invalid input.

    With numpy (and at least ``NUMPY_THRESHOLD`` bytes) the payload is read in place (no slice), XORed into a
    fresh array, and that array is decoded directly: one pass over the bytes plus the decode, against three
    copies for ``apply_mask(data[start:end], mask).decode()``. Without numpy the strided translate works in
    place on one copy, decoded as it is.
    """
    n = end - start
    if n >= NUMPY_THRESHOLD and HAVE_NUMPY:
        return str(_xor(_frombuffer(data, _U8, n, start), _frombuffer(mask * ((n >> 2) + 1), _U8, n)), "utf-8")
    if n >= TRANSLATE_THRESHOLD:
        buf = bytearray(memoryview(data)[start:end])
        _translate_in_place(buf, mask)
        return buf.decode("utf-8")
    return mask_bigint(data[start:end], mask).decode("utf-8")
