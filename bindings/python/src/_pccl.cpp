// _pccl: the pybind11 extension under the `pccl` Python package.
//
// It wraps the C API (include/pccl.h) and nothing else: no C++ internals, no torch, no numpy.
// Buffers arrive as integer addresses; the pure-Python layer (pccl/*.py) checks tensors and
// arrays, maps dtypes and offers the PCCL 1.0 names (contiguous_address, a buffer-protocol read,
// only speeds up its numpy checks). Every call that can wait for other
// processes releases the GIL. A failed call raises the exception type the package installed with
// _set_error_type (pccl.PCCLError) as ErrorType(result_code, func_name, message), where message is the
// library's own reason (pcclGetLastErrorMessage), captured on the calling thread right after the
// failing call.
//
// Lifetime: Communicator and Master hold the C handle plus a count of the calls in progress on
// it. close() refuses (pcclInvalidUsage) while another thread is inside a communicator call, so a
// handle is never destroyed under a running call (the C API forbids that); a master's close()
// interrupts it and waits for those calls, which then return promptly.
//
// Ctrl-C: Python runs signal handlers only in the main thread, between bytecodes, so a C call
// blocked there would keep KeyboardInterrupt waiting until it returns (for pcclConnect, waiting
// for an admission that may never come: forever). A blocking communicator call made from the
// main thread therefore runs on a relay thread while the main thread waits for it (Relay below);
// when a Python signal handler raises during the wait, the communicator is aborted
// (pcclAbortCommunicator: the call returns pcclAborted promptly, an in-place input restored) and
// the exception propagates once the call has returned.
#include <array>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <pccl.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <ctime>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <semaphore.h>
#include <unistd.h>

namespace py = pybind11;

namespace {

bool interpreterFinalizing() {
#if PY_VERSION_HEX >= 0x030D0000
    return Py_IsFinalizing();
#else
    return _Py_IsFinalizing();
#endif
}

// pccl.PCCLError (a strong reference, deliberately never released: it must outlive every object).
PyObject *g_error_type = nullptr;

std::string threadLastError() {
    const char *m = pcclGetLastErrorMessage(nullptr);
    return m ? std::string(m) : std::string();
}

// Raises ErrorType(result, func_name, message): func_name is the failed C call (None for a
// check of this module's own). The GIL must be held.
[[noreturn]] void raiseResult(pcclResult_t result, const std::string &message, const char *func = nullptr) {
    PyObject *type = g_error_type ? g_error_type : PyExc_RuntimeError;
    py::object name = func ? py::object(py::str(func)) : py::object(py::none());
    py::tuple args = py::make_tuple(static_cast<int>(result), name, message);
    PyErr_SetObject(type, args.ptr());
    throw py::error_already_set();
}

// Runs fn() without the GIL and returns what it returns. Not py::gil_scoped_release: that takes
// the GIL back in a destructor, and a daemon thread that comes back while the interpreter is
// finalizing is ended by CPython with pthread_exit, whose forced unwind terminates the process
// (std::terminate) when it crosses a destructor, which is noexcept. Here the GIL is taken back in
// plain code, which the unwind crosses like any frame.
template <class Fn>
auto withoutGil(Fn &&fn) -> decltype(fn()) {
    using R = decltype(fn());
    PyThreadState *state = PyEval_SaveThread();
    std::optional<R> result;
    try {
        result.emplace(fn());
    } catch (...) {
        PyEval_RestoreThread(state);
        throw;
    }
    PyEval_RestoreThread(state);
    return std::move(*result);
}

// Runs fn (returning pcclResult_t from the C call named func) without the GIL; raises on
// failure with the message the library recorded for this thread.
template <class Fn>
void callNoGil(const char *func, Fn &&fn) {
    std::string message;
    const pcclResult_t r = withoutGil([&] {
        const pcclResult_t result = fn();
        if (result != pcclSuccess) message = threadLastError();
        return result;
    });
    if (r != pcclSuccess) raiseResult(r, message, func);
}

// The Python thread id of the main thread (set at import from threading.main_thread()).
unsigned long g_main_thread = 0;

bool onMainThread() { return g_main_thread != 0 && PyThread_get_thread_ident() == g_main_thread; }

// One thread per process that runs the main thread's blocking calls, so that the main thread stays
// free to run Python's signal handlers meanwhile. The main thread makes one call at a time, so one
// relay serves it; it is started at the first such call (again in a forked child) and never
// stopped (it waits, idle, until the process exits; it never touches Python objects).
class Relay {
public:
    // The process's relay (a new one after fork: the parent's thread does not exist in the child).
    static Relay &get() {
        static std::atomic<Relay *> instance{nullptr};
        Relay *r = instance.load();
        if (r == nullptr || r->pid_ != ::getpid()) {
            r = new Relay();  // deliberately never freed: its thread outlives static destructors
            instance.store(r);
        }
        return *r;
    }

