#include "transport/control_client.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "transport/framed_connection.h"
#include "transport/secure_channel.h"

namespace pccl::transport {

struct ControlClient::Impl {
    asio::io_context io;
    asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
    std::shared_ptr<FramedConnection> conn;  // mu
    uint64_t generation = 0;                 // mu; of conn: a replaced connection's close is not delivered
    protocol::NetAddr local;
    std::thread thread;
    std::mutex mu;
    std::condition_variable cv;
    bool closed = false;
    unsigned userTimeoutMs = 0;
    MessageHandler onMessage;                       // control thread (set by start)
    std::function<void(const std::string &)> onClose;  // control thread (set by start)

    std::shared_ptr<FramedConnection> current() {
        std::lock_guard lock(mu);
        return conn;
    }
    void applyUserTimeout(asio::ip::tcp::socket &socket) const {
        if (userTimeoutMs == 0) return;
        ::setsockopt(socket.native_handle(), IPPROTO_TCP, TCP_USER_TIMEOUT, &userTimeoutMs, sizeof userTimeoutMs);
    }
    // Starts `c` as the current connection (control thread).
    void install(std::shared_ptr<FramedConnection> c) {
        uint64_t gen;
        {
            std::lock_guard lock(mu);
            conn = c;
            gen = ++generation;
            closed = false;
        }
        c->start([this](protocol::ControlMessage &&m) { onMessage(std::move(m)); },
                 [this, gen](const std::string &reason) {
                     {
                         std::lock_guard lock(mu);
                         if (gen != generation) return;
                         closed = true;
                     }
                     cv.notify_all();
                     onClose(reason);
                 });
    }
};

ControlClient::ControlClient() : impl_(std::make_unique<Impl>()) {}
ControlClient::~ControlClient() { stop(); }

namespace {
// The handshake with the master, run on the caller's thread before the control thread starts.
Status authenticate(asio::io_context &io, asio::ip::tcp::socket &socket, const protocol::NetAddr &master,
                    const security::Settings &security, std::chrono::steady_clock::time_point deadline,
                    ChannelPtr *channel) {
    auto hs = std::make_shared<security::ClientHandshake>(*security.runKey, security::ConnKind::Control,
                                                          security::preferredSuite(), security.mode, Uuid{}, Uuid{});
    std::optional<Status> result;
    clientHandshake(socket, io.get_executor(), nullptr, hs, "master " + master.str(), pcclMasterConnectionFailed,
                    [&](Status st, ChannelPtr c) {
                        result = std::move(st);
                        *channel = std::move(c);
                    });
    const auto until = std::min(deadline, std::chrono::steady_clock::now() + kHandshakeDeadline);
    while (!result && std::chrono::steady_clock::now() < until) io.run_one_until(until);
    if (!result) {
        asio::error_code ignored;
        socket.close(ignored);
        io.run_for(std::chrono::milliseconds(100));  // lets the handshake's handlers finish
        result = Status{pcclMasterConnectionFailed, "authenticating to master " + master.str() + ": no answer in time"};
    }
    io.restart();
    return *result;
}
} // namespace

Status ControlClient::connect(const protocol::NetAddr &master, std::chrono::milliseconds timeout,
                              const security::Settings &security) {
    asio::ip::tcp::socket socket(impl_->io);
    asio::error_code result = asio::error::would_block;
    socket.async_connect(toEndpoint(master), [&](const asio::error_code &ec) { result = ec; });
    impl_->io.restart();
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (result == asio::error::would_block && std::chrono::steady_clock::now() < deadline)
        impl_->io.run_one_until(deadline);
    if (result == asio::error::would_block) {
        asio::error_code ignored;
        socket.close(ignored);
        impl_->io.restart();
        impl_->io.run_for(std::chrono::milliseconds(100));
        return {pcclMasterConnectionFailed, "connecting to master " + master.str() + " timed out"};
    }
    if (result) return {pcclMasterConnectionFailed, "cannot connect to master " + master.str() + ": " + result.message()};
    asio::error_code ec;
    impl_->local = toNetAddr(socket.local_endpoint(ec));
    impl_->applyUserTimeout(socket);
    impl_->io.restart();
    ChannelPtr channel;
    if (security.enabled()) {
        auto st = authenticate(impl_->io, socket, master, security, deadline, &channel);
        if (!st.ok()) return st;
    } else {
        security::warnOpenRun("this peer");
    }
    std::lock_guard lock(impl_->mu);
    impl_->conn = std::make_shared<FramedConnection>(std::move(socket), std::move(channel));
    return {};
}

void ControlClient::setUserTimeout(std::chrono::milliseconds timeout) {
    impl_->userTimeoutMs = static_cast<unsigned>(std::min<int64_t>(timeout.count(), 1 << 30));
}

void ControlClient::start(MessageHandler onMessage, CloseHandler onClose) {
    impl_->onMessage = std::move(onMessage);
    impl_->onClose = std::move(onClose);
    Impl *impl = impl_.get();
    asio::post(impl_->io, [impl, conn = impl_->current()] { impl->install(conn); });
    impl_->thread = std::thread([this] { impl_->io.run(); });
}

void ControlClient::reconnect(const protocol::NetAddr &master, std::chrono::milliseconds timeout,
                              const security::Settings &security, std::function<void(Status)> done) {
    struct Attempt {
        asio::ip::tcp::socket socket;
        asio::steady_timer timer;
        bool finished = false;
        explicit Attempt(asio::io_context &io) : socket(io), timer(io) {}
    };
    Impl *impl = impl_.get();
    auto a = std::make_shared<Attempt>(impl->io);
    auto finish = std::make_shared<std::function<void(Status, ChannelPtr)>>();
    *finish = [impl, a, done = std::move(done)](Status st, ChannelPtr channel) {
        if (a->finished) return;
        a->finished = true;
        a->timer.cancel();
        if (!st.ok()) {
            asio::error_code ignored;
            a->socket.close(ignored);
            done(std::move(st));
            return;
        }
        asio::error_code ec;
        const auto local = toNetAddr(a->socket.local_endpoint(ec));
        {
            std::lock_guard lock(impl->mu);
            impl->local = local;
        }
        impl->install(std::make_shared<FramedConnection>(std::move(a->socket), std::move(channel)));
        done({});
    };
    const std::string name = "master " + master.str();
    a->timer.expires_after(timeout);
    a->timer.async_wait([a, finish, name](const asio::error_code &ec) {
        if (!ec) (*finish)(Status{pcclMasterConnectionFailed, "connecting to " + name + " timed out"}, nullptr);
    });
    a->socket.async_connect(toEndpoint(master), [impl, a, finish, name, security](const asio::error_code &ec) {
        if (a->finished) return;
        if (ec) return (*finish)(Status{pcclMasterConnectionFailed, "cannot connect to " + name + ": " + ec.message()}, nullptr);
        impl->applyUserTimeout(a->socket);
        if (!security.enabled()) return (*finish)(Status{}, nullptr);
        auto hs = std::make_shared<security::ClientHandshake>(*security.runKey, security::ConnKind::Control,
                                                              security::preferredSuite(), security.mode, Uuid{}, Uuid{});
        clientHandshake(a->socket, impl->io.get_executor(), a, hs, name, pcclMasterConnectionFailed,
                        [finish](Status st, ChannelPtr c) { (*finish)(std::move(st), std::move(c)); });
    });
}

void ControlClient::send(protocol::ControlMessage m) {
    if (auto c = impl_->current()) c->send(std::move(m));
}

void ControlClient::post(std::function<void()> fn) { asio::post(impl_->io, std::move(fn)); }

void ControlClient::disconnect(const std::string &reason) {
    if (auto c = impl_->current()) c->close(reason);
}

void ControlClient::every(std::chrono::milliseconds period, std::function<void()> fn) {
    struct Periodic : std::enable_shared_from_this<Periodic> {
        asio::steady_timer timer;
        std::chrono::milliseconds period;
        std::function<void()> fn;
        Periodic(asio::io_context &io, std::chrono::milliseconds p, std::function<void()> f)
            : timer(io), period(p), fn(std::move(f)) {}
        void arm() {
            timer.expires_after(period);
            timer.async_wait([self = shared_from_this()](const asio::error_code &ec) {
                if (ec) return;
                self->fn();
                self->arm();
            });
        }
    };
    auto p = std::make_shared<Periodic>(impl_->io, period, std::move(fn));
    asio::post(impl_->io, [p] { p->arm(); });
}

void ControlClient::after(std::chrono::milliseconds delay, std::function<void()> fn) {
    auto timer = std::make_shared<asio::steady_timer>(impl_->io, delay);
    timer->async_wait([timer, fn = std::move(fn)](const asio::error_code &ec) {
        if (!ec) fn();
    });
}

void ControlClient::stop(std::optional<protocol::ControlMessage> last) {
    if (!impl_) return;
    auto conn = impl_->current();
    if (conn && impl_->thread.joinable()) {
        if (last) {
            conn->sendAndClose(std::move(*last), "communicator closed");
            std::unique_lock lock(impl_->mu);
            impl_->cv.wait_for(lock, std::chrono::seconds(1), [&] { return impl_->closed; });
        }
        conn->close("communicator closed");
    }
    impl_->work.reset();
    if (impl_->thread.joinable()) {
        asio::post(impl_->io, [this] { impl_->io.stop(); });
        impl_->thread.join();
    }
    std::lock_guard lock(impl_->mu);
    impl_->conn.reset();
}

protocol::NetAddr ControlClient::localAddr() const {
    std::lock_guard lock(impl_->mu);
    return impl_->local;
}

} // namespace pccl::transport
