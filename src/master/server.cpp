#include "master/server.h"

#include <asio.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <unistd.h>
#include <unordered_map>

#include "master/membership.h"
#include "security/secret.h"
#include "transport/framed_connection.h"
#include "util/log.h"
#include "util/log_limiter.h"

namespace pccl::master {

struct Server::Impl {
    ServerOptions options;
    asio::io_context io;
    asio::ip::tcp::acceptor acceptor{io};
    asio::posix::stream_descriptor wakeRead{io};
    asio::signal_set signals{io};
    int wakeFds[2] = {-1, -1};
    char wakeByte = 0;
    bool shuttingDown = false;  // loop thread only
    Membership membership;
    asio::steady_timer ticker{io};
    const std::chrono::steady_clock::time_point epoch = std::chrono::steady_clock::now();

    uint64_t nowMs() const {
        return static_cast<uint64_t>(
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - epoch).count());
    }
    void tick() {
        // Fine enough for the shortest heartbeat deadline a peer may ask for (100 ms). Membership
        // knows the period: a tick much later than it means this process did not run.
        ticker.expires_after(std::chrono::milliseconds(options.membership.tickPeriodMs));
        ticker.async_wait([this](const asio::error_code &ec) {
            if (ec) return;
            membership.setTime(nowMs());
            checkLease();
            apply(membership.onTick());
            publishStatus();
            tick();
        });
    }
    uint64_t lastPublishMs = 0;
    bool published = false;
    // The view for the status page, built on the loop; rendering happens on the HTTP threads.
    void publishStatus() {
        if (!options.status) return;
        const uint64_t now = nowMs();
        if (published && now < lastPublishMs + options.statusPeriodMs) return;
        published = true;
        lastPublishMs = now;
        auto view = std::make_shared<RunView>(membership.view());
        view->wallNowMs = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                    std::chrono::system_clock::now().time_since_epoch())
                                                    .count());
        options.status->publish(std::move(view));
    }
    struct Conn {
        std::shared_ptr<transport::FramedConnection> conn;
        asio::ip::address from;
        uint64_t sinceMs = 0;  // accepted at
        bool ready = false;    // authenticated (at once in an open run): Membership knows it
    };
    std::unordered_map<ClientId, Conn> conns;
    std::map<asio::ip::address, size_t> perAddress;  // open connections by source address
    // An open run's first frames above 4 KiB (Rejoins listing a large ring) share this.
    std::shared_ptr<transport::FirstFrameBudget> firstFrames =
        std::make_shared<transport::FirstFrameBudget>(transport::kFirstFrameBudgetBytes);
    ClientId nextId = 1;
    security::Settings security;
    // Accepting is paused while the process is out of descriptors (or memory for sockets).
    asio::steady_timer acceptPause{io};
    asio::steady_timer linger{io};  // shutting down: the peers' MasterShutdown leaves meanwhile
    // Lines strangers can cause, rate-limited: failed authentication, refusals over a cap,
    // connections closed before their Hello, running out of descriptors.
    log::Limiter authLog, capLog, unregisteredLog, starvedLog{std::chrono::seconds(10)};

    static constexpr auto kAcceptPause = std::chrono::milliseconds(100);
    static constexpr size_t kShedBatch = 32;
    static constexpr uint64_t kShedMinAgeMs = 500;  // younger connections may be sending their Hello

    // Connections that failed to authenticate, logged at most once a second (an attacker
    // must not be able to flood the log).
    void logRefused(const std::string &reason) {
        if (auto more = authLog.admit()) PCCL_LOG(Warn, "master: refused a connection: " << reason << *more);
    }

    void accept() {
        acceptor.async_accept([this](const asio::error_code &ec, asio::ip::tcp::socket socket) {
            if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
            if (ec && outOfResources(ec)) return pauseAccepting(ec);
            if (!ec) onAccepted(std::move(socket));
            accept();
        });
    }

    static bool outOfResources(const asio::error_code &ec) {
        if (ec.category() != asio::system_category()) return false;
        const int e = ec.value();
        return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
    }

    // Out of descriptors: instead of retrying at once (a busy loop while the backlog is not
    // empty), closes the oldest connections that sent no Hello (an honest peer may wait behind
    // them) and accepts again after a pause. Logged at most once in 10 s.
    void pauseAccepting(const asio::error_code &ec) {
        if (auto more = starvedLog.admit())
            PCCL_LOG(Warn, "master: cannot accept connections (" << ec.message() << ", " << conns.size()
                                                                 << " open); retrying every " << kAcceptPause.count()
                                                                 << " ms and closing connections that sent no Hello"
                                                                 << *more);
        shed("closed to make room: the master is out of file descriptors");
        acceptPause.expires_after(kAcceptPause);
        acceptPause.async_wait([this](const asio::error_code &e) {
            if (!e && acceptor.is_open()) accept();
        });
    }

    // Closes up to kShedBatch of the oldest connections, at least kShedMinAgeMs old, that have
    // not authenticated, then (if fewer) that have not sent a Hello.
    void shed(const std::string &reason) {
        const uint64_t now = nowMs();
        std::vector<ClientId> oldest;
        for (auto &[id, c] : conns)
            if (!c.ready && now >= c.sinceMs + kShedMinAgeMs) oldest.push_back(id);
        std::sort(oldest.begin(), oldest.end());
        if (oldest.size() > kShedBatch) oldest.resize(kShedBatch);
        for (ClientId id : oldest) {
            if (auto more = unregisteredLog.admit())
                PCCL_LOG(Info, "master: closing connection " << id << " (not authenticated): " << reason << *more);
            forget(id)->close(reason);
        }
        membership.setTime(now);
        apply(membership.shedUnregistered(kShedBatch - oldest.size(), kShedMinAgeMs, reason));
    }

    // Whether a connection from `from` is over a cap; logs the refusal (rate-limited).
    bool overCap(const asio::ip::address &from) {
        auto it = perAddress.find(from);
        const size_t fromThere = it == perAddress.end() ? 0 : it->second;
        const bool total = conns.size() >= options.maxConnections;
        if (!total && fromThere < options.maxConnectionsPerAddress) return false;
        if (auto more = capLog.admit())
            PCCL_LOG(Warn, "master: refused a connection from "
                               << from.to_string() << ": "
                               << (total ? std::to_string(conns.size()) + " connections open (limit " +
                                               std::to_string(options.maxConnections) + ")"
                                         : std::to_string(fromThere) + " connections open from that address (limit " +
                                               std::to_string(options.maxConnectionsPerAddress) + ")")
                               << *more);
        return true;
    }

    void onAccepted(asio::ip::tcp::socket socket) {
        asio::error_code ec;
        auto from = socket.remote_endpoint(ec).address();
        if (ec) return;  // gone already
        if (from.is_v6() && from.to_v6().is_v4_mapped()) from = asio::ip::make_address_v4(asio::ip::v4_mapped, from.to_v6());
        if (overCap(from)) {
            socket.close(ec);
            return;
        }
        const ClientId id = nextId++;
        auto conn = std::make_shared<transport::FramedConnection>(std::move(socket));
        conns[id] = Conn{conn, from, nowMs()};
        ++perAddress[from];
        PCCL_LOG(Debug, "master: connection " << id << " from " << conn->remote().str());
        // Membership hears of a connection only once it has authenticated (at once in an open run).
        std::weak_ptr<transport::FramedConnection> weak = conn;
        conn->accept(
            security.runKey,
            [this, id, weak] {
                auto c = weak.lock();
                if (!c) return;
                if (auto it = conns.find(id); it != conns.end()) it->second.ready = true;
                membership.setTime(nowMs());
                checkLease();
                apply(membership.onConnect(id, c->remote()));
            },
            [this, id](const std::string &reason) {
                forget(id);
                logRefused(reason);
            },
            [this, id](protocol::ControlMessage &&m) {
                membership.setTime(nowMs());
                checkLease();
                apply(membership.onMessage(id, m));
            },
            [this, id](const std::string &reason) {
                forget(id);
                membership.setTime(nowMs());
                apply(membership.onDisconnect(id, reason));
            },
            firstFrames);
    }

    // Standby masters: a leader serves only until its lease may have expired. Checked before
    // every event, so that a leader resumed after a stop steps down before it reads anything.
    std::chrono::steady_clock::time_point leaseUntil{};
    void checkLease() {
        if (!options.membership.standby || !membership.leading() || std::chrono::steady_clock::now() < leaseUntil)
            return;
        PCCL_LOG(Warn, "master: its leadership lease may have expired (no renewal in time): stepping down");
        apply(membership.setLeader(false, 0, ""));
    }
    void onLeadership(const Leadership &l) {
        membership.setTime(nowMs());
        if (l.leader) {
            leaseUntil = l.validUntil;
            checkLease();  // a report that arrives too late does not make a leader
            if (std::chrono::steady_clock::now() < leaseUntil) apply(membership.setLeader(true, l.epoch, ""));
        } else {
            apply(membership.setLeader(false, 0, l.leaderAddress));
        }
    }

    // Drops the server's record of a connection; returns it (null if unknown).
    std::shared_ptr<transport::FramedConnection> forget(ClientId id) {
        auto it = conns.find(id);
        if (it == conns.end()) return nullptr;
        auto conn = std::move(it->second.conn);
        auto count = perAddress.find(it->second.from);
        if (count != perAddress.end() && --count->second == 0) perAddress.erase(count);
        conns.erase(it);
        return conn;
    }

    void logClose(const Action &a) {
        if (!a.unregistered) {
            PCCL_LOG(Info, "master: closing connection " << a.to << ": " << a.reason);
        } else if (auto more = unregisteredLog.admit()) {
            PCCL_LOG(Info, "master: closing connection " << a.to << " (no Hello accepted): " << a.reason << *more);
        }
    }

    void apply(Actions actions) {
        for (auto &a : actions) {
            auto it = conns.find(a.to);
            if (it == conns.end()) continue;
            auto conn = it->second.conn;
            if (a.close) {
                forget(a.to);
                logClose(a);
                if (a.message) conn->sendAndClose(std::move(*a.message), a.reason);
                else conn->close(a.reason);
            } else if (a.message) {
                conn->send(std::move(*a.message));
            }
        }
        // Each membership change is reported once: as a status line on stdout when printStatus
        // is set (the daemon, PCCL_MASTER_PRINT_STATUS), else as an Info log line.
        for (auto &line : membership.takeEvents()) {
            if (options.printStatus) {
                std::printf("pccl-master: %s | accepted %zu, pending %zu\n", line.c_str(), membership.acceptedCount(),
                            membership.pendingCount());
                std::fflush(stdout);
            } else {
                PCCL_LOG(Info, "master: " << line);
            }
        }
    }

    void watchWake() {
        wakeRead.async_read_some(asio::buffer(&wakeByte, 1), [this](const asio::error_code &ec, size_t) {
            if (ec == asio::error::operation_aborted) return;
            shutdown();
        });
    }

    // Runs on the loop thread, once per stop request (signal, interrupt(), stop()); the first
    // logs the one "shutting down" line, whichever way the master was asked to stop.
    void shutdown() {
        if (!shuttingDown) {
            PCCL_LOG(Info, "master: shutting down");
            shuttingDown = true;
            asio::error_code ec;
            acceptor.close(ec);
            signals.cancel(ec);
            ticker.cancel();
            acceptPause.cancel();
            if (auto told = membership.onShutdown("the master was stopped"); options.endRunOnStop && !told.empty()) {
                // Tell the peers the run has ended, and give the messages a moment to leave.
                apply(std::move(told));
                linger.expires_after(std::chrono::milliseconds(300));
                linger.async_wait([this](const asio::error_code &) { finishShutdown(); });
                return;
            }
        }
        finishShutdown();
    }

    void finishShutdown() {
        asio::error_code ec;
        acceptor.close(ec);
        wakeRead.cancel(ec);
        signals.cancel(ec);
        ticker.cancel();
        acceptPause.cancel();
        linger.cancel();
        auto all = std::move(conns);
        conns.clear();
        perAddress.clear();
        for (auto &[id, c] : all) c.conn->closeNow("master shutting down");
        io.stop();
    }
};