    // Main thread, GIL held (released while waiting): runs job on the relay thread and returns
    // when it finished. The wait wakes when a signal interrupts it (sem_timedwait fails with EINTR:
    // signals are delivered to the main thread while it waits, as it blocks none) and every
    // kRecheck, for a signal that came just before the wait began or went to another thread; then
    // the Python handlers run (PyErr_CheckSignals). If one raises, interrupt() is called (it must
    // make job return soon), the job is waited for, and the exception is thrown as
    // py::error_already_set. An exception thrown by job is rethrown here.
    void run(const std::function<void()> &job, const std::function<void()> &interrupt) {
        if (PyErr_CheckSignals() != 0) throw py::error_already_set();  // a signal came before the call
        if (busy_) {
            // Re-entered from a signal handler that runs while the relay is busy: run it here.
            withoutGil([&] {
                job();
                return 0;
            });
            return;
        }
        busy_ = true;
        struct Idle {
            bool &busy;
            ~Idle() { busy = false; }
        } idle{busy_};
        {
            std::lock_guard lock(mu_);
            job_ = &job;
            error_ = nullptr;
        }
        cv_.notify_one();
        PyThreadState *state = PyEval_SaveThread();
        bool raised = false;
        while (!waitDone(kRecheck)) {
            PyEval_RestoreThread(state);
            raised = PyErr_CheckSignals() != 0;
            state = PyEval_SaveThread();
            if (raised) {
                interrupt();
                while (!waitDone(std::chrono::milliseconds(1000))) {
                }
                break;
            }
        }
        PyEval_RestoreThread(state);
        if (raised) throw py::error_already_set();  // the handler's exception (KeyboardInterrupt)
        if (error_) std::rethrow_exception(error_);
    }

private:
    static constexpr std::chrono::milliseconds kRecheck{20};

    Relay() : pid_(::getpid()) {
        ::sem_init(&done_, 0, 0);
        std::thread([this] { loop(); }).detach();
    }

    void loop() {
        for (;;) {
            const std::function<void()> *job;
            {
                std::unique_lock lock(mu_);
                cv_.wait(lock, [&] { return job_ != nullptr; });
                job = std::exchange(job_, nullptr);
            }
            try {
                (*job)();
            } catch (...) {
                error_ = std::current_exception();  // read by run() after done_ is posted
            }
            ::sem_post(&done_);
        }
    }

    // True once the job is done; false when interrupted by a signal or after `wait` (measured on
    // the realtime clock that sem_timedwait takes: a clock step only moves one recheck).
    bool waitDone(std::chrono::milliseconds wait) {
        struct timespec deadline;
        ::clock_gettime(CLOCK_REALTIME, &deadline);
        const long long ns = deadline.tv_nsec + static_cast<long long>(wait.count()) * 1000000LL;
        deadline.tv_sec += static_cast<time_t>(ns / 1000000000LL);
        deadline.tv_nsec = static_cast<long>(ns % 1000000000LL);
        return ::sem_timedwait(&done_, &deadline) == 0;
    }

