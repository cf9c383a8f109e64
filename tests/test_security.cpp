// The security primitives and the handshake as pure functions (docs/security.md): records seal
// and open in order and refuse any change; the handshake agrees on keys only when both sides
// hold the same key, and refuses replays, reflections and malformed messages.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <unistd.h>
#include <fstream>
#include <sys/stat.h>
#include <thread>
#include <vector>

#include "security/crypto.h"
#include "security/handshake.h"
#include "security/secret.h"
#include "transport/secure_channel.h"

using namespace pccl;
using namespace pccl::security;

namespace {

Key keyOf(uint8_t b) {
    Key k{};
    k.fill(b);
    return k;
}

Uuid uuidOf(uint8_t b) {
    Uuid u;
    u.bytes.fill(b);
    return u;
}

struct Pair {
    std::shared_ptr<transport::Channel> client, server;
};

// A full handshake between two sides holding `clientKey` and `serverKey`.
std::optional<Pair> handshake(const Key &clientKey, const Key &serverKey, Mode mode = Mode::Encrypt,
                              Suite suite = Suite::Aes256Gcm, std::string *error = nullptr) {
    std::string e;
    ClientHandshake c(clientKey, ConnKind::Data, suite, mode, uuidOf(1), uuidOf(2));
    auto hello = decodeClientHello(c.hello().data(), c.hello().size(), &e);
    REQUIRE(hello);
    ServerHandshake s(serverKey, *hello);
    auto finish = c.onServerHello(s.reply().data(), s.reply().size(), &e);
    if (error) *error = e;
    if (!finish) return std::nullopt;
    if (!s.onFinish(finish->data(), finish->size(), &e)) return std::nullopt;
    return Pair{transport::Channel::make(c.keys(), true), transport::Channel::make(s.keys(), false)};
}

} // namespace

TEST_CASE("HKDF-SHA256 matches RFC 5869 test case 1", "[security]") {
    std::vector<uint8_t> ikm(22, 0x0b), salt, info;
    for (int i = 0; i <= 12; ++i) salt.push_back(static_cast<uint8_t>(i));
    for (int i = 0xf0; i <= 0xf9; ++i) info.push_back(static_cast<uint8_t>(i));
    std::array<uint8_t, 42> okm{};
    hkdf(ikm, salt, info, okm);
    const uint8_t expected[42] = {0x3c, 0xb2, 0x5f, 0x25, 0xfa, 0xac, 0xd5, 0x7a, 0x90, 0x43, 0x4f, 0x64, 0xd0, 0x36,
                                  0x2f, 0x2a, 0x2d, 0x2d, 0x0a, 0x90, 0xcf, 0x1a, 0x5a, 0x4c, 0x5d, 0xb0, 0x2d, 0x56,
                                  0xec, 0xc4, 0xc5, 0xbf, 0x34, 0x00, 0x72, 0x08, 0xd5, 0xb8, 0x87, 0x18, 0x58, 0x65};
    CHECK(std::equal(okm.begin(), okm.end(), expected));
}

TEST_CASE("HMAC-SHA256 matches RFC 4231 test case 2, repeatedly and on other threads", "[security]") {
    // Key "Jefe": HMAC pads a short key with zeros, so the 32-byte Key holding it is the same key.
    Key key{};
    const char jefe[] = "Jefe", data[] = "what do ya want for nothing?";
    std::copy(jefe, jefe + 4, key.begin());
    const Key expected = {0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95, 0x75, 0xc7,
                          0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43};
    const auto *bytes = reinterpret_cast<const uint8_t *>(data);
    auto mac = [&] { return hmac(key, {Bytes(bytes, 10), Bytes(bytes + 10, sizeof(data) - 11)}); };  // in two parts
    CHECK(mac() == expected);
    CHECK(mac() == expected);  // the per-thread context is copied, never consumed
    CHECK(hmac(keyOf(1), {Bytes(bytes, 4)}) != hmac(keyOf(2), {Bytes(bytes, 4)}));
    Key other{};
    std::thread([&] { other = mac(); }).join();
    CHECK(other == expected);
}

