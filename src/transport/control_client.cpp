#include "transport/control_client.h"

#include <condition_variable>
#include <mutex>
#include <thread>

#include "transport/framed_connection.h"
#include "transport/secure_channel.h"

namespace pccl::transport {

struct ControlClient::Impl {
    asio::io_context io;
    asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
    std::shared_ptr<FramedConnection> conn;
    protocol::NetAddr local;
    std::thread thread;
    std::mutex mu;
    std::condition_variable cv;
    bool closed = false;
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
    impl_->io.restart();
    ChannelPtr channel;
    if (security.enabled()) {
        auto st = authenticate(impl_->io, socket, master, security, deadline, &channel);
        if (!st.ok()) return st;
    } else {
        security::warnOpenRun("this peer");
    }
    impl_->conn = std::make_shared<FramedConnection>(std::move(socket), std::move(channel));
    return {};
}

void ControlClient::start(MessageHandler onMessage, CloseHandler onClose) {
    auto conn = impl_->conn;
    Impl *impl = impl_.get();
    auto closeHandler = [impl, c = std::move(onClose)](const std::string &reason) {
        {
            std::lock_guard lock(impl->mu);
            impl->closed = true;
        }
        impl->cv.notify_all();
        c(reason);
    };
    asio::post(impl_->io, [conn, m = std::move(onMessage), c = std::move(closeHandler)]() mutable {
        conn->start(std::move(m), std::move(c));
    });
    impl_->thread = std::thread([this] { impl_->io.run(); });
}

void ControlClient::send(protocol::ControlMessage m) {
    if (impl_->conn) impl_->conn->send(std::move(m));
}

void ControlClient::post(std::function<void()> fn) { asio::post(impl_->io, std::move(fn)); }

void ControlClient::disconnect(const std::string &reason) {
    if (impl_->conn) impl_->conn->close(reason);
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
    if (impl_->conn && impl_->thread.joinable()) {
        if (last) {
            impl_->conn->sendAndClose(std::move(*last), "communicator closed");
            std::unique_lock lock(impl_->mu);
            impl_->cv.wait_for(lock, std::chrono::seconds(1), [&] { return impl_->closed; });
        }
        impl_->conn->close("communicator closed");
    }
    impl_->work.reset();
    if (impl_->thread.joinable()) {
        asio::post(impl_->io, [this] { impl_->io.stop(); });
        impl_->thread.join();
    }
    impl_->conn.reset();
}

protocol::NetAddr ControlClient::localAddr() const { return impl_->local; }

} // namespace pccl::transport