    const pid_t pid_;
    bool busy_ = false;  // main thread only
    std::mutex mu_;
    std::condition_variable cv_;
    const std::function<void()> *job_ = nullptr;
    std::exception_ptr error_;
    sem_t done_;
};

// Runs fn (a blocking C call on comm, returning pcclResult_t) without the GIL; on the main thread
// through the relay, so that Ctrl-C aborts comm and raises KeyboardInterrupt. Returns the result
// and, on failure, the library's message for it.
template <class Fn>
pcclResult_t blockingCall(pcclComm_t *comm, Fn &&fn, std::string &message) {
    pcclResult_t result = pcclSuccess;
    auto job = [&] {
        result = fn();
        if (result != pcclSuccess) message = threadLastError();  // per thread: read where it ran
    };
    if (!onMainThread()) {
        withoutGil([&] {
            job();
            return 0;
        });
        return result;
    }
    Relay::get().run(job, [comm] { pcclAbortCommunicator(comm); });
    return result;
}

// blockingCall that raises on failure, naming the C call func.
template <class Fn>
void callBlocking(const char *func, pcclComm_t *comm, Fn &&fn) {
    std::string message;
    const pcclResult_t r = blockingCall(comm, std::forward<Fn>(fn), message);
    if (r != pcclSuccess) raiseResult(r, message, func);
}

ccoip_socket_address_t makeAddress(int protocol, const py::bytes &ip, int port) {
    const std::string raw = ip;
    ccoip_socket_address_t a{};
    if (port < 0 || port > 65535) raiseResult(pcclInvalidArgument, "port " + std::to_string(port) + " is out of range");
    if (protocol == inetIPv4) {
        if (raw.size() != 4) raiseResult(pcclInvalidArgument, "an IPv4 address has 4 bytes");
        a.inet.protocol = inetIPv4;
        for (size_t i = 0; i < 4; ++i) a.inet.ipv4.data[i] = static_cast<uint8_t>(raw[i]);
    } else if (protocol == inetIPv6) {
        if (raw.size() != 16) raiseResult(pcclInvalidArgument, "an IPv6 address has 16 bytes");
        a.inet.protocol = inetIPv6;
        for (size_t i = 0; i < 16; ++i) a.inet.ipv6.data[i] = static_cast<uint8_t>(raw[i]);
    } else {
        raiseResult(pcclInvalidArgument, "unknown address protocol " + std::to_string(protocol));
    }
    a.port = static_cast<uint16_t>(port);
    return a;
}

pcclReduceDescriptor_t makeDescriptor(size_t count, int dtype, int op, uint64_t tag, int hint, int qdtype, int qalgo) {
    pcclReduceDescriptor_t d{};
    d.count = count;
    d.op = static_cast<pcclRedOp_t>(op);
    d.tag = tag;
    d.src_descriptor.datatype = static_cast<pcclDataType_t>(dtype);
    d.src_descriptor.distribution_hint = static_cast<pcclDistributionHint_t>(hint);
    d.quantization_options.quantized_datatype = static_cast<pcclDataType_t>(qdtype);
    d.quantization_options.algorithm = static_cast<pcclQuantizationAlgorithm_t>(qalgo);
    return d;
}

// The address of obj's memory if obj exports a C-contiguous buffer (and a writeable one when
// writable), else None; never raises. For the all-reduce fast path on numpy arrays: one buffer
// request checks contiguity and writeability and yields the address, where reading
// __array_interface__ costs microseconds. The address stays valid only while obj is alive and
// not resized; the caller holds obj for the duration of the operation.
py::object contiguousAddress(py::handle obj, bool writable) {
    Py_buffer view;
    if (PyObject_GetBuffer(obj.ptr(), &view, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) != 0) {
        PyErr_Clear();
        return py::none();
    }
    const bool ok = PyBuffer_IsContiguous(&view, 'C') && (!writable || !view.readonly);
    const auto address = reinterpret_cast<uintptr_t>(view.buf);
    PyBuffer_Release(&view);
    if (!ok) return py::none();
    return py::reinterpret_steal<py::object>(PyLong_FromSize_t(address));
}

// (local_world_size, tx_bytes, rx_bytes, duration_s, bytes_per_second): ReduceInfo's fields.
py::tuple infoTuple(const pcclReduceInfoEx_t &info) {
    return py::make_tuple(info.local_world_size, info.tx_bytes, info.rx_bytes, info.duration_s, info.bytes_per_second);
}

// A C handle plus the number of calls in progress on it.
template <class Handle>
class Guarded {
public:
    // Takes a use of the handle (raises if closed). GIL held.
    Handle *acquire() {
        std::lock_guard lock(mu_);
        if (!handle_) raiseResult(pcclInvalidUsage, std::string(kind_) + " is closed");
        ++users_;
        return handle_;
    }
    void release() {
        std::lock_guard lock(mu_);
        --users_;
        cv_.notify_all();
    }
    bool closed() const {
        std::lock_guard lock(mu_);
        return handle_ == nullptr;
    }
    int users() const {
        std::lock_guard lock(mu_);
        return users_;
    }

protected:
    explicit Guarded(const char *kind) : kind_(kind) {}
    const char *kind_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    Handle *handle_ = nullptr;
    int users_ = 0;
};

template <class G>
struct Use {
    G &g;
    decltype(std::declval<G &>().acquire()) h;
    explicit Use(G &guarded) : g(guarded), h(guarded.acquire()) {}
    ~Use() { g.release(); }
    Use(const Use &) = delete;
    Use &operator=(const Use &) = delete;
};

// ------------------------------------------------------------------------------------------
class Communicator : public Guarded<pcclComm_t> {
public:
    // ex: connect, heartbeat, op, admission timeouts in ms, io threads, shared-state zstd level,
    // same-host switch, encrypt switch (0 = default), as in pcclCommCreateParamsEx_t; secret:
    // the run secret (None: the environment's), without NUL bytes; NAT: the advertised address
    // and the port range (None: the environment's); more master addresses ("host:port,...") and
    // the reconnect timeout (ex[8], as master_reconnect_timeout_ms).
    Communicator(int protocol, const py::bytes &ip, int port, uint32_t peerGroup, uint32_t poolSize,
                 std::array<uint32_t, 9> ex, std::optional<std::string> secret,
                 std::optional<std::string> advertisedAddress = std::nullopt,
                 std::optional<std::string> portRange = std::nullopt,
                 std::optional<std::string> masterAddresses = std::nullopt)
        : Guarded("the communicator") {
        pcclCommCreateParamsEx_t params = PCCL_COMM_CREATE_PARAMS_EX_INIT;
        params.params.master_address = makeAddress(protocol, ip, port);
        params.params.peer_group = peerGroup;
        params.params.p2p_connection_pool_size = poolSize;
        params.connect_timeout_ms = ex[0];
        params.heartbeat_timeout_ms = ex[1];
        params.op_timeout_ms = ex[2];
        params.admission_timeout_ms = ex[3];
        params.io_threads = ex[4];
        params.state_compression_level = ex[5];
        params.same_host = ex[6];
        params.encrypt = ex[7];
        params.secret = secret ? secret->c_str() : nullptr;
        params.advertised_address = advertisedAddress ? advertisedAddress->c_str() : nullptr;
        params.port_range = portRange ? portRange->c_str() : nullptr;
        params.master_addresses = masterAddresses ? masterAddresses->c_str() : nullptr;
        params.master_reconnect_timeout_ms = ex[8];
        pcclComm_t *comm = nullptr;
        callNoGil("pcclCreateCommunicatorEx", [&] { return pcclCreateCommunicatorEx(&params, &comm); });
        handle_ = comm;
    }

