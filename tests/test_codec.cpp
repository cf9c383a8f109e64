// The wire codecs: every control message (protocol/codec.h), the data plane's handshake and frame
// header (transport/data_wire.h), and the result conversion (protocol/wire_result.h). The
// per-message cases iterate ControlMessage, so a message added to the table is covered at once.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <cstring>
#include <new>
#include <random>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "protocol/codec.h"
#include "protocol/field_codec.h"
#include "protocol/wire_result.h"
#include "transport/data_wire.h"
#include "util/bytes.h"
#include "util/splitmix.h"

// The largest single allocation made by this thread while tracking is on: decoding must never
// allocate for a length the input does not hold. (Replaces the global operator new for the test
// binary; allocations stay plain malloc.)
namespace {
thread_local bool gTrackAllocations = false;
thread_local size_t gLargestAllocation = 0;
} // namespace

void *operator new(size_t n) {
    if (gTrackAllocations && n > gLargestAllocation) gLargestAllocation = n;
    if (void *p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
// GCC cannot see that the operator new above is malloc.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void *p) noexcept { std::free(p); }
void operator delete(void *p, size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

using namespace pccl;
using namespace pccl::protocol;

namespace {

// Sets every field, recursively, to a value other than its default: integers with their high
// bytes set (byte order shows), strings with a NUL and bytes above 127, two items in every vector.
struct Filler {
    uint64_t n = 0;
    template <class T>
    void fill(T &v) {
        using fields::IsArray;
        using fields::IsVector;
        if constexpr (std::is_same_v<T, bool>) {
            v = !v;
        } else if constexpr (std::is_integral_v<T>) {
            using U = std::make_unsigned_t<T>;
            const uint64_t range = (uint64_t{1} << (8 * sizeof(T) - 1)) - 1;  // k in [1, range]: never 0 mod 2^bits
            v = static_cast<T>(static_cast<U>(static_cast<U>(v) + static_cast<U>(1 + util::splitmix64Hash(++n) % range)));
        } else if constexpr (std::is_same_v<T, std::string>) {
            v = "field " + std::to_string(++n) + std::string("\0\xff", 2);
        } else if constexpr (std::is_same_v<T, Uuid>) {
            for (auto &b : v.bytes) b = static_cast<uint8_t>(util::splitmix64Hash(++n) | 1);
        } else if constexpr (IsArray<T>::value) {
            for (auto &x : v) fill(x);
        } else if constexpr (IsVector<T>::value) {
            v.resize(2);
            for (auto &x : v) fill(x);
        } else {
            v.fields([&](auto &...xs) { (fill(xs), ...); });
        }
    }
};

template <class T>
std::vector<uint8_t> payloadOf(const T &v) {
    std::vector<uint8_t> b;
    fields::encode(v, b);
    return b;
}

// The encoding of each top-level field of v.
template <class T>
std::vector<std::vector<uint8_t>> fieldEncodings(const T &v) {
    std::vector<std::vector<uint8_t>> out;
    v.fields([&](const auto &...xs) { (out.push_back(payloadOf(xs)), ...); });
    return out;
}

template <class T>
T filled() {
    T v{};
    Filler f;
    f.fill(v);
    return v;
}

constexpr uint16_t typeOf(const ControlMessage &m) { return static_cast<uint16_t>(m.index()); }

// Decodes `bytes` (an exact-size heap copy, so that a sanitizer sees any read past the end).
std::optional<ControlMessage> decodeCopy(uint16_t type, const std::vector<uint8_t> &bytes, size_t size,
                                         std::string *error) {
    std::vector<uint8_t> copy(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(size));
    return decodeMessage(type, copy.data(), copy.size(), error);
}

std::vector<uint8_t> encodeMessage(const ControlMessage &m) {
    std::vector<uint8_t> frame;
    encodeFrame(m, frame);
    return {frame.begin() + static_cast<std::ptrdiff_t>(kFrameHeaderBytes), frame.end()};
}

} // namespace

TEMPLATE_LIST_TEST_CASE("codec: every message round-trips with every field set, and fails cleanly when cut short or "
                        "followed by extra bytes", "[codec]", ControlMessage) {
    const ControlMessage m{filled<TestType>()};
    const uint16_t type = typeOf(m);
    INFO("message " << messageName(m) << " (type " << type << ")");

    const auto mine = fieldEncodings(std::get<TestType>(m));
    const auto dflt = fieldEncodings(TestType{});
    REQUIRE(mine.size() == dflt.size());
    for (size_t i = 0; i < mine.size(); ++i) {
        INFO("field " << i);
        CHECK(mine[i] != dflt[i]);
    }

    std::vector<uint8_t> frame;
    encodeFrame(m, frame);
    REQUIRE(frame.size() >= kFrameHeaderBytes);
    CHECK(loadLE32(frame.data()) == frame.size() - kFrameHeaderBytes);
    CHECK(loadLE16(frame.data() + 4) == type);
    const std::vector<uint8_t> payload(frame.begin() + kFrameHeaderBytes, frame.end());

    std::string error;
    const auto back = decodeCopy(type, payload, payload.size(), &error);
    REQUIRE(back.has_value());
    CHECK(error.empty());
    REQUIRE(back->index() == m.index());
    CHECK(encodeMessage(*back) == payload);  // the encoding is canonical: equal bytes, equal fields

    for (size_t n = 0; n < payload.size(); ++n) {
        INFO("cut to " << n << " of " << payload.size() << " bytes");
        error.clear();
        CHECK_FALSE(decodeCopy(type, payload, n, &error).has_value());
        CHECK_FALSE(error.empty());
    }

    for (size_t extra : {size_t{1}, size_t{16}}) {
        auto longer = payload;
        longer.resize(payload.size() + extra, 0xab);
        error.clear();
        CHECK_FALSE(decodeCopy(type, longer, longer.size(), &error).has_value());
        CHECK(error.find("trailing bytes") != std::string::npos);
    }
}

TEMPLATE_LIST_TEST_CASE("codec: random and mutated payloads never crash the decoder; whatever decodes re-encodes to "
                        "the same bytes", "[codec]", ControlMessage) {
    const uint64_t seed = 0xC0DEC + ControlMessage{TestType{}}.index();
    INFO("seed " << seed);
    std::mt19937_64 rng(seed);
    const ControlMessage m{filled<TestType>()};
    const uint16_t type = typeOf(m);
    const auto valid = encodeMessage(m);
    for (int round = 0; round < 600; ++round) {
        std::vector<uint8_t> b;
        if (round % 2 == 0) {
            b.resize(rng() % 96);
            for (auto &x : b) x = static_cast<uint8_t>(rng());
        } else {
            b = valid;
            const int flips = 1 + static_cast<int>(rng() % 4);
            for (int i = 0; i < flips && !b.empty(); ++i) b[rng() % b.size()] = static_cast<uint8_t>(rng());
        }
        std::string error;
        const auto got = decodeCopy(type, b, b.size(), &error);
        if (!got) {
            CHECK_FALSE(error.empty());
            continue;
        }
        // A Hello of another protocol version is reduced to its version (see decodeMessage).
        if (const auto *h = std::get_if<Hello>(&*got); h && h->magic == kMagic && h->version != kProtocolVersion)
            continue;
        CHECK(encodeMessage(*got) == b);
    }
}

TEST_CASE("codec: an unknown message type is refused", "[codec]") {
    const uint8_t payload[4] = {0, 0, 0, 0};
    for (uint16_t type : {static_cast<uint16_t>(std::variant_size_v<ControlMessage>), uint16_t{0xffff}}) {
        std::string error;
        CHECK_FALSE(decodeMessage(type, payload, sizeof payload, &error).has_value());
        CHECK(error.find("unknown message type") != std::string::npos);
    }
}

TEST_CASE("codec: a Hello of another protocol version decodes to its version whatever follows; a Hello with another "
          "magic decodes only with this version's layout", "[codec]") {
    Hello h = filled<Hello>();
    std::string error;

    SECTION("this magic, another version: the master can reject it with a reason") {
        h.magic = kMagic;
        h.version = kProtocolVersion + 1;
        auto b = encodeMessage(h);
        for (size_t n : {size_t{6}, size_t{9}, b.size() - 1, b.size(), b.size() + 5}) {
            INFO("payload of " << n << " bytes");
            b.resize(n, 0x5a);
            const auto got = decodeCopy(0, b, b.size(), &error);
            REQUIRE(got.has_value());
            REQUIRE(std::holds_alternative<Hello>(*got));
            CHECK(std::get<Hello>(*got).magic == kMagic);
            CHECK(std::get<Hello>(*got).version == kProtocolVersion + 1);
        }
        CHECK_FALSE(decodeCopy(0, b, 5, &error).has_value());  // not even the version
    }
    SECTION("this magic and version: cut short or extended, it is malformed") {
        h.magic = kMagic;
        h.version = kProtocolVersion;
        auto b = encodeMessage(h);
        CHECK(decodeCopy(0, b, b.size(), &error).has_value());
        CHECK_FALSE(decodeCopy(0, b, b.size() - 1, &error).has_value());
        b.push_back(0);
        CHECK_FALSE(decodeCopy(0, b, b.size(), &error).has_value());
    }
    SECTION("another magic: decoded as it is (the master refuses it), malformed if the layout differs") {
        h.magic = kMagic ^ 1;
        h.version = kProtocolVersion + 1;
        auto b = encodeMessage(h);
        const auto got = decodeCopy(0, b, b.size(), &error);
        REQUIRE(got.has_value());
        CHECK(std::get<Hello>(*got).magic == (kMagic ^ 1));
        CHECK_FALSE(decodeCopy(0, b, b.size() - 1, &error).has_value());
        b.push_back(0);
        CHECK_FALSE(decodeCopy(0, b, b.size(), &error).has_value());
    }
}

TEST_CASE("codec: a bool other than 0 or 1 is malformed", "[codec]") {
    auto b = encodeMessage(LinksReady{7, true, "x"});
    REQUIRE(b[8] == 1);
    b[8] = 2;
    std::string error;
    CHECK_FALSE(decodeCopy(typeOf(LinksReady{}), b, b.size(), &error).has_value());
}

TEST_CASE("codec: strings and vectors longer than the limits are refused; announced lengths the payload cannot hold "
          "fail without allocating them", "[codec]") {
    std::string error;
    auto track = [](auto &&decode) {
        gLargestAllocation = 0;
        gTrackAllocations = true;
        decode();
        gTrackAllocations = false;
        return gLargestAllocation;
    };

    SECTION("a string at the limit decodes; one byte more does not") {
        Kicked k;
        k.reason.assign(kMaxStringBytes, 'r');
        auto b = encodeMessage(k);
        const uint16_t type = typeOf(Kicked{});
        CHECK(decodeCopy(type, b, b.size(), &error).has_value());
        k.reason.push_back('r');
        b = encodeMessage(k);
        CHECK_FALSE(decodeCopy(type, b, b.size(), &error).has_value());
    }
    SECTION("a vector at the limit decodes; one item more does not") {
        SharedStatePlan p;
        p.serve.assign(kMaxVectorItems, 3);
        auto b = encodeMessage(p);
        const uint16_t type = typeOf(SharedStatePlan{});
        CHECK(decodeCopy(type, b, b.size(), &error).has_value());
        p.serve.push_back(3);
        b = encodeMessage(p);
        CHECK_FALSE(decodeCopy(type, b, b.size(), &error).has_value());
    }
    SECTION("a string announcing 4 GiB in a few bytes") {
        std::vector<uint8_t> b(4 + 64, 'x');
        storeLE32(b.data(), 0xffffffffu);
        const size_t largest = track([&] { CHECK_FALSE(decodeCopy(typeOf(Kicked{}), b, b.size(), &error).has_value()); });
        CHECK(largest <= 2 * b.size() + 256);
    }
    SECTION("vectors announcing more items than the payload holds, at every level") {
        // SharedStateSync: revision u64, strategy u8, synced_before bool, entries (u32 count, ...).
        // A million entries of at least 34 bytes each announced in 1 MiB (one byte each would
        // fit): std::vector<EntryDesc> would take over 50 MiB for them.
        std::vector<uint8_t> b(8 + 1 + 1 + 4 + (1u << 20), 0);
        storeLE32(b.data() + 10, kMaxVectorItems);
        const uint16_t sync = typeOf(SharedStateSync{});
        size_t largest = track([&] { CHECK_FALSE(decodeCopy(sync, b, b.size(), &error).has_value()); });
        CHECK(largest <= 2 * b.size() + 256);

        // A SharedStatePlan whose one ChunkFetch announces a million digests in the bytes left.
        SharedStatePlan plan;
        plan.receive.resize(1);
        plan.receive[0].digests.resize(1);
        auto p = encodeMessage(plan);
        // seq, revision, peers (0), receive (1): entry u32, chunks (0), digests count at offset 32.
        REQUIRE(loadLE32(p.data() + 32) == 1);
        storeLE32(p.data() + 32, kMaxVectorItems);
        p.resize(p.size() + (1u << 20));  // room for the count at one byte each, not at 16
        largest = track([&] { CHECK_FALSE(decodeCopy(typeOf(SharedStatePlan{}), p, p.size(), &error).has_value()); });
        CHECK(largest <= 2 * p.size() + 256);
    }
}

namespace {

// The largest single allocation made while decoding `type` from `bytes`, and whether it decoded.
std::pair<size_t, bool> decodeTracked(uint16_t type, const std::vector<uint8_t> &bytes) {
    std::string error;
    gLargestAllocation = 0;
    gTrackAllocations = true;
    const bool decoded = decodeCopy(type, bytes, bytes.size(), &error).has_value();
    gTrackAllocations = false;
    return {gLargestAllocation, decoded};
}

// The indices of T's top-level fields that carry a u32 length first (strings and vectors).
template <class T>
std::vector<size_t> lengthFields() {
    std::vector<size_t> out;
    size_t i = 0;
    auto visit = [&](const auto &x) {
        using F = std::decay_t<decltype(x)>;
        if (fields::IsVector<F>::value || std::is_same_v<F, std::string>) out.push_back(i);
        ++i;
    };
    T{}.fields([&](const auto &...xs) { (visit(xs), ...); });
    return out;
}

} // namespace

TEMPLATE_LIST_TEST_CASE("codec: in every message, a string or vector announcing more than its limit or than the "
                        "payload holds is refused without allocating for it", "[codec]", ControlMessage) {
    const TestType v = filled<TestType>();
    const ControlMessage m{v};
    const uint16_t type = typeOf(m);
    INFO("message " << messageName(m));
    const auto payload = encodeMessage(m);
    const auto enc = fieldEncodings(v);
    const auto lengths = lengthFields<TestType>();
    if (lengths.empty()) SUCCEED("no length-prefixed field: only the exact size decodes (the round-trip case)");
    for (size_t f : lengths) {
        size_t offset = 0;
        for (size_t i = 0; i < f; ++i) offset += enc[i].size();
        for (uint32_t n : {kMaxStringBytes + 1, kMaxVectorItems + 1, static_cast<uint32_t>(payload.size()), 0xffffffffu}) {
            INFO("field " << f << " announcing " << n);
            auto b = payload;
            storeLE32(b.data() + offset, n);
            const auto [largest, decoded] = decodeTracked(type, b);
            CHECK_FALSE(decoded);
            CHECK(largest <= 2 * b.size() + 256);
        }
    }
}

TEST_CASE("codec: every type id past the message table is refused, whatever the payload", "[codec]") {
    const std::vector<uint8_t> payloads[] = {{}, encodeMessage(filled<Hello>()), encodeMessage(filled<Kicked>())};
    size_t accepted = 0, unexplained = 0;
    for (uint32_t type = std::variant_size_v<ControlMessage>; type <= 0xffff; ++type)
        for (const auto &p : payloads) {
            std::string error;
            accepted += decodeMessage(static_cast<uint16_t>(type), p.data(), p.size(), &error).has_value();
            unexplained += error.find("unknown message type") == std::string::npos;
        }
    CHECK(accepted == 0);
    CHECK(unexplained == 0);
}

TEMPLATE_LIST_TEST_CASE("codec: only a Hello is read by its magic and version: any other message that begins like a "
                        "Hello of another version decodes as itself or not at all", "[codec]", ControlMessage) {
    const uint16_t type = typeOf(ControlMessage{TestType{}});
    for (uint16_t version : {uint16_t{0}, uint16_t(kProtocolVersion - 1), uint16_t(kProtocolVersion + 1), uint16_t{0xffff}}) {
        Hello h = filled<Hello>();
        h.magic = kMagic;
        h.version = version;
        const auto b = encodeMessage(h);
        for (size_t n : {size_t{6}, b.size() - 1, b.size()}) {
            INFO("version " << version << ", " << n << " bytes, as type " << type);
            std::string error;
            const auto got = decodeCopy(type, b, n, &error);
            if (type == 0) {
                REQUIRE(got.has_value());
                CHECK(std::get<Hello>(*got).version == version);
            } else {
                CHECK((!got || got->index() == type));
                if (!got) CHECK_FALSE(error.empty());
            }
        }
    }
}

TEST_CASE("wire results: every known result crosses unchanged; unknown values and a failure reported as success "
          "arrive as pcclInternalError", "[codec]") {
    for (int v = 0; v <= kLastWireResult; ++v) {
        const auto r = static_cast<pcclResult_t>(v);
        CHECK(fromWire(toWire(r)) == r);
        CHECK(failureFromWire(toWire(r)) == (r == pcclSuccess ? pcclInternalError : r));
        // pccl.h and this table agree: every value up to kLastWireResult has a message.
        CHECK(std::string(pcclGetErrorString(r)).rfind("unknown", 0) == std::string::npos);
    }
    // ... and none past it (raise kLastWireResult when pccl.h appends a result).
    CHECK(std::string(pcclGetErrorString(static_cast<pcclResult_t>(kLastWireResult + 1))).rfind("unknown", 0) == 0);
    for (int v = kLastWireResult + 1; v <= 255; ++v) {
        CHECK(fromWire(static_cast<uint8_t>(v)) == pcclInternalError);
        CHECK(failureFromWire(static_cast<uint8_t>(v)) == pcclInternalError);
    }
    CHECK(toWire(static_cast<pcclResult_t>(1000)) == toWire(pcclInternalError));
    CHECK(toWire(static_cast<pcclResult_t>(-1)) == toWire(pcclInternalError));
}

// ---- the data plane's wire format

TEST_CASE("data wire: the hello and its acknowledgement round-trip at their fixed sizes and fail cut short or "
          "extended", "[codec][data_plane]") {
    transport::SameHostIdentity id;
    id.pid = 0x01020304;
    id.netns = 0x1112131415161718ull;
    id.tokenAddress = 0x2122232425262728ull;
    for (size_t i = 0; i < id.token.size(); ++i) id.token[i] = static_cast<uint8_t>(0xa0 + i);
    const Uuid a = Uuid::random(), b = Uuid::random();
    const auto hello = transport::DataHello::make(a, b, id, true);
    const auto bytes = transport::encodeDataHello(hello);
    CHECK(bytes.size() == transport::kDataHelloBytes);
    CHECK(payloadOf(hello).size() == transport::kDataHelloBytes);
    // The layout the data plane has always used: magic, version, ids, offer, identity at 42.
    CHECK(loadLE32(bytes.data()) == transport::kDataMagic);
    CHECK(loadLE16(bytes.data() + 4) == kProtocolVersion);
    CHECK(std::memcmp(bytes.data() + 6, a.bytes.data(), 16) == 0);
    CHECK(std::memcmp(bytes.data() + 22, b.bytes.data(), 16) == 0);
    CHECK(bytes[38] == 1);
    CHECK(loadLE32(bytes.data() + 42) == id.pid);
    CHECK(loadLE64(bytes.data() + 46) == id.netns);
    CHECK(loadLE64(bytes.data() + 54) == id.tokenAddress);
    CHECK(std::memcmp(bytes.data() + 62, id.token.data(), 16) == 0);

    const auto back = transport::decodeDataHello(bytes.data(), bytes.size());
    REQUIRE(back.has_value());
    CHECK(back->sender == a);
    CHECK(back->receiver == b);
    CHECK(back->offersSameHost());
    CHECK(back->identity().pid == id.pid);
    CHECK(back->identity().netns == id.netns);
    CHECK(back->identity().tokenAddress == id.tokenAddress);
    CHECK(back->identity().token == id.token);
    CHECK(transport::encodeDataHello(*back) == bytes);
    CHECK_FALSE(transport::DataHello::make(a, b, id, false).offersSameHost());
    std::vector<uint8_t> v(bytes.begin(), bytes.end());
    for (size_t n = 0; n < v.size(); ++n) CHECK_FALSE(transport::decodeDataHello(v.data(), n).has_value());
    v.push_back(0);
    CHECK_FALSE(transport::decodeDataHello(v.data(), v.size()).has_value());

    transport::DataAck ack;
    ack.accepted = true;
    ack.same_host = true;
    const auto ab = transport::encodeDataAck(ack);
    CHECK(ab == std::array<uint8_t, 8>{0x50, 0x43, 0x44, 0x4c, 1, 1, 0, 0});
    const auto aback = transport::decodeDataAck(ab.data(), ab.size());
    REQUIRE(aback.has_value());
    CHECK(aback->accepted);
    CHECK(aback->same_host);
    for (size_t n = 0; n < ab.size(); ++n) CHECK_FALSE(transport::decodeDataAck(ab.data(), n).has_value());
    auto bad = ab;
    bad[4] = 2;  // accepted is a bool
    CHECK_FALSE(transport::decodeDataAck(bad.data(), bad.size()).has_value());
}

TEST_CASE("data wire: frame headers round-trip on TCP and same-host connections; malformed ones are refused",
          "[codec][data_plane]") {
    transport::FrameHeader f;
    f.segment = {0x0102030405060708ull, 0x1112131415161718ull, 1234, 7};
    uint8_t b[transport::kMaxFrameHeaderBytes];

    for (bool sameHost : {false, true}) {
        INFO("same host: " << sameHost);
        f.byRef = false;
        f.address = 0;
        std::memset(b, 0xee, sizeof b);
        transport::encodeFrameHeader(f, sameHost, b);
        auto back = transport::decodeFrameHeader(b, sameHost);
        REQUIRE(back.has_value());
        CHECK(back->segment.seq == f.segment.seq);
        CHECK(back->segment.offset == f.segment.offset);
        CHECK(back->segment.bytes == f.segment.bytes);
        CHECK(back->segment.phase == f.segment.phase);
        CHECK_FALSE(back->byRef);
        CHECK(transport::encodedSeq(b) == f.segment.seq);
        if (sameHost) CHECK(loadLE64(b + transport::kSegmentHeaderBytes) == 0);
        for (size_t pad : {size_t{22}, size_t{23}}) {
            uint8_t c[sizeof b];
            std::memcpy(c, b, sizeof b);
            c[pad] = 1;
            CHECK_FALSE(transport::decodeFrameHeader(c, sameHost).has_value());
        }
        uint8_t big[sizeof b];
        std::memcpy(big, b, sizeof b);
        storeLE32(big + 16, transport::kMaxSegmentBytes + 1);
        CHECK_FALSE(transport::decodeFrameHeader(big, sameHost).has_value());
    }

    f.byRef = true;
    f.address = 0x00007f0012345678ull;
    transport::encodeFrameHeader(f, true, b);
    auto back = transport::decodeFrameHeader(b, true);
    REQUIRE(back.has_value());
    CHECK(back->byRef);
    CHECK(back->address == f.address);
    // By reference is only for same-host connections, and the flag is 0 or 1.
    CHECK_FALSE(transport::decodeFrameHeader(b, false).has_value());
    b[21] = 2;
    CHECK_FALSE(transport::decodeFrameHeader(b, true).has_value());
}

TEST_CASE("data wire: a hello of another version or magic still decodes, with its fields as sent (the receiver "
          "refuses it by them); every 78-byte string is a hello", "[codec][data_plane]") {
    for (uint16_t version : {uint16_t{0}, uint16_t(kProtocolVersion - 1), uint16_t(kProtocolVersion + 1), uint16_t{0xffff}}) {
        auto h = transport::DataHello::make(Uuid::random(), Uuid::random(), {}, false);
        h.version = version;
        h.magic = version == 0 ? transport::kDataMagic ^ 1 : transport::kDataMagic;
        const auto b = transport::encodeDataHello(h);
        const auto back = transport::decodeDataHello(b.data(), b.size());
        REQUIRE(back.has_value());
        CHECK(back->version == version);
        CHECK(back->magic == h.magic);
        CHECK(back->sender == h.sender);
    }
    std::mt19937_64 rng(78);
    for (int i = 0; i < 200; ++i) {
        std::array<uint8_t, transport::kDataHelloBytes> b;
        for (auto &x : b) x = static_cast<uint8_t>(rng());
        const auto h = transport::decodeDataHello(b.data(), b.size());
        REQUIRE(h.has_value());
        CHECK(transport::encodeDataHello(*h) == b);
    }
}