ServerOptions ServerOptions::fromEnvironment() {
    ServerOptions o;
    auto readRange = [](const char *name, uint64_t lo, uint64_t hi, uint64_t *out) {
        const char *env = std::getenv(name);
        if (!env || !*env) return;
        char *end = nullptr;
        const unsigned long long v = std::strtoull(env, &end, 10);
        if (*end == 0 && v >= lo && v <= hi) *out = v;
        else PCCL_LOG(Warn, "ignoring " << name << "=" << env);
    };
    auto read = [&](const char *name, uint64_t lo, uint64_t *out) { readRange(name, lo, 24ull * 3600000, out); };
    auto readCount = [&](const char *name, uint64_t *out) { readRange(name, 1, kMaxConnectionsLimit, out); };
    read("PCCL_HEARTBEAT_TIMEOUT_MS", 100, &o.membership.heartbeatTimeoutMs);
    read("PCCL_VOTE_TIMEOUT_MS", 0, &o.membership.voteTimeoutMs);
    read("PCCL_HANDSHAKE_TIMEOUT_MS", 100, &o.membership.handshakeTimeoutMs);
    read("PCCL_MAX_HEARTBEAT_TIMEOUT_MS", 100, &o.membership.maxHeartbeatTimeoutMs);
    uint64_t total = o.maxConnections, perAddress = o.maxConnectionsPerAddress;
    readCount("PCCL_MAX_CONNECTIONS", &total);
    readCount("PCCL_MAX_CONNECTIONS_PER_ADDRESS", &perAddress);
    o.maxConnections = total;
    o.maxConnectionsPerAddress = perAddress;
    read("PCCL_MASTER_EPOCH", 1, &o.membership.masterEpoch);
    if (const char *env = std::getenv("PCCL_MASTER_END_RUN_ON_EXIT"); env && *env) {
        if (std::strcmp(env, "1") == 0 || std::strcmp(env, "0") == 0) o.endRunOnStop = env[0] == '1';
        else PCCL_LOG(Warn, "ignoring PCCL_MASTER_END_RUN_ON_EXIT=" << env << " (0 or 1)");
    }
    if (const char *env = std::getenv("PCCL_MASTER_PRINT_STATUS"); env && *env) {
        if (std::strcmp(env, "1") == 0) o.printStatus = true;
        else if (std::strcmp(env, "0") != 0) PCCL_LOG(Warn, "ignoring PCCL_MASTER_PRINT_STATUS=" << env << " (0 or 1)");
    }
    return o;
}

