"""The all-reduce fast path (_buffers.reduce_operands) agrees with the full checks (describe and
check_pair): the same addresses, count and dtype when the buffers are good, the full path's
error when they are not, whether or not the dtype caches are warm."""

from __future__ import annotations

import pytest

import pccl
from pccl import _buffers, _pccl

pytestmark = pytest.mark.timeout(60)

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")


def full(send, recv, expected=None):
    s = _buffers.describe(send, "send")
    r = _buffers.describe(recv, "recv", writeable=True)
    _buffers.check_pair(s, r, expected_dtype=expected)
    return s.ptr, r.ptr, s.numel, s.dtype


def good_pairs():
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    a = np.arange(12, dtype=np.int64).reshape(3, 4)
    p = torch.nn.Parameter(torch.zeros(6, dtype=torch.bfloat16))
    big = torch.zeros(8)
    yield t, torch.empty(12)
    yield t, t
    yield p, torch.zeros(2, 3, dtype=torch.bfloat16)
    yield big[:4], big[4:]  # adjacent halves: no overlap
    yield a, np.empty(12, np.dtype("q"))
    yield a, a
    yield np.zeros(5, np.uint16), np.zeros(5, np.uint16)
    yield np.full((), 3.0, np.float32), np.ones((), np.float32)  # 0-d arrays


def test_good_buffers_give_what_the_full_checks_give(monkeypatch):
    for send, recv in good_pairs():
        _buffers._BY_TORCH_DTYPE.clear()
        _buffers._BY_NUMPY_DTYPE.clear()
        want = full(send, recv)
        assert _buffers.reduce_operands(send, recv) == want  # cold caches: the full path fills them
    for send, recv in good_pairs():
        _buffers.reduce_operands(send, recv)
    slow = _buffers.describe
    monkeypatch.setattr(_buffers, "describe", None)  # warm caches: good buffers never need it
    for send, recv in good_pairs():
        got = _buffers.reduce_operands(send, recv)
        assert type(got[3]) is pccl.DataType
        assert _buffers.reduce_operands(send, recv, got[3]) == got
        monkeypatch.setattr(_buffers, "describe", slow)
        assert got == full(send, recv)
        monkeypatch.setattr(_buffers, "describe", None)


def test_bad_buffers_raise_the_full_checks_error_with_warm_caches():
    _buffers.reduce_operands(torch.zeros(2), torch.zeros(2))
    _buffers.reduce_operands(np.zeros(2, np.float32), np.zeros(2, np.float32))
    x = torch.zeros(4, 4)
    a = np.zeros((4, 4), np.float32)
    ro = np.zeros(4, np.float32)
    ro.flags.writeable = False
    bad = [
        (x.t(), torch.zeros(16), None), (torch.zeros(16), x.t(), None), (a.T, a.T, None),
        (torch.zeros(4), torch.zeros(4, dtype=torch.float64), None), (torch.zeros(4), torch.zeros(5), None),
        (np.zeros(4, np.float32), np.zeros(5, np.float32), None), (np.zeros(4, np.float32), ro, None),
        (torch.zeros(0), torch.zeros(0), None), (np.zeros(0, np.float32), np.zeros(0, np.float32), None),
        (x[0:2].reshape(-1), x[1:3].reshape(-1), None), (torch.zeros(4), np.zeros(4, np.float32), None),
        (np.zeros(4, np.float32), torch.zeros(4), None), (torch.ones(4)._neg_view(), torch.zeros(4), None),
        (torch.zeros(4), torch.zeros(4), pccl.DataType.DOUBLE), (torch.empty(4, device="meta"),) * 2 + (None,),
        (torch.zeros(4, dtype=torch.bool),) * 2 + (None,), ([1.0], [1.0], None),
    ]
    for send, recv, expected in bad:
        with pytest.raises((TypeError, ValueError)) as want:
            full(send, recv, expected)
        with pytest.raises(type(want.value)) as got:
            _buffers.reduce_operands(send, recv, expected)
        assert str(got.value) == str(want.value)


def test_contiguous_address():
    a = np.zeros((4, 4), np.float32)
    assert _pccl.contiguous_address(a, True) == a.__array_interface__["data"][0]
    assert _pccl.contiguous_address(a[1:], False) == a[1:].__array_interface__["data"][0]
    assert _pccl.contiguous_address(a.T, False) is None
    assert _pccl.contiguous_address(a[:, 1], False) is None
    ro = np.zeros(4, np.float32)
    ro.flags.writeable = False
    assert _pccl.contiguous_address(ro, False) == ro.__array_interface__["data"][0]
    assert _pccl.contiguous_address(ro, True) is None
    assert _pccl.contiguous_address(b"abc", True) is None
    assert _pccl.contiguous_address(3.0, False) is None