    ~Communicator() {
        pcclComm_t *comm;
        {
            std::lock_guard lock(mu_);
            comm = users_ == 0 ? std::exchange(handle_, nullptr) : nullptr;
        }
        // users_ > 0 cannot happen here (a running call holds a reference to this object).
        if (!comm) return;
        if (interpreterFinalizing()) {
            pcclDestroyCommunicator(comm);
        } else {
            py::gil_scoped_release nogil;
            pcclDestroyCommunicator(comm);
        }
    }

    void close() {
        pcclComm_t *comm;
        {
            std::lock_guard lock(mu_);
            if (!handle_) return;
            if (users_ > 0)
                raiseResult(pcclInvalidUsage, "close(): " + std::to_string(users_) +
                                                  " call(s) are still running on this communicator in other threads");
            comm = std::exchange(handle_, nullptr);
        }
        callNoGil("pcclDestroyCommunicator", [&] { return pcclDestroyCommunicator(comm); });
    }

    void connect() {
        Use u(*this);
        callBlocking("pcclConnect", u.h, [&] { return pcclConnect(u.h); });
    }

    void updateTopology() {
        Use u(*this);
        callBlocking("pcclUpdateTopology", u.h, [&] { return pcclUpdateTopology(u.h); });
    }

    bool arePeersPending() {
        Use u(*this);
        bool pending = false;
        callBlocking("pcclArePeersPending", u.h, [&] { return pcclArePeersPending(u.h, &pending); });
        return pending;
    }

    void optimizeTopology() {
        Use u(*this);
        callBlocking("pcclOptimizeTopology", u.h, [&] { return pcclOptimizeTopology(u.h); });
    }

    int getAttribute(int attribute) {
        Use u(*this);
        int value = 0;
        callNoGil("pcclGetAttribute",
                  [&] { return pcclGetAttribute(u.h, static_cast<pcclAttribute_t>(attribute), &value); });
        return value;
    }

    // pcclGetPeerGroupMembers: [(uuid bytes, protocol, ip bytes, port, peer_group, rank)] in rank order.
    py::list members() {
        Use u(*this);
        size_t n = 0;
        callNoGil("pcclGetPeerGroupMembers", [&] { return pcclGetPeerGroupMembers(u.h, nullptr, 0, &n); });
        std::vector<pcclMemberInfo_t> v(n);
        size_t total = 0;
        callNoGil("pcclGetPeerGroupMembers", [&] { return pcclGetPeerGroupMembers(u.h, v.data(), v.size(), &total); });
        py::list out;
        for (size_t i = 0; i < std::min(n, total); ++i) {
            const auto &m = v[i];
            const bool v6 = m.data_address.inet.protocol == inetIPv6;
            const char *ip = v6 ? reinterpret_cast<const char *>(m.data_address.inet.ipv6.data)
                                : reinterpret_cast<const char *>(m.data_address.inet.ipv4.data);
            out.append(py::make_tuple(py::bytes(reinterpret_cast<const char *>(m.uuid.data), 16), v6 ? 6 : 4,
                                      py::bytes(ip, v6 ? 16 : 4), m.data_address.port, m.peer_group, m.rank));
        }
        return out;
    }

    // pcclGetCommunicatorStats: the fields of pcclCommStats_t after struct_size, in order.
    py::tuple stats() {
        Use u(*this);
        pcclCommStats_t s = PCCL_COMM_STATS_INIT;
        callNoGil("pcclGetCommunicatorStats", [&] { return pcclGetCommunicatorStats(u.h, &s); });
        return py::make_tuple(s.all_reduces_completed, s.all_reduces_failed, s.syncs_completed, s.syncs_failed,
                              s.tx_bytes, s.rx_bytes, s.last_all_reduce_micros, s.last_all_reduce_bytes, s.world_size,
                              s.group_world_size, s.rank, s.peer_group, s.epoch, s.votes_completed, s.votes_failed,
                              s.last_send_bytes_per_second, s.collectives_completed, s.collectives_failed);
    }

