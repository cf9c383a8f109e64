#include "transport/secure_channel.h"

#include <cstring>

#include "util/bytes.h"

namespace pccl::transport {

using namespace pccl::security;

ChannelPtr Channel::make(const SessionKeys &keys, bool client) {
    auto c = std::make_shared<Channel>();
    c->mode = keys.mode;
    const Key &out = client ? keys.clientToServer : keys.serverToClient;
    const Key &in = client ? keys.serverToClient : keys.clientToServer;
    c->send = std::make_unique<RecordCipher>(keys.suite, keys.mode, out, true);
    c->recv = std::make_unique<RecordCipher>(keys.suite, keys.mode, in, false);
    return c;
}

void Channel::sealInPlace(Bytes aad, uint8_t *data, size_t n) { send->seal(aad, data, data, n, data + n); }

bool Channel::openInPlace(Bytes aad, uint8_t *data, size_t n) { return recv->open(aad, data, data, n, data + n); }

namespace {

// One handshake in progress: its buffers, its deadline, and `done`, called once.
template <class Done>
struct Run {
    asio::ip::tcp::socket &socket;
    asio::steady_timer timer;
    std::shared_ptr<void> keep;
    Done done;
    bool finished = false;
    std::array<uint8_t, kServerHelloBytes> in{};  // the largest message either side reads
    std::array<uint8_t, kClientFinishBytes> finish{};
    Run(asio::ip::tcp::socket &s, asio::any_io_executor ex, std::shared_ptr<void> k, Done d)
        : socket(s), timer(ex), keep(std::move(k)), done(std::move(d)) {}
    // Closes the socket when the deadline passes: the pending read or write then fails.
    template <class Self>
    void arm(std::shared_ptr<Self> self) {
        timer.expires_after(kHandshakeDeadline);
        timer.async_wait([self](const asio::error_code &ec) {
            if (ec || self->finished) return;
            asio::error_code ignored;
            self->socket.close(ignored);
        });
    }
    template <class... A>
    void end(A &&...a) {
        if (finished) return;
        finished = true;
        timer.cancel();
        done(std::forward<A>(a)...);
    }
};

} // namespace

void clientHandshake(asio::ip::tcp::socket &socket, asio::any_io_executor ex, std::shared_ptr<void> keep,
                     std::shared_ptr<ClientHandshake> hs, std::string what, pcclResult_t transportFailure,
                     ClientDone done) {
    using R = Run<ClientDone>;
    auto run = std::make_shared<R>(socket, ex, std::move(keep), std::move(done));
    run->arm(run);
    auto broken = [run, what, transportFailure](const char *step, const asio::error_code &ec) {
        const bool late = ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor;
        run->end(Status{transportFailure, "authenticating to " + what + ": " + step + ": " +
                                              (late ? "no answer within the handshake deadline" : ec.message())},
                 nullptr);
    };
    asio::async_write(socket, asio::buffer(hs->hello()), asio::bind_executor(ex, [=](const asio::error_code &ec, size_t) {
        if (ec) return broken("sending the hello", ec);
        asio::async_read(run->socket, asio::buffer(run->in), asio::bind_executor(ex, [=](const asio::error_code &ec2, size_t) {
            if (ec2) return broken(ec2 == asio::error::eof ? "the connection was closed before an answer" : "reading the answer", ec2);
            std::string error;
            auto finish = hs->onServerHello(run->in.data(), run->in.size(), &error);
            if (!finish) return run->end(Status{pcclAuthenticationFailed, "authenticating to " + what + ": " + error}, nullptr);
            run->finish = *finish;
            asio::async_write(run->socket, asio::buffer(run->finish), asio::bind_executor(ex, [=](const asio::error_code &ec3, size_t) {
                if (ec3) return broken("sending the proof", ec3);
                run->end(Status{}, Channel::make(hs->keys(), true));
            }));
        }));
    }));
}

void serverHandshake(asio::ip::tcp::socket &socket, asio::any_io_executor ex, std::shared_ptr<void> keep,
                     const uint8_t first[4], KeyFor keyFor, ServerDone done) {
    struct State : Run<ServerDone> {
        using Run<ServerDone>::Run;
        std::array<uint8_t, kClientHelloBytes> hello{};
        ClientHello decoded;
        std::shared_ptr<ServerHandshake> hs;
        std::array<uint8_t, kServerHelloBytes> refusal{};
    };
    auto run = std::make_shared<State>(socket, ex, std::move(keep), std::move(done));
    run->arm(run);
    std::memcpy(run->hello.data(), first, 4);
    auto fail = [run](const std::string &why) {
        asio::error_code ignored;
        run->socket.close(ignored);
        run->end(Status{pcclAuthenticationFailed, why}, nullptr, run->decoded);
    };
    asio::async_read(socket, asio::buffer(run->hello.data() + 4, kClientHelloBytes - 4),
                     asio::bind_executor(ex, [=](const asio::error_code &ec, size_t) {
        if (ec) return fail("handshake: " + ec.message());
        std::string why;
        auto h = decodeClientHello(run->hello.data(), run->hello.size(), &why);
        if (!h) return fail("handshake: " + why);
        run->decoded = *h;
        auto key = keyFor(*h, &why);
        if (!key) {
            // Tell the client why, unauthenticated, then close: it must not wait for the deadline.
            run->refusal = ServerHandshake::refusal(why.empty() ? ServerStatus::NoSecret : ServerStatus::Refused);
            return asio::async_write(run->socket, asio::buffer(run->refusal), asio::bind_executor(ex, [=](const asio::error_code &, size_t) {
                fail(why.empty() ? "a client with a run secret connected; this side has none" : why);
            }));
        }
        run->hs = std::make_shared<ServerHandshake>(*key, *h);
        asio::async_write(run->socket, asio::buffer(run->hs->reply()), asio::bind_executor(ex, [=](const asio::error_code &ec2, size_t) {
            if (ec2) return fail("handshake: " + ec2.message());
            asio::async_read(run->socket, asio::buffer(run->finish), asio::bind_executor(ex, [=](const asio::error_code &ec3, size_t) {
                if (ec3) return fail(ec3 == asio::error::operation_aborted || ec3 == asio::error::bad_descriptor
                                         ? "handshake deadline passed"
                                         : "handshake: " + ec3.message());
                std::string error;
                if (!run->hs->onFinish(run->finish.data(), run->finish.size(), &error)) return fail(error);
                run->end(Status{}, Channel::make(run->hs->keys(), false), run->decoded);
            }));
        }));
    }));
}

} // namespace pccl::transport
