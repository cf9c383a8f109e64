"""Wrong arguments raise TypeError/ValueError (or PCCLError for what the library rejects), never
an assertion, a crash or a hang."""

from __future__ import annotations


import pytest

import pccl

pytestmark = pytest.mark.timeout(60)

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

SUM = pccl.ReduceOp.SUM


@pytest.fixture(scope="module")
def solo():
    """One connected peer (a run of one: all-reduce raises PCCLError TOO_FEW_PEERS, as in PCCL 1.0,
    once the Python-side argument checks passed)."""
    m = pccl.MasterNode("127.0.0.1:0")
    m.run()
    c = pccl.Communicator(f"127.0.0.1:{m.port}")
    c.connect()
    yield c
    c.close()
    m.close()


def expect_too_few_peers(call):
    """The arguments were accepted; a peer alone in its group reduces nothing (PCCL 1.0)."""
    with pytest.raises(pccl.PCCLError) as e:
        call()
    assert e.value.result == pccl.Result.TOO_FEW_PEERS


def test_a_run_of_one_raises_too_few_peers(solo):
    x = torch.arange(8, dtype=torch.float32)
    y = torch.zeros(8)
    expect_too_few_peers(lambda: solo.all_reduce(x, y, op=SUM))
    assert torch.equal(y, torch.zeros(8))
    od = pccl.ReduceOperandDescriptor(pccl.DataType.FLOAT)
    d = pccl.ReduceOpDescriptor.from_torch(x, y, pccl.ReduceDescriptor(8, SUM, 2, od, None))
    expect_too_few_peers(lambda: solo.all_reduce_multiple_with_retry([d]))
    assert torch.equal(y, torch.zeros(8))