    py::tuple allReduce(uintptr_t send, uintptr_t recv, size_t count, int dtype, int op, uint64_t tag, int hint,
                        int qdtype, int qalgo) {
        Use u(*this);
        const pcclReduceDescriptor_t d = makeDescriptor(count, dtype, op, tag, hint, qdtype, qalgo);
        pcclReduceInfoEx_t info = PCCL_REDUCE_INFO_EX_INIT;
        callBlocking("pcclAllReduce", u.h, [&] {
            return pcclAllReduceEx(reinterpret_cast<const void *>(send), reinterpret_cast<void *>(recv), &d, u.h, &info);
        });
        return infoTuple(info);
    }

    // world: 0, or the group size the caller counts on (pcclAllReduceWorldAsync).
    void allReduceAsync(uintptr_t send, uintptr_t recv, size_t count, int dtype, int op, uint64_t tag, int hint,
                        int qdtype, int qalgo, uint32_t world) {
        Use u(*this);
        const pcclReduceDescriptor_t d = makeDescriptor(count, dtype, op, tag, hint, qdtype, qalgo);
        pcclAsyncReduceOp_t handle{};
        callNoGil("pcclAllReduceAsync", [&] {
            return pcclAllReduceWorldAsync(reinterpret_cast<const void *>(send), reinterpret_cast<void *>(recv), &d,
                                           world, u.h, &handle);
        });
    }

    // Starts a broadcast (kind 3), all-gather (1) or reduce-scatter (2) and returns at once (await
    // it with awaitAsync). counts: the uneven blocks, or empty for even blocks of count.
    void startCollective(int kind, uintptr_t send, uintptr_t recv, size_t count, const std::vector<size_t> &counts,
                         uint32_t world, int dtype, int op, uint32_t root, uint64_t tag, int qdtype, int qalgo) {
        Use u(*this);
        pcclAsyncReduceOp_t handle{};
        const auto *sp = reinterpret_cast<const void *>(send);
        auto *rp = reinterpret_cast<void *>(recv);
        const size_t *cp = counts.empty() ? nullptr : counts.data();
        switch (kind) {
            case 1: {
                pcclAllGatherDescriptor_t d{count, cp, world, static_cast<pcclDataType_t>(dtype), tag};
                callNoGil("pcclAllGatherAsync", [&] { return pcclAllGatherAsync(sp, rp, &d, u.h, &handle); });
                return;
            }
            case 2: {
                pcclReduceScatterDescriptor_t d{};
                d.count = count;
                d.counts = cp;
                d.world_size = world;
                d.op = static_cast<pcclRedOp_t>(op);
                d.tag = tag;
                d.src_descriptor = {static_cast<pcclDataType_t>(dtype), pcclDistributionNone};
                d.quantization_options = {static_cast<pcclDataType_t>(qdtype), static_cast<pcclQuantizationAlgorithm_t>(qalgo)};
                callNoGil("pcclReduceScatterAsync", [&] { return pcclReduceScatterAsync(sp, rp, &d, u.h, &handle); });
                return;
            }
            case 3: {
                pcclBroadcastDescriptor_t d{count, root, world, static_cast<pcclDataType_t>(dtype), tag};
                callNoGil("pcclBroadcastAsync", [&] { return pcclBroadcastAsync(sp, rp, &d, u.h, &handle); });
                return;
            }
            default: raiseResult(pcclInvalidArgument, "unknown collective kind " + std::to_string(kind));
        }
    }

    void barrier(uint64_t tag) {
        Use u(*this);
        callBlocking("pcclBarrier", u.h, [&] { return pcclBarrier(u.h, tag); });
    }

    // Never raises for the operation's own failure: returns (result, message, world, tx, rx,
    // duration_s, bytes_per_second).
    py::tuple awaitAsync(uint64_t tag) {
        Use u(*this);
        pcclAsyncReduceOp_t handle{};
        handle.comm = u.h;
        handle.tag = tag;
        pcclReduceInfoEx_t info = PCCL_REDUCE_INFO_EX_INIT;
        std::string message;
        const pcclResult_t r = blockingCall(u.h, [&] { return pcclAwaitAsyncReduceEx(&handle, &info); }, message);
        return py::make_tuple(static_cast<int>(r), message, info.local_world_size, info.tx_bytes, info.rx_bytes,
                              info.duration_s, info.bytes_per_second);
    }

