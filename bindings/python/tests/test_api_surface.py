"""The Python API surface: names, enum values (equal to pccl.h), signatures and defaults of
API.md's "Python API" section, PCCLError, versions, lazy imports."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import pccl
from pccl import _pccl

pytestmark = pytest.mark.timeout(60)

API_NAMES = [
    "Communicator", "MasterNode", "ReduceOp", "Attribute", "SharedStateSyncStrategy", "DataType", "DeviceType",
    "DistributionHint", "QuantizationAlgorithm", "ReduceOperandDescriptor", "QuantizationOptions",
    "ReduceDescriptor", "ReduceOpDescriptor", "TensorInfo", "SharedState", "SharedStateSyncInfo", "ReduceInfo", "CommStats",
    "AsyncReduceHandle", "PCCLError", "cuda", "__version__",
]


@pytest.mark.parametrize("name", API_NAMES)
def test_names_exist(name):
    assert hasattr(pccl, name)
    assert name in pccl.__all__


def c(name):
    return _pccl.C[name]


ENUMS = {
    pccl.ReduceOp: {"SUM": "pcclSum", "AVG": "pcclAvg", "PROD": "pcclProd", "MAX": "pcclMax", "MIN": "pcclMin"},
    pccl.Attribute: {
        "GLOBAL_WORLD_SIZE": "PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE",
        "LOCAL_WORLD_SIZE": "PCCL_ATTRIBUTE_PEER_GROUP_WORLD_SIZE",
        "NUM_DISTINCT_PEER_GROUPS": "PCCL_ATTRIBUTE_NUM_DISTINCT_PEER_GROUPS",
        "LARGEST_PEER_GROUP_WORLD_SIZE": "PCCL_ATTRIBUTE_LARGEST_PEER_GROUP_WORLD_SIZE",
        "RANK": "PCCL_ATTRIBUTE_RANK",
    },
    pccl.SharedStateSyncStrategy: {
        "ENFORCE_POPULAR": "PCCL_SHARED_STATE_SYNC_STRATEGY_ENFORCE_POPULAR",
        "RECEIVE_ONLY": "PCCL_SHARED_STATE_SYNC_STRATEGY_RECEIVE_ONLY",
        "SEND_ONLY": "PCCL_SHARED_STATE_SYNC_STRATEGY_SEND_ONLY",
    },
    pccl.DataType: {
        "UINT8": "pcclUint8", "INT8": "pcclInt8", "INT16": "pcclInt16", "UINT16": "pcclUint16",
        "UINT32": "pcclUint32", "INT32": "pcclInt32", "UINT64": "pcclUint64", "INT64": "pcclInt64",
        "FLOAT16": "pcclFloat16", "BFLOAT16": "pcclBFloat16", "FLOAT": "pcclFloat", "DOUBLE": "pcclDouble",
    },
    pccl.DeviceType: {"CPU": "pcclDeviceCpu", "CUDA": "pcclDeviceCuda"},
    pccl.DistributionHint: {"NONE": "pcclDistributionNone", "NORMAL": "pcclDistributionNormal",
                            "UNIFORM": "pcclDistributionUniform"},
    pccl.QuantizationAlgorithm: {"NONE": "pcclQuantNone", "MIN_MAX": "pcclQuantMinMax",
                                 "ZERO_POINT_SCALE": "pcclQuantZeroPointScale"},
    pccl.Result: {
        "SUCCESS": "pcclSuccess", "NOT_INITIALIZED": "pcclNotInitialized", "INTERNAL_ERROR": "pcclInternalError",
        "INVALID_ARGUMENT": "pcclInvalidArgument", "INVALID_USAGE": "pcclInvalidUsage",
        "TOO_FEW_PEERS": "pcclTooFewPeers", "MASTER_CONNECTION_FAILED": "pcclMasterConnectionFailed",
        "RANK_CONNECTION_FAILED": "pcclRankConnectionFailed", "RANK_CONNECTION_LOST": "pcclRankConnectionLost",
        "NO_SHARED_STATE_AVAILABLE": "pcclNoSharedStateAvailable", "PENDING_ASYNC_OPS": "pcclPendingAsyncOps",
        "UPDATE_TOPOLOGY_FAILED": "pcclUpdateTopologyFailed",
        "TOPOLOGY_OPTIMIZATION_FAILED": "pcclTopologyOptimizationFailed", "TIMEOUT": "pcclTimeout",
        "KICKED": "pcclKicked", "AUTHENTICATION_FAILED": "pcclAuthenticationFailed", "MISMATCH": "pcclMismatch",
        "MASTER_CONNECTION_LOST": "pcclMasterConnectionLost", "ABORTED": "pcclAborted",
    },
}


@pytest.mark.parametrize("enum", list(ENUMS), ids=lambda e: e.__name__)
def test_enum_values_equal_the_c_enums(enum):
    expected = ENUMS[enum]
    assert {m.name for m in enum} == set(expected)  # canonical members (aliases aside)
    for py_name, c_name in expected.items():
        assert int(getattr(enum, py_name)) == c(c_name), (py_name, c_name)


def test_enum_values_as_specified():
    # The fixed numbers of API.md, independent of the header.
    assert [int(x) for x in pccl.ReduceOp] == [0, 1, 2, 3, 4]
    assert [m.name for m in pccl.ReduceOp] == ["SUM", "AVG", "PROD", "MAX", "MIN"]
    assert [(m.name, int(m)) for m in pccl.DataType] == [
        ("UINT8", 0), ("INT8", 1), ("INT16", 2), ("UINT16", 3), ("UINT32", 4), ("INT32", 5), ("UINT64", 6),
        ("INT64", 7), ("FLOAT16", 8), ("BFLOAT16", 9), ("FLOAT", 10), ("DOUBLE", 11)]
    assert pccl.Attribute.GLOBAL_WORLD_SIZE == 1 and pccl.Attribute.LOCAL_WORLD_SIZE == 2
    assert pccl.Attribute.NUM_DISTINCT_PEER_GROUPS == 3 and pccl.Attribute.LARGEST_PEER_GROUP_WORLD_SIZE == 4
    assert pccl.Result.RANK_CONNECTION_LOST == 8
    assert c("CCOIP_PROTOCOL_PORT_MASTER") == pccl.DEFAULT_MASTER_PORT == 48148


def params(fn):
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


E = inspect.Parameter.empty
POS = inspect.Parameter.POSITIONAL_OR_KEYWORD
KW = inspect.Parameter.KEYWORD_ONLY


def test_signatures():
    # The PCCL 1.0 parameters, then our keyword-only extensions (deadlines etc. defaulting to 0;
    # same_host, secret and encrypt to None: the environment, else the default).
    assert params(pccl.Communicator.__init__) == [
        ("self", POS, E), ("address", POS, E), ("peer_group", POS, 0), ("p2p_connection_pool_size", POS, 0),
        ("connect_timeout_ms", KW, 0), ("heartbeat_timeout_ms", KW, 0), ("op_timeout_ms", KW, 0),
        ("admission_timeout_ms", KW, 0), ("io_threads", KW, 0), ("state_compression_level", KW, 0),
        ("same_host", KW, None), ("secret", KW, None), ("encrypt", KW, None), ("advertised_address", KW, None),
        ("port_range", KW, None), ("master_reconnect_timeout_ms", KW, None)]
    assert params(pccl.Communicator.connect) == [("self", POS, E), ("n_attempts", POS, 5)]
    for name in ("update_topology", "are_peers_pending", "optimize_topology", "close"):
        assert params(getattr(pccl.Communicator, name)) == [("self", POS, E)]
    assert params(pccl.Communicator.sync_shared_state) == [
        ("self", POS, E), ("shared_state", POS, E), ("strategy", POS, pccl.SharedStateSyncStrategy.ENFORCE_POPULAR)]
    reduce_params = [("self", POS, E), ("send", POS, E), ("recv", POS, E), ("op", KW, E), ("tag", KW, 0),
                     ("operand_descriptor", KW, None), ("quantization_options", KW, None)]
    assert params(pccl.Communicator.all_reduce) == reduce_params
    # all_reduce_async: PCCL 1.0's, then the extension world_size (pcclAllReduceWorldAsync).
    assert params(pccl.Communicator.all_reduce_async) == reduce_params + [("world_size", KW, 0)]
    # The other collectives (extensions, docs/collectives.md).
    for name in ("all_gather", "all_gather_async"):
        assert params(getattr(pccl.Communicator, name)) == [
            ("self", POS, E), ("send", POS, E), ("recv", POS, E), ("tag", KW, 0), ("counts", KW, None)]
    for name in ("reduce_scatter", "reduce_scatter_async"):
        assert params(getattr(pccl.Communicator, name)) == [
            ("self", POS, E), ("send", POS, E), ("recv", POS, E), ("op", KW, E), ("tag", KW, 0), ("counts", KW, None),
            ("quantization_options", KW, None)]
    for name in ("broadcast", "broadcast_async"):
        assert params(getattr(pccl.Communicator, name)) == [
            ("self", POS, E), ("tensor", POS, E), ("root", KW, E), ("tag", KW, 0), ("world_size", KW, None)]
    assert params(pccl.Communicator.barrier) == [("self", POS, E), ("tag", KW, 0)]
    assert params(pccl.Communicator.all_reduce_multiple_with_retry) == [
        ("self", POS, E), ("descriptors", POS, E), ("max_in_flight", KW, 4)]
    assert params(pccl.Communicator.get_attribute) == [("self", POS, E), ("attribute", POS, E)]
    assert params(pccl.MasterNode.__init__)[:2] == [("self", POS, E), ("listen_address", POS, "0.0.0.0:48148")]
    assert params(pccl.MasterNode.__init__)[2:] == [
        ("secret", KW, None), ("secret_file", KW, None), ("require_secret", KW, False), ("http", KW, None),
        ("http_token_file", KW, None)]
    for name in ("run", "interrupt"):
        assert params(getattr(pccl.MasterNode, name)) == [("self", POS, E)]
    assert params(pccl.TensorInfo.__init__) == [
        ("self", POS, E), ("name", POS, E), ("data_ptr", POS, E), ("numel", KW, E), ("dtype", KW, E),
        ("device_type", KW, E), ("allow_content_inequality", KW, False)]
    for name in ("from_torch", "from_numpy"):  # PCCL 1.0's keyword names (test_pccl1_names.py: aliases)
        assert params(getattr(pccl.TensorInfo, name)) == [
            ("tensor", POS, E), ("name", POS, E), ("allow_content_inequality", KW, False)]
        assert params(getattr(pccl.ReduceOpDescriptor, name)) == [("send", POS, E), ("recv", POS, E),
                                                                   ("reduce_descriptor", POS, E)]
    assert params(pccl.PCCLError.__init__) == [("self", POS, E), ("result", POS, E), ("func_name", POS, None),
                                               ("message", POS, None)]
    assert params(pccl.PCCLError.check) == [("result", POS, E), ("func_name", POS, E)]
    assert params(pccl.DeviceType.from_torch_device_type) == [("device_type", POS, E)]
    assert params(pccl.ReduceOpDescriptor.__init__) == [
        ("self", POS, E), ("sendbuf_ptr", POS, E), ("recvbuf_ptr", POS, E), ("reduce_descriptor", POS, E)]
    assert params(pccl.ReduceDescriptor) == [
        ("count", POS, E), ("op", POS, E), ("tag", POS, E), ("operand_descriptor", POS, E),
        ("quantization_options", POS, E)]
    assert params(pccl.ReduceOperandDescriptor) == [
        ("datatype", POS, E), ("distribution_hint", POS, pccl.DistributionHint.NONE)]
    assert params(pccl.QuantizationOptions) == [
        ("quantized_datatype", POS, pccl.DataType.UINT8), ("algorithm", POS, pccl.QuantizationAlgorithm.MIN_MAX)]
    assert params(pccl.SharedStateSyncInfo) == [("tx_bytes", POS, E), ("rx_bytes", POS, E)]
    assert params(pccl.ReduceInfo) == [("local_world_size", POS, E), ("tx_bytes", POS, E), ("rx_bytes", POS, E),
                                       ("duration_s", POS, 0.0), ("bytes_per_second", POS, 0.0)]
    assert params(pccl.AsyncReduceHandle.wait) == [("self", POS, E)]
    assert [p[0] for p in params(pccl.SharedState.__init__)] == ["self", "tensor_infos"]
    assert params(pccl.SharedState.push_revision) == [("self", POS, E)]
    assert callable(pccl.cuda.is_available)


def test_defaults_and_small_types():
    od = pccl.ReduceOperandDescriptor(pccl.DataType.FLOAT)
    assert od.datatype is pccl.DataType.FLOAT and od.distribution_hint is pccl.DistributionHint.NONE
    q = pccl.QuantizationOptions()
    assert q.quantized_datatype is pccl.DataType.UINT8 and q.algorithm is pccl.QuantizationAlgorithm.MIN_MAX
    d = pccl.ReduceDescriptor(10, pccl.ReduceOp.SUM, 3, od, None)
    assert (d.count, d.op, d.tag, d.operand_descriptor, d.quantization_options) == (10, pccl.ReduceOp.SUM, 3, od, None)
    d2 = pccl.ReduceDescriptor(count=1, op=1, tag=2, operand_descriptor=od, quantization_options=q)
    assert d2.op is pccl.ReduceOp.AVG
    info = pccl.ReduceInfo(2, 10, 20)
    assert (info.local_world_size, info.tx_bytes, info.rx_bytes) == (2, 10, 20)
    si = pccl.SharedStateSyncInfo(1, 2)
    assert (si.tx_bytes, si.rx_bytes) == (1, 2)
    t = pccl.TensorInfo("w", 0x1000, numel=4, dtype=pccl.DataType.FLOAT, device_type=pccl.DeviceType.CPU)
    assert (t.name, t.data_ptr, t.numel, t.dtype, t.device_type, t.allow_content_inequality) == (
        "w", 0x1000, 4, pccl.DataType.FLOAT, pccl.DeviceType.CPU, False)
    s = pccl.SharedState([t])
    assert s.revision == 0
    s.revision = 41
    assert s.push_revision() == 42 and s.revision == 42
    with pytest.raises(ValueError):
        s.revision = -1
    rod = pccl.ReduceOpDescriptor(0x1000, 0x2000, d)
    assert (rod.sendbuf_ptr, rod.recvbuf_ptr, rod.reduce_descriptor) == (0x1000, 0x2000, d)
    assert pccl.Attribute.PEER_GROUP_WORLD_SIZE is pccl.Attribute.LOCAL_WORLD_SIZE


def test_version_and_build_info():
    v = _pccl.version()
    assert pccl.__version__ == f"{v // 10000}.{v // 100 % 100}.{v % 100}"
    from importlib.metadata import version

    assert version("pccl") == pccl.__version__
    assert pccl.cuda.is_available() is False
    assert "RankConnectionLost" in pccl.get_error_string(8)


def test_pccl_error():
    e = pccl.PCCLError(8, "pcclAllReduce", "peer 3 stopped responding")
    assert isinstance(e, Exception)
    assert e.result == 8 and e.result is pccl.Result.RANK_CONNECTION_LOST
    assert e.func_name == "pcclAllReduce" and e.message == "peer 3 stopped responding"
    assert "RANK_CONNECTION_LOST" in str(e) and "peer 3" in str(e) and "pcclAllReduce" in str(e)
    assert pccl.PCCLError(99).result == 99  # unknown codes are kept
    import pickle

    e2 = pickle.loads(pickle.dumps(e))
    assert (e2.result, e2.func_name, e2.message) == (e.result, e.func_name, e.message)


def test_errors_carry_the_library_message():
    with pytest.raises(pccl.PCCLError) as ei:
        pccl.Communicator("127.0.0.1:1", p2p_connection_pool_size=1000)  # the C library rejects > 64
    assert ei.value.result == pccl.Result.INVALID_ARGUMENT
    assert "p2p_connection_pool_size" in ei.value.message


def test_dtype_conversions_torch():
    torch = pytest.importorskip("torch")
    pairs = {
        pccl.DataType.UINT8: torch.uint8, pccl.DataType.INT8: torch.int8, pccl.DataType.INT16: torch.int16,
        pccl.DataType.UINT16: torch.uint16, pccl.DataType.UINT32: torch.uint32, pccl.DataType.INT32: torch.int32,
        pccl.DataType.UINT64: torch.uint64, pccl.DataType.INT64: torch.int64, pccl.DataType.FLOAT16: torch.float16,
        pccl.DataType.BFLOAT16: torch.bfloat16, pccl.DataType.FLOAT: torch.float32,
        pccl.DataType.DOUBLE: torch.float64,
    }
    for dt, tdt in pairs.items():
        assert dt.to_torch_dtype() == tdt
        assert pccl.DataType.from_torch_dtype(tdt) is dt
        assert pccl.DataType.to_torch_dtype(dt) == tdt  # unbound call style
    for bad in (torch.bool, torch.complex64, torch.float8_e4m3fn):
        with pytest.raises(TypeError):
            pccl.DataType.from_torch_dtype(bad)
    with pytest.raises(TypeError):
        pccl.DataType.from_torch_dtype("float32")


def test_dtype_conversions_numpy():
    np = pytest.importorskip("numpy")
    pairs = {
        pccl.DataType.UINT8: np.uint8, pccl.DataType.INT8: np.int8, pccl.DataType.INT16: np.int16,
        pccl.DataType.UINT16: np.uint16, pccl.DataType.UINT32: np.uint32, pccl.DataType.INT32: np.int32,
        pccl.DataType.UINT64: np.uint64, pccl.DataType.INT64: np.int64, pccl.DataType.FLOAT16: np.float16,
        pccl.DataType.FLOAT: np.float32, pccl.DataType.DOUBLE: np.float64,
    }
    for dt, ndt in pairs.items():
        assert dt.to_numpy_dtype() == np.dtype(ndt)
        assert pccl.DataType.from_numpy_dtype(ndt) is dt
        assert pccl.DataType.from_numpy_dtype(np.dtype(ndt)) is dt
        assert pccl.DataType.from_numpy_dtype(np.dtype(ndt).name) is dt
    for bad in (np.bool_, np.complex64, np.object_, "U4", np.longdouble):
        with pytest.raises(TypeError):
            pccl.DataType.from_numpy_dtype(bad)
    with pytest.raises(TypeError):
        pccl.DataType.from_numpy_dtype(np.dtype(">f4" if sys.byteorder == "little" else "<f4"))
    try:
        import ml_dtypes  # noqa: F401
    except ImportError:
        with pytest.raises(TypeError, match="bfloat16"):
            pccl.DataType.BFLOAT16.to_numpy_dtype()
    else:
        assert pccl.DataType.from_numpy_dtype(pccl.DataType.BFLOAT16.to_numpy_dtype()) is pccl.DataType.BFLOAT16


def test_import_loads_neither_torch_nor_numpy():
    code = "import sys, pccl; print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_extension_exports_only_its_init():
    # The C library is linked in statically and kept private: PyInit__pccl is the only symbol
    # the extension exports (no pccl* symbols that could clash with a libpccl.so in the process).
    import re

    path = _pccl.__file__
    out = subprocess.run(["nm", "-D", "--defined-only", path], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        pytest.skip("nm not available")
    defined = [l.split()[-1] for l in out.stdout.splitlines() if re.search(r" [TDBRW] ", l)]
    assert "PyInit__pccl" in defined
    assert not [s for s in defined if s.startswith("pccl")], "the C API must not be re-exported"