TEST_CASE("records seal and open in order, in place, for both suites and modes", "[security]") {
    for (Suite suite : {Suite::Aes256Gcm, Suite::ChaCha20Poly1305}) {
        for (Mode mode : {Mode::Encrypt, Mode::Integrity}) {
            auto p = handshake(keyOf(7), keyOf(7), mode, suite);
            REQUIRE(p);
            for (int r = 0; r < 3; ++r) {
                std::vector<uint8_t> msg(1000 + r), orig;
                for (size_t i = 0; i < msg.size(); ++i) msg[i] = static_cast<uint8_t>(i * 7 + r);
                orig = msg;
                msg.resize(msg.size() + kTagBytes);
                p->client->sealInPlace({}, msg.data(), orig.size());
                const bool changed = !std::equal(orig.begin(), orig.end(), msg.begin());
                CHECK(changed == (mode == Mode::Encrypt));
                // Streaming open in uneven chunks, as a socket delivers them.
                auto &rc = *p->server->recv;
                rc.begin();
                size_t at = 0;
                for (size_t step : {1u, 17u, 300u}) {
                    rc.update(msg.data() + at, msg.data() + at, step);
                    at += step;
                }
                rc.update(msg.data() + at, msg.data() + at, orig.size() - at);
                REQUIRE(rc.finishOpen(msg.data() + orig.size()));
                CHECK(std::equal(orig.begin(), orig.end(), msg.begin()));
            }
        }
    }
}

TEST_CASE("a flipped bit, a replayed, reordered or dropped record fails verification", "[security]") {
    auto p = handshake(keyOf(3), keyOf(3));
    REQUIRE(p);
    auto sealOne = [&](uint8_t fill) {
        std::vector<uint8_t> m(64 + kTagBytes, fill);
        p->client->sealInPlace({}, m.data(), 64);
        return m;
    };
    auto a = sealOne(1), b = sealOne(2), c = sealOne(3);
    SECTION("bit flip in the payload") {
        a[10] ^= 0x01;
        CHECK_FALSE(p->server->openInPlace({}, a.data(), 64));
    }
    SECTION("bit flip in the tag") {
        a[64 + 3] ^= 0x80;
        CHECK_FALSE(p->server->openInPlace({}, a.data(), 64));
    }
    SECTION("reordered") { CHECK_FALSE(p->server->openInPlace({}, b.data(), 64)); }
    SECTION("replayed") {
        auto a2 = a;
        CHECK(p->server->openInPlace({}, a.data(), 64));
        CHECK_FALSE(p->server->openInPlace({}, a2.data(), 64));
    }
    SECTION("dropped") {
        CHECK(p->server->openInPlace({}, a.data(), 64));
        CHECK_FALSE(p->server->openInPlace({}, c.data(), 64));
    }
    SECTION("changed associated data") {
        std::vector<uint8_t> m(8 + kTagBytes, 9);
        const uint8_t len[4] = {8, 0, 0, 0}, other[4] = {9, 0, 0, 0};
        p->client->sealInPlace(len, m.data(), 8);
        CHECK_FALSE(p->server->openInPlace(other, m.data(), 8));
    }
}

TEST_CASE("the handshake fails on the client when the keys differ, and the server never accepts", "[security]") {
    std::string error;
    CHECK_FALSE(handshake(keyOf(1), keyOf(2), Mode::Encrypt, Suite::Aes256Gcm, &error));
    CHECK(error.find("different secrets") != std::string::npos);
}

TEST_CASE("a replayed or reflected client proof is refused", "[security]") {
    std::string e;
    const Key k = keyOf(5);
    ClientHandshake c(k, ConnKind::Control, Suite::Aes256Gcm, Mode::Encrypt, Uuid{}, Uuid{});
    auto hello = decodeClientHello(c.hello().data(), c.hello().size(), &e);
    REQUIRE(hello);
    ServerHandshake s1(k, *hello);
    auto finish = c.onServerHello(s1.reply().data(), s1.reply().size(), &e);
    REQUIRE(finish);
    CHECK(s1.onFinish(finish->data(), finish->size(), &e));
    // The same hello and proof, replayed to a new connection: the server's nonce differs.
    ServerHandshake s2(k, *hello);
    CHECK_FALSE(s2.onFinish(finish->data(), finish->size(), &e));
    CHECK(e.find("replayed") != std::string::npos);
    // Reflection: the server's own MAC sent back as the client's proof.
    ServerHandshake s3(k, *hello);
    CHECK_FALSE(s3.onFinish(s3.reply().data() + kServerHelloBytes - 32, 32, &e));
    // A client never accepts a reply whose MAC was made for another hello.
    ClientHandshake other(k, ConnKind::Control, Suite::Aes256Gcm, Mode::Encrypt, Uuid{}, Uuid{});
    CHECK_FALSE(other.onServerHello(s1.reply().data(), s1.reply().size(), &e));
}