    // ops: sequence of (send, recv, count, dtype, op, tag, hint, qdtype, qalgo).
    py::tuple allReduceMultipleWithRetry(const std::vector<std::tuple<uintptr_t, uintptr_t, size_t, int, int, uint64_t,
                                                                      int, int, int>> &ops,
                                         int maxInFlight) {
        Use u(*this);
        std::vector<pcclReduceOpDescriptor_t> descs(ops.size());
        for (size_t i = 0; i < ops.size(); ++i) {
            const auto &[send, recv, count, dtype, op, tag, hint, qdtype, qalgo] = ops[i];
            descs[i].sendbuf = reinterpret_cast<void *>(send);
            descs[i].recvbuf = reinterpret_cast<void *>(recv);
            descs[i].descriptor = makeDescriptor(count, dtype, op, tag, hint, qdtype, qalgo);
        }
        pcclReduceInfoEx_t info = PCCL_REDUCE_INFO_EX_INIT;
        callBlocking("pcclAllReduceMultipleWithRetry", u.h, [&] {
            return pcclAllReduceMultipleWithRetryEx(descs.data(), descs.size(), u.h, &info, maxInFlight);
        });
        return infoTuple(info);
    }

    // entries: sequence of (name, data, count, dtype, device_type, allow_content_inequality).
    // Returns (revision, tx_bytes, rx_bytes).
    py::tuple syncSharedState(uint64_t revision,
                              const std::vector<std::tuple<std::string, uintptr_t, size_t, int, int, bool>> &entries,
                              int strategy) {
        Use u(*this);
        std::vector<pcclTensorInfo_t> infos(entries.size());
        for (size_t i = 0; i < entries.size(); ++i) {
            const auto &[name, data, count, dtype, device, allow] = entries[i];
            infos[i].name = name.c_str();  // entries outlives the call
            infos[i].data = reinterpret_cast<void *>(data);
            infos[i].count = count;
            infos[i].datatype = static_cast<pcclDataType_t>(dtype);
            infos[i].device_type = static_cast<pcclDeviceType_t>(device);
            infos[i].allow_content_inequality = allow;
        }
        pcclSharedState_t state{};
        state.revision = revision;
        state.count = infos.size();
        state.infos = infos.empty() ? nullptr : infos.data();
        pcclSharedStateSyncInfo_t info{};
        callBlocking("pcclSynchronizeSharedState", u.h, [&] {
            return pcclSynchronizeSharedState(u.h, &state, static_cast<pcclSharedStateSyncStrategy_t>(strategy),
                                              &info);
        });
        return py::make_tuple(state.revision, info.tx_bytes, info.rx_bytes);
    }

    // pcclAbortCommunicator: any thread, also while other threads are inside calls on it; every
    // blocked and later call fails with pcclAborted. Idempotent; a closed communicator is a no-op.
    void abort() {
        std::lock_guard lock(mu_);  // keeps close() from destroying the handle meanwhile
        if (!handle_) return;
        const pcclResult_t r = pcclAbortCommunicator(handle_);  // non-blocking
        if (r != pcclSuccess) raiseResult(r, threadLastError(), "pcclAbortCommunicator");
    }

    // The library's reason for the last failure on this communicator ("" if none).
    std::string lastErrorMessage() {
        Use u(*this);
        const char *m = pcclGetLastErrorMessage(u.h);
        return m ? std::string(m) : std::string();
    }
};

// ------------------------------------------------------------------------------------------
class Master : public Guarded<pcclMasterInstance_t> {
public:
    // secret, secretFile, http, httpTokenFile: as in pcclMasterCreateParamsEx_t (None: NULL),
    // without NUL bytes.
    Master(int protocol, const py::bytes &ip, int port, std::optional<std::string> secret,
           std::optional<std::string> secretFile, bool requireSecret, std::optional<std::string> http,
           std::optional<std::string> httpTokenFile)
        : Guarded("the master") {
        const ccoip_socket_address_t address = makeAddress(protocol, ip, port);
        pcclMasterCreateParamsEx_t params = PCCL_MASTER_CREATE_PARAMS_EX_INIT;
        params.secret = secret ? secret->c_str() : nullptr;
        params.secret_file = secretFile ? secretFile->c_str() : nullptr;
        params.require_secret = requireSecret ? 1 : 0;
        params.http_listen = http ? http->c_str() : nullptr;
        params.http_token_file = httpTokenFile ? httpTokenFile->c_str() : nullptr;
        pcclMasterInstance_t *m = nullptr;
        callNoGil("pcclCreateMasterEx", [&] { return pcclCreateMasterEx(address, &params, &m); });
        handle_ = m;
    }

    ~Master() {
        pcclMasterInstance_t *m;
        {
            std::lock_guard lock(mu_);
            m = users_ == 0 ? std::exchange(handle_, nullptr) : nullptr;
        }
        if (!m) return;
        if (interpreterFinalizing()) {
            pcclDestroyMaster(m);
        } else {
            py::gil_scoped_release nogil;
            pcclDestroyMaster(m);
        }
    }

