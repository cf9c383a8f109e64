"""PCCL 1.0's names: keyword arguments, PCCLError(result, func_name) and PCCLError.check,
DeviceType.from_torch_device_type; and this library's earlier names, kept as aliases."""

from __future__ import annotations

import pickle

import pytest

import pccl

pytestmark = pytest.mark.timeout(60)

SUM = pccl.ReduceOp.SUM


def _descriptor(count: int) -> pccl.ReduceDescriptor:
    return pccl.ReduceDescriptor(count, SUM, 0, pccl.ReduceOperandDescriptor(pccl.DataType.FLOAT), None)


def test_reduce_op_descriptor_from_torch_reduce_descriptor_keyword():
    torch = pytest.importorskip("torch")
    x, y, d = torch.ones(8), torch.zeros(8), _descriptor(8)
    rod = pccl.ReduceOpDescriptor.from_torch(send=x, recv=y, reduce_descriptor=d)
    assert (rod.sendbuf_ptr, rod.recvbuf_ptr, rod.reduce_descriptor) == (x.data_ptr(), y.data_ptr(), d)
    assert pccl.ReduceOpDescriptor.from_torch(x, y, reduce_descriptor=d).reduce_descriptor is d
    assert pccl.ReduceOpDescriptor.from_torch(x, y, desc=d).reduce_descriptor is d  # the earlier name
    with pytest.raises(TypeError, match="alias"):
        pccl.ReduceOpDescriptor.from_torch(x, y, reduce_descriptor=d, desc=d)
    with pytest.raises(TypeError, match="reduce_descriptor"):
        pccl.ReduceOpDescriptor.from_torch(x, y, reduce_descriptor="not a descriptor")


def test_reduce_op_descriptor_from_numpy_reduce_descriptor_keyword():
    np = pytest.importorskip("numpy")
    x, y, d = np.ones(8, dtype=np.float32), np.zeros(8, dtype=np.float32), _descriptor(8)
    rod = pccl.ReduceOpDescriptor.from_numpy(send=x, recv=y, reduce_descriptor=d)
    assert (rod.sendbuf_ptr, rod.recvbuf_ptr) == (x.ctypes.data, y.ctypes.data)
    assert pccl.ReduceOpDescriptor.from_numpy(x, y, desc=d).reduce_descriptor is d
    with pytest.raises(TypeError, match="alias"):
        pccl.ReduceOpDescriptor.from_numpy(x, y, reduce_descriptor=d, desc=d)


def test_tensor_info_from_numpy_tensor_keyword():
    np = pytest.importorskip("numpy")
    a = np.arange(6, dtype=np.int16)
    info = pccl.TensorInfo.from_numpy(tensor=a, name="w", allow_content_inequality=True)
    assert (info.name, info.data_ptr, info.numel, info.dtype, info.device_type, info.allow_content_inequality) == (
        "w", a.ctypes.data, 6, pccl.DataType.INT16, pccl.DeviceType.CPU, True)
    assert pccl.TensorInfo.from_numpy(a, "w").numel == 6
    assert pccl.TensorInfo.from_numpy(array=a, name="w").data_ptr == a.ctypes.data  # the earlier name
    with pytest.raises(TypeError, match="alias"):
        pccl.TensorInfo.from_numpy(tensor=a, array=a, name="w")


def test_tensor_info_from_torch_tensor_keyword():
    torch = pytest.importorskip("torch")
    t = torch.zeros(5, dtype=torch.bfloat16)
    info = pccl.TensorInfo.from_torch(tensor=t, name="b")
    assert (info.name, info.data_ptr, info.numel, info.dtype) == ("b", t.data_ptr(), 5, pccl.DataType.BFLOAT16)


def test_pccl_error_result_and_func_name():
    e = pccl.PCCLError(pccl.Result.RANK_CONNECTION_LOST, "pcclAllReduce")
    assert isinstance(e, Exception)
    assert e.result is pccl.Result.RANK_CONNECTION_LOST and e.func_name == "pcclAllReduce" and e.message == ""
    assert str(e) == "pcclAllReduce failed with error: RANK_CONNECTION_LOST (8)"
    e = pccl.PCCLError(result=8, func_name="pcclAllReduce")
    assert e.result == 8 and e.func_name == "pcclAllReduce"
    # Our own message: by keyword (the earlier second parameter), or third.
    e = pccl.PCCLError(8, message="peer 3 stopped responding")
    assert e.func_name is None and e.message == "peer 3 stopped responding"
    assert str(e) == "RANK_CONNECTION_LOST (8): peer 3 stopped responding"
    e = pccl.PCCLError(8, "pcclAllReduce", "peer 3 stopped responding")
    assert str(e) == "pcclAllReduce failed with error: RANK_CONNECTION_LOST (8): peer 3 stopped responding"
    e2 = pickle.loads(pickle.dumps(e))
    assert (type(e2), e2.result, e2.func_name, e2.message) == (pccl.PCCLError, e.result, e.func_name, e.message)


def test_pccl_error_check():
    assert pccl.PCCLError.check(0, "pcclInit") is None
    assert pccl.PCCLError.check(pccl.Result.SUCCESS, "pcclInit") is None
    with pytest.raises(pccl.PCCLError) as ei:
        pccl.PCCLError.check(pccl.Result.TOO_FEW_PEERS, "pcclAllReduce")
    assert ei.value.result is pccl.Result.TOO_FEW_PEERS and ei.value.func_name == "pcclAllReduce"
    with pytest.raises(pccl.PCCLError) as ei:
        pccl.PCCLError.check(result=3, func_name="pcclConnect")
    assert ei.value.result is pccl.Result.INVALID_ARGUMENT


def test_library_errors_name_the_failed_call():
    with pytest.raises(pccl.PCCLError) as ei:
        pccl.Communicator("127.0.0.1:1", p2p_connection_pool_size=1000)  # the C library rejects > 64
    assert ei.value.func_name == "pcclCreateCommunicatorEx"
    assert ei.value.result == pccl.Result.INVALID_ARGUMENT and "p2p_connection_pool_size" in ei.value.message
    assert str(ei.value).startswith("pcclCreateCommunicatorEx failed with error: INVALID_ARGUMENT (3): ")


def test_device_type_from_torch_device_type():
    f = pccl.DeviceType.from_torch_device_type
    assert f("cpu") is pccl.DeviceType.CPU
    assert f("cuda") is pccl.DeviceType.CUDA
    assert f("cuda:1") is pccl.DeviceType.CUDA
    for bad in ("mps", "meta", ""):
        with pytest.raises(ValueError):
            f(bad)
    with pytest.raises(TypeError):
        f(1)


def test_device_type_from_torch_device():
    torch = pytest.importorskip("torch")
    f = pccl.DeviceType.from_torch_device_type
    assert f(torch.device("cpu")) is pccl.DeviceType.CPU
    assert f(torch.device("cuda", 0)) is pccl.DeviceType.CUDA  # no GPU needed to name one
    assert f(torch.zeros(1).device.type) is pccl.DeviceType.CPU
    with pytest.raises(ValueError):
        f(torch.device("meta"))
