import pytest

from signaling.ws import mask
from signaling.ws.mask import mask_bigint, unmask_utf8

from .helpers import MASK

SAMPLE = ("ascii, café, €, 日本語, 🙂 " * 3000).encode()


@pytest.mark.parametrize("numpy", [True, False], ids=["numpy", "no-numpy"])
@pytest.mark.parametrize("size", [0, 1, 5, 511, 512, 513, 1025, 4099, 65541], ids=str)
@pytest.mark.parametrize("offset", [0, 3, 8])
def test_unmask_utf8_matches_apply_mask(monkeypatch: pytest.MonkeyPatch, numpy: bool, size: int, offset: int) -> None:
    assert mask.HAVE_NUMPY or not numpy, "numpy is part of the test environment (make test installs it)"
    monkeypatch.setattr(mask, "HAVE_NUMPY", numpy)
    text = SAMPLE[:size].decode("utf-8", "ignore").encode()
    data = b"\xaa" * offset + mask_bigint(text, MASK) + b"\xbb\xcc"
    for arg in (data, bytearray(data)):
        assert unmask_utf8(arg, offset, offset + len(text), MASK) == text.decode()


@pytest.mark.parametrize("numpy", [True, False], ids=["numpy", "no-numpy"])
@pytest.mark.parametrize("where", [10, 600, 5000])
def test_unmask_utf8_invalid(monkeypatch: pytest.MonkeyPatch, numpy: bool, where: int) -> None:
    assert mask.HAVE_NUMPY or not numpy, "numpy is part of the test environment (make test installs it)"
    monkeypatch.setattr(mask, "HAVE_NUMPY", numpy)
    payload = b"a" * where + b"\xed\xa0\x80" + b"b" * 10  # an encoded surrogate
    data = b"xx" + mask_bigint(payload, MASK)
    with pytest.raises(UnicodeDecodeError) as info:
        unmask_utf8(data, 2, len(data), MASK)
    assert info.value.start == where