    void run() {
        Use u(*this);
        callNoGil("pcclRunMaster", [&] { return pcclRunMaster(u.h); });
    }

    int port() {
        Use u(*this);
        uint16_t port = 0;
        callNoGil("pcclGetMasterPort", [&] { return pcclGetMasterPort(u.h, &port); });
        return port;
    }

    int httpPort() {
        Use u(*this);
        uint16_t port = 0;
        callNoGil("pcclGetMasterHttpPort", [&] { return pcclGetMasterHttpPort(u.h, &port); });
        return port;
    }

    void interrupt() {
        Use u(*this);
        const pcclResult_t r = pcclInterruptMaster(u.h);
        if (r != pcclSuccess) raiseResult(r, "", "pcclInterruptMaster");
    }

    void awaitTermination() {
        Use u(*this);
        callNoGil("pcclMasterAwaitTermination", [&] { return pcclMasterAwaitTermination(u.h); });
    }

    // Stops the master (if running), waits for calls in other threads (await_termination returns
    // once interrupted) and frees it. Idempotent.
    void close() {
        pcclMasterInstance_t *m = withoutGil([&]() -> pcclMasterInstance_t * {
            std::unique_lock lock(mu_);
            if (!handle_) return nullptr;
            if (users_ > 0) {
                pcclInterruptMaster(handle_);
                cv_.wait(lock, [&] { return users_ == 0 || !handle_; });
                if (!handle_) return nullptr;
            }
            return std::exchange(handle_, nullptr);
        });
        if (!m) return;
        callNoGil("pcclDestroyMaster", [&] { return pcclDestroyMaster(m); });
    }
};

} // namespace