TEST_CASE("handshake messages: malformed, truncated, unknown values and refusals", "[security]") {
    std::string e;
    ClientHandshake c(keyOf(1), ConnKind::Data, Suite::ChaCha20Poly1305, Mode::Integrity, uuidOf(1), uuidOf(2));
    auto bytes = c.hello();
    CHECK(decodeClientHello(bytes.data(), bytes.size(), &e));
    CHECK_FALSE(decodeClientHello(bytes.data(), bytes.size() - 1, &e));
    for (size_t field : {size_t{0}, size_t{4}, size_t{6}, size_t{7}, size_t{8}, size_t{9}}) {
        auto bad = bytes;
        bad[field] ^= 0x40;
        CHECK_FALSE(decodeClientHello(bad.data(), bad.size(), &e));
    }
    auto noSecret = ServerHandshake::refusal(ServerStatus::NoSecret);
    CHECK_FALSE(c.onServerHello(noSecret.data(), noSecret.size(), &e));
    CHECK(e.find("without a run secret") != std::string::npos);
    auto refused = ServerHandshake::refusal(ServerStatus::Refused);
    CHECK_FALSE(c.onServerHello(refused.data(), refused.size(), &e));
    CHECK(e.find("refused") != std::string::npos);
    auto unknown = refused;
    unknown[4] = 9;
    CHECK_FALSE(c.onServerHello(unknown.data(), unknown.size(), &e));
}

TEST_CASE("pair keys bind the sender and the admission", "[security]") {
    const Key master = keyOf(9);
    const Key a1 = peerKey(master, uuidOf(1), 1), a2 = peerKey(master, uuidOf(1), 2);
    CHECK(a1 != a2);
    CHECK(pairKey(a1, uuidOf(2)) != pairKey(a1, uuidOf(3)));
    CHECK(pairKey(a1, uuidOf(2)) != pairKey(a2, uuidOf(2)));
    CHECK(runKey("0123456789abcdef") != runKey("0123456789abcdeg"));
}

TEST_CASE("secret settings: parameter, environment, file permissions, length, PCCL_ENCRYPT", "[security]") {
    unsetenv("PCCL_SECRET");
    unsetenv("PCCL_SECRET_FILE");
    unsetenv("PCCL_ENCRYPT");
    Settings s;
    REQUIRE(loadSettings(std::nullopt, nullptr, 0, &s).ok());
    CHECK_FALSE(s.enabled());
    CHECK(loadSettings(std::string("short"), nullptr, 0, &s).code() == pcclInvalidArgument);
    REQUIRE(loadSettings(std::string("0123456789abcdef"), nullptr, 2, &s).ok());
    CHECK(s.enabled());
    CHECK(s.mode == Mode::Integrity);
    CHECK(loadSettings(std::nullopt, nullptr, 3, &s).code() == pcclInvalidArgument);

    const std::string path = "/tmp/pccl_test_secret_" + std::to_string(::getpid());
    std::ofstream(path) << "0123456789abcdef0123\n";
    ::chmod(path.c_str(), 0644);
    Status st = loadSettings(std::nullopt, path.c_str(), 0, &s);
    CHECK(st.code() == pcclInvalidArgument);
    CHECK(st.message().find("chmod 600") != std::string::npos);
    ::chmod(path.c_str(), 0600);
    REQUIRE(loadSettings(std::nullopt, path.c_str(), 0, &s).ok());
    CHECK(*s.runKey == runKey("0123456789abcdef0123"));  // the newline is not part of it

    setenv("PCCL_SECRET_FILE", path.c_str(), 1);
    REQUIRE(loadSettings(std::nullopt, nullptr, 0, &s).ok());
    CHECK(*s.runKey == runKey("0123456789abcdef0123"));
    setenv("PCCL_SECRET", "abcdefabcdefabcdef", 1);  // wins over the file
    setenv("PCCL_ENCRYPT", "off", 1);
    REQUIRE(loadSettings(std::nullopt, nullptr, 0, &s).ok());
    CHECK(*s.runKey == runKey("abcdefabcdefabcdef"));
    CHECK(s.mode == Mode::Integrity);
    setenv("PCCL_ENCRYPT", "maybe", 1);
    CHECK(loadSettings(std::nullopt, nullptr, 0, &s).code() == pcclInvalidArgument);
    unsetenv("PCCL_SECRET");
    unsetenv("PCCL_SECRET_FILE");
    unsetenv("PCCL_ENCRYPT");
    ::unlink(path.c_str());
}