def test_non_contiguous(solo):
    x = torch.zeros(4, 4)
    with pytest.raises(ValueError, match="contiguous"):
        solo.all_reduce(x.t(), torch.zeros(4, 4), op=SUM)
    with pytest.raises(ValueError, match="contiguous"):
        solo.all_reduce(torch.zeros(8), x[:, ::2], op=SUM)
    a = np.zeros((4, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="contiguous"):
        solo.all_reduce(a.T, a.T, op=SUM)
    with pytest.raises(ValueError, match="contiguous"):
        solo.all_reduce(a[:, 1], a[:, 1], op=SUM)
    with pytest.raises(ValueError, match="contiguous"):
        pccl.TensorInfo.from_torch(x.t(), "w")
    with pytest.raises(ValueError, match="contiguous"):
        pccl.TensorInfo.from_numpy(a.T, "w")


def test_mismatched_dtype_and_size(solo):
    with pytest.raises(TypeError, match="dtype"):
        solo.all_reduce(torch.zeros(4), torch.zeros(4, dtype=torch.float64), op=SUM)
    with pytest.raises(TypeError, match="dtype"):
        solo.all_reduce(np.zeros(4, np.int32), np.zeros(4, np.int64), op=SUM)
    with pytest.raises(ValueError, match="size"):
        solo.all_reduce(torch.zeros(4), torch.zeros(5), op=SUM)
    with pytest.raises(ValueError, match="size"):
        solo.all_reduce(np.zeros(4), np.zeros(5), op=SUM)
    with pytest.raises(TypeError, match="torch"):
        solo.all_reduce(torch.zeros(4), np.zeros(4, np.float32), op=SUM)
    od = pccl.ReduceOperandDescriptor(pccl.DataType.DOUBLE)
    with pytest.raises(TypeError, match="descriptor"):
        solo.all_reduce(torch.zeros(4), torch.zeros(4), op=SUM, operand_descriptor=od)
    # same element count, other shape: accepted (and then refused by the library: a run of one)
    expect_too_few_peers(lambda: solo.all_reduce(torch.ones(2, 3), torch.zeros(6), op=SUM))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_unsupported_dtypes_and_objects(solo):
    for dt in (torch.bool, torch.complex64):
        with pytest.raises(TypeError, match="not supported"):
            solo.all_reduce(torch.zeros(4, dtype=dt), torch.zeros(4, dtype=dt), op=SUM)
    for dt in (np.bool_, np.complex128, np.longdouble):
        with pytest.raises(TypeError, match="not supported"):
            solo.all_reduce(np.zeros(4, dt), np.zeros(4, dt), op=SUM)
    swapped = np.zeros(4, np.dtype(np.float32).newbyteorder())
    with pytest.raises(TypeError, match="byte order"):
        solo.all_reduce(swapped, swapped, op=SUM)
    for obj in ([1.0, 2.0], b"1234", 3.0, None, memoryview(bytearray(8))):
        with pytest.raises(TypeError, match="torch.Tensor or a numpy.ndarray"):
            solo.all_reduce(obj, obj, op=SUM)
    with pytest.raises(TypeError):
        solo.all_reduce(torch.sparse_coo_tensor([[0]], [1.0], (4,)), torch.zeros(4), op=SUM)


def test_devices(solo):
    with pytest.raises(ValueError, match="negated"):
        x = torch.ones(4)._neg_view()
        solo.all_reduce(x, torch.zeros(4), op=SUM)
    meta = torch.empty(4, device="meta")
    with pytest.raises(ValueError, match="device"):
        solo.all_reduce(meta, meta, op=SUM)
    # CUDA memory in a build without CUDA support
    assert not pccl.cuda.is_available()
    info = pccl.TensorInfo("w", 0x1000, numel=4, dtype=pccl.DataType.FLOAT, device_type=pccl.DeviceType.CUDA)
    with pytest.raises(ValueError, match="CUDA"):
        solo.sync_shared_state(pccl.SharedState([info]))
    from pccl import _buffers

    with pytest.raises(ValueError, match="CUDA"):
        _buffers._check_device(pccl.DeviceType.CUDA, "send")


def test_bad_values(solo):
    x = torch.zeros(4)
    with pytest.raises(ValueError, match="ReduceOp"):
        solo.all_reduce(x, x, op=7)
    with pytest.raises(TypeError):
        solo.all_reduce(x, x, op="sum")
    with pytest.raises(TypeError):
        solo.all_reduce(x, x)  # op is required
    with pytest.raises(ValueError, match="tag"):
        solo.all_reduce(x, x, op=SUM, tag=-1)
    with pytest.raises(ValueError, match="tag"):
        solo.all_reduce(x, x, op=SUM, tag=1 << 64)
    with pytest.raises(TypeError, match="tag"):
        solo.all_reduce(x, x, op=SUM, tag=1.5)
    with pytest.raises(ValueError, match="empty"):
        solo.all_reduce(torch.zeros(0), torch.zeros(0), op=SUM)
    ro = np.zeros(4, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        solo.all_reduce(np.zeros(4, np.float32), ro, op=SUM)
    buf = torch.zeros(8)
    with pytest.raises(ValueError, match="overlap"):
        solo.all_reduce(buf[0:4], buf[2:6], op=SUM)
    with pytest.raises(TypeError, match="QuantizationOptions"):
        solo.all_reduce(x, x, op=SUM, quantization_options="minmax")
    with pytest.raises(ValueError, match="QuantizationAlgorithm"):
        pccl.QuantizationOptions(algorithm=9)
    with pytest.raises(TypeError):
        solo.get_attribute("world")
    with pytest.raises(ValueError):
        solo.get_attribute(0)
    with pytest.raises(TypeError):
        solo.sync_shared_state([x])
    with pytest.raises(ValueError):
        solo.sync_shared_state(pccl.SharedState([]), strategy=5)
    with pytest.raises(ValueError):
        solo.connect(n_attempts=0)


def test_descriptors():
    od = pccl.ReduceOperandDescriptor(pccl.DataType.FLOAT)
    with pytest.raises(ValueError, match="count"):
        pccl.ReduceDescriptor(0, SUM, 0, od, None)
    with pytest.raises(TypeError, match="operand_descriptor"):
        pccl.ReduceDescriptor(4, SUM, 0, pccl.DataType.FLOAT, None)
    with pytest.raises(ValueError, match="DataType"):
        pccl.ReduceOperandDescriptor(42)
    d = pccl.ReduceDescriptor(4, SUM, 0, od, None)
    with pytest.raises(ValueError, match="count=4"):
        pccl.ReduceOpDescriptor.from_torch(torch.zeros(5), torch.zeros(5), d)
    with pytest.raises(TypeError, match="FLOAT"):
        pccl.ReduceOpDescriptor.from_numpy(np.zeros(4, np.float64), np.zeros(4, np.float64), d)
    with pytest.raises(TypeError):
        pccl.ReduceOpDescriptor.from_numpy(torch.zeros(4), torch.zeros(4), d)
    with pytest.raises(ValueError):
        pccl.ReduceOpDescriptor(0, 0x1000, d)  # NULL
    with pytest.raises(TypeError):
        pccl.ReduceOpDescriptor(0x1000, 0x1000, "desc")


def test_shared_state_arguments():
    with pytest.raises(ValueError, match="twice"):
        pccl.SharedState([pccl.TensorInfo.from_torch(torch.zeros(2), "a"),
                          pccl.TensorInfo.from_torch(torch.zeros(2), "a")])
    with pytest.raises(TypeError):
        pccl.SharedState([torch.zeros(2)])
    with pytest.raises(ValueError):
        pccl.TensorInfo.from_torch(torch.zeros(2), "")
    with pytest.raises(TypeError):
        pccl.TensorInfo.from_torch(torch.zeros(2), 7)
    with pytest.raises(ValueError):
        pccl.TensorInfo("x", 0, numel=4, dtype=pccl.DataType.FLOAT, device_type=pccl.DeviceType.CPU)
    ro = np.zeros(4, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        pccl.TensorInfo.from_numpy(ro, "ro")


def test_duplicate_tags_in_a_batch(solo):
    od = pccl.ReduceOperandDescriptor(pccl.DataType.FLOAT)
    x, y = torch.zeros(4), torch.zeros(4)
    d = pccl.ReduceOpDescriptor.from_torch(x, y, pccl.ReduceDescriptor(4, SUM, 1, od, None))
    with pytest.raises(ValueError, match="tag 1"):
        solo.all_reduce_multiple_with_retry([d, d])
    with pytest.raises(TypeError):
        solo.all_reduce_multiple_with_retry([d], max_in_flight="2")


def test_addresses():
    for bad in ("", "1.2.3.4:", "1.2.3.4:x", "1.2.3.4:70000", "[::1", "[::1]x", "[::1]:", "no.such.host.invalid:5",
                "1.2.3.4:0"):
        with pytest.raises(ValueError):
            pccl.Communicator(bad)
    with pytest.raises(TypeError):
        pccl.Communicator(("127.0.0.1", 5))
    with pytest.raises(ValueError):
        pccl.Communicator("127.0.0.1:5", peer_group=-1)
    with pytest.raises(ValueError):
        pccl.Communicator("127.0.0.1:5", peer_group=1 << 32)
    ok = [("127.0.0.1:5", "127.0.0.1:5"), ("[::1]:5", "[::1]:5"), ("localhost:5", "127.0.0.1:5"),
          ("10.0.0.1", "10.0.0.1:48148"), ("[2001:db8::7]:9", "[2001:db8::7]:9"), ("::1", "[::1]:48148")]
    for text, shown in ok:
        with pccl.Communicator(text) as c:
            assert c.master_address == shown


def test_deadline_keywords(master):
    # Out-of-range values are refused: below the library's floor, or not a uint32.
    with pytest.raises(pccl.PCCLError) as e:
        pccl.Communicator("127.0.0.1:5", op_timeout_ms=50)
    assert e.value.result == pccl.Result.INVALID_ARGUMENT and "op_timeout_ms" in str(e.value)
    with pytest.raises(pccl.PCCLError):
        pccl.Communicator("127.0.0.1:5", heartbeat_timeout_ms=99)
    with pytest.raises(ValueError):
        pccl.Communicator("127.0.0.1:5", io_threads=-1)
    with pytest.raises(TypeError):
        pccl.Communicator("127.0.0.1:5", "fast")  # deadlines are keyword-only; peer_group must be an int
    # Accepted values give a working communicator.
    with pccl.Communicator(f"127.0.0.1:{master.port}", op_timeout_ms=2000, heartbeat_timeout_ms=1000, connect_timeout_ms=3000,
                           admission_timeout_ms=5000, io_threads=1) as c:
        c.connect()
        assert c.get_attribute(pccl.Attribute.GLOBAL_WORLD_SIZE) == 1


def test_calls_before_connect_and_after_close(master):
    c = pccl.Communicator(f"127.0.0.1:{master.port}")
    x = torch.zeros(4)
    with pytest.raises(pccl.PCCLError) as ei:
        c.all_reduce(x, x, op=SUM)
    assert ei.value.result == pccl.Result.INVALID_USAGE and ei.value.message
    with pytest.raises(pccl.PCCLError) as ei:
        c.get_attribute(pccl.Attribute.GLOBAL_WORLD_SIZE)
    assert ei.value.result == pccl.Result.INVALID_USAGE
    assert c.last_error_message
    c.close()
    c.close()  # idempotent
    assert c.closed
    for call in (lambda: c.connect(), lambda: c.update_topology(), lambda: c.all_reduce(x, x, op=SUM),
                 lambda: c.are_peers_pending(), lambda: c.sync_shared_state(pccl.SharedState([]))):
        with pytest.raises(pccl.PCCLError) as ei:
            call()
        assert ei.value.result == pccl.Result.INVALID_USAGE


def test_connect_retries_then_fails(master):
    import socket
    import time

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    c = pccl.Communicator(f"127.0.0.1:{port}")
    t0 = time.monotonic()
    with pytest.raises(pccl.PCCLError) as ei:
        c.connect(n_attempts=3)
    elapsed = time.monotonic() - t0
    assert ei.value.result == pccl.Result.MASTER_CONNECTION_FAILED
    assert "3 attempts" in ei.value.message
    assert 1.0 <= elapsed < 10, elapsed  # two sleeps of 0.5 s and 1 s
    c.close()