PYBIND11_MODULE(_pccl, m) {
    m.doc() = "Low-level binding of the pccl C API (include/pccl.h). Use the `pccl` package instead.";

    if (pcclInit() != pcclSuccess) throw std::runtime_error("pcclInit failed");
    g_main_thread = py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();

    m.def(
        "_set_error_type",
        [](py::object type) {
            if (!PyType_Check(type.ptr()) || !PyObject_IsSubclass(type.ptr(), PyExc_Exception))
                throw py::type_error("_set_error_type needs an Exception subclass");
            Py_XDECREF(g_error_type);
            g_error_type = type.inc_ref().ptr();
        },
        "Install the exception type raised for failed calls: type(result_code, func_name, message).");
    m.def("version", [] {
        int v = 0;
        pcclGetVersion(&v);
        return v;
    }, "pcclGetVersion: major*10000 + minor*100 + patch.");
    m.def("error_string", [](int result) { return std::string(pcclGetErrorString(static_cast<pcclResult_t>(result))); },
          "pcclGetErrorString: a static description of a result code.");
    m.def("last_error_message", [] { return threadLastError(); },
          "pcclGetLastErrorMessage(NULL): the reason for the last failure on this thread.");
    m.def("contiguous_address", &contiguousAddress, py::arg("obj"), py::arg("writable"),
          "The address of obj's C-contiguous (and, if writable, writeable) buffer, or None.");
    m.def("has_cuda_support", [] {
        pcclBuildInfo_t info{};
        pcclGetBuildInfo(&info);
        return static_cast<bool>(info.has_cuda_support);
    }, "pcclGetBuildInfo().has_cuda_support.");

    // The C enum values, straight from pccl.h: the package's enums are checked against them.
    py::dict c;
    auto put = [&](const char *name, long v) { c[py::str(name)] = v; };
#define PCCL_PUT(x) put(#x, static_cast<long>(x))
    PCCL_PUT(pcclSuccess); PCCL_PUT(pcclNotInitialized); PCCL_PUT(pcclInternalError); PCCL_PUT(pcclInvalidArgument);
    PCCL_PUT(pcclInvalidUsage); PCCL_PUT(pcclTooFewPeers); PCCL_PUT(pcclMasterConnectionFailed);
    PCCL_PUT(pcclRankConnectionFailed); PCCL_PUT(pcclRankConnectionLost); PCCL_PUT(pcclNoSharedStateAvailable);
    PCCL_PUT(pcclPendingAsyncOps); PCCL_PUT(pcclUpdateTopologyFailed); PCCL_PUT(pcclTopologyOptimizationFailed);
    PCCL_PUT(pcclTimeout); PCCL_PUT(pcclKicked); PCCL_PUT(pcclAuthenticationFailed); PCCL_PUT(pcclMismatch);
    PCCL_PUT(pcclMasterConnectionLost);
    PCCL_PUT(pcclAborted);
    PCCL_PUT(pcclUint8); PCCL_PUT(pcclInt8); PCCL_PUT(pcclInt16); PCCL_PUT(pcclUint16); PCCL_PUT(pcclUint32);
    PCCL_PUT(pcclInt32); PCCL_PUT(pcclUint64); PCCL_PUT(pcclInt64); PCCL_PUT(pcclFloat16); PCCL_PUT(pcclBFloat16);
    PCCL_PUT(pcclFloat); PCCL_PUT(pcclDouble);
    PCCL_PUT(pcclDeviceCpu); PCCL_PUT(pcclDeviceCuda);
    PCCL_PUT(pcclSum); PCCL_PUT(pcclAvg); PCCL_PUT(pcclProd); PCCL_PUT(pcclMax); PCCL_PUT(pcclMin);
    PCCL_PUT(PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE); PCCL_PUT(PCCL_ATTRIBUTE_PEER_GROUP_WORLD_SIZE);
    PCCL_PUT(PCCL_ATTRIBUTE_NUM_DISTINCT_PEER_GROUPS); PCCL_PUT(PCCL_ATTRIBUTE_LARGEST_PEER_GROUP_WORLD_SIZE);
    PCCL_PUT(PCCL_ATTRIBUTE_RANK);
    PCCL_PUT(PCCL_SHARED_STATE_SYNC_STRATEGY_ENFORCE_POPULAR); PCCL_PUT(PCCL_SHARED_STATE_SYNC_STRATEGY_RECEIVE_ONLY);
    PCCL_PUT(PCCL_SHARED_STATE_SYNC_STRATEGY_SEND_ONLY);
    PCCL_PUT(pcclDistributionNone); PCCL_PUT(pcclDistributionNormal); PCCL_PUT(pcclDistributionUniform);
    PCCL_PUT(pcclQuantNone); PCCL_PUT(pcclQuantMinMax); PCCL_PUT(pcclQuantZeroPointScale);
    PCCL_PUT(inetIPv4); PCCL_PUT(inetIPv6); PCCL_PUT(CCOIP_PROTOCOL_PORT_MASTER);
#undef PCCL_PUT
    m.attr("C") = c;

    py::class_<Communicator>(m, "Communicator", "pcclComm_t")
        .def(py::init<int, const py::bytes &, int, uint32_t, uint32_t, std::array<uint32_t, 9>, std::optional<std::string>,
                      std::optional<std::string>, std::optional<std::string>, std::optional<std::string>>(),
             py::arg("protocol"), py::arg("ip"), py::arg("port"), py::arg("peer_group"), py::arg("p2p_connection_pool_size"),
             py::arg("ex") = std::array<uint32_t, 9>{}, py::arg("secret") = py::none(),
             py::arg("advertised_address") = py::none(), py::arg("port_range") = py::none(),
             py::arg("master_addresses") = py::none())
        .def("close", &Communicator::close)
        .def("abort", &Communicator::abort)
        .def_property_readonly("closed", &Communicator::closed)
        .def_property_readonly("active_calls", &Communicator::users)
        .def("connect", &Communicator::connect)
        .def("update_topology", &Communicator::updateTopology)
        .def("are_peers_pending", &Communicator::arePeersPending)
        .def("optimize_topology", &Communicator::optimizeTopology)
        .def("get_attribute", &Communicator::getAttribute)
        .def("members", &Communicator::members)
        .def("stats", &Communicator::stats)
        .def("all_reduce", &Communicator::allReduce)
        .def("all_reduce_async", &Communicator::allReduceAsync, py::arg("send"), py::arg("recv"), py::arg("count"),
             py::arg("dtype"), py::arg("op"), py::arg("tag"), py::arg("hint"), py::arg("qdtype"), py::arg("qalgo"),
             py::arg("world") = 0)
        .def("await_async", &Communicator::awaitAsync)
        .def("start_collective", &Communicator::startCollective)
        .def("barrier", &Communicator::barrier)
        .def("all_reduce_multiple_with_retry", &Communicator::allReduceMultipleWithRetry)
        .def("sync_shared_state", &Communicator::syncSharedState)
        .def("last_error_message", &Communicator::lastErrorMessage);

    py::class_<Master>(m, "Master", "pcclMasterInstance_t")
        .def(py::init<int, const py::bytes &, int, std::optional<std::string>, std::optional<std::string>, bool,
                      std::optional<std::string>, std::optional<std::string>>(),
             py::arg("protocol"), py::arg("ip"), py::arg("port"), py::arg("secret") = py::none(),
             py::arg("secret_file") = py::none(), py::arg("require_secret") = false, py::arg("http") = py::none(),
             py::arg("http_token_file") = py::none())
        .def("run", &Master::run)
        .def("port", &Master::port)
        .def("http_port", &Master::httpPort)
        .def("interrupt", &Master::interrupt)
        .def("await_termination", &Master::awaitTermination)
        .def("close", &Master::close)
        .def_property_readonly("closed", &Master::closed);
}