Server::Server(ServerOptions options) : impl_(std::make_unique<Impl>()) {
    impl_->options = std::move(options);
    impl_->membership = Membership(impl_->options.membership);
    if (::pipe(impl_->wakeFds) == 0) impl_->wakeRead.assign(impl_->wakeFds[0]);
}

Server::~Server() {
    asio::error_code ec;
    impl_->wakeRead.close(ec);
    if (impl_->wakeFds[1] >= 0) ::close(impl_->wakeFds[1]);
}

Status Server::bind() {
    auto &o = impl_->options;
    PCCL_RETURN_IF_ERROR(security::loadSettings(o.secret, o.secretFile.empty() ? nullptr : o.secretFile.c_str(), 0,
                                                &impl_->security));
    if (!impl_->security.enabled() && o.requireSecret)
        return {pcclInvalidArgument, "no run secret (--require-secret): set --secret-file, PCCL_SECRET or PCCL_SECRET_FILE"};
    if (impl_->security.enabled()) {
        security::Key masterKey{};
        security::randomBytes(masterKey.data(), masterKey.size());
        o.membership.masterKey = masterKey;
        PCCL_LOG(Info, "master: run secret from " << impl_->security.source << "; peers must authenticate");
    } else {
        security::warnOpenRun("the master");
    }
    impl_->membership = Membership(o.membership);
    auto ep = transport::toEndpoint(impl_->options.listen);
    asio::error_code ec;
    auto &acc = impl_->acceptor;
    acc.open(ep.protocol(), ec);
    if (!ec) acc.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec && ep.address().is_v6()) acc.set_option(asio::ip::v6_only(false), ec);
    if (!ec) acc.bind(ep, ec);
    if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
        // The address the caller chose cannot be used on this host: an argument error, not ours.
        const bool sys = ec.category() == asio::system_category();
        const bool inUse = sys && ec.value() == EADDRINUSE;
        const bool callersAddress = inUse || (sys && (ec.value() == EACCES || ec.value() == EADDRNOTAVAIL));
        std::string why = "master cannot listen on " + impl_->options.listen.str() + ": " + ec.message();
        if (inUse) why += " (another process holds this port; choose another, or port 0 for any)";
        asio::error_code ignored;
        acc.close(ignored); // a later bind() starts afresh
        return {callersAddress ? pcclInvalidArgument : pcclInternalError, why};
    }
    impl_->accept();
    impl_->watchWake();
    impl_->tick();
    impl_->publishStatus();  // the status server has a view before run(): never a 503 after bind()
    if (impl_->options.handleSignals) {
        impl_->signals.add(SIGINT);
        impl_->signals.add(SIGTERM);
        impl_->signals.async_wait([impl = impl_.get()](const asio::error_code &ec, int sig) {
            if (ec) return;
            PCCL_LOG(Debug, "master: signal " << sig);
            impl->shutdown();
        });
    }
    return {};
}

uint16_t Server::port() const {
    asio::error_code ec;
    return impl_->acceptor.local_endpoint(ec).port();
}

bool Server::hasSecret() const { return impl_->security.enabled(); }

void Server::run() { impl_->io.run(); }

void Server::stop() {
    asio::post(impl_->io, [impl = impl_.get()] { impl->shutdown(); });
}

void Server::setLeadership(Leadership leadership) {
    asio::post(impl_->io, [impl = impl_.get(), l = std::move(leadership)] {
        if (!impl->shuttingDown) impl->onLeadership(l);
    });
}

void Server::interrupt() {
    if (impl_->wakeFds[1] >= 0) {
        const char b = 1;
        [[maybe_unused]] auto n = ::write(impl_->wakeFds[1], &b, 1);
    }
}

} // namespace pccl::master
