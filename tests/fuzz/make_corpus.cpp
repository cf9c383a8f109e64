// Writes the seed corpus of the fuzz harnesses (docs/fuzzing.md): every control message with the
// values a real run sends, the data plane's handshakes and frame headers of every kind of
// operation, shared-state requests and chunks (raw and zstd), quantized segments, and the
// authentication handshake's messages and records, each in its harness's input format, one file
// per input under <dir>/<harness>/. Every file is decoded again before it is written, so a corpus
// this program writes is valid traffic.
//
//   pccl_fuzz_corpus DIR      (the repository's corpus: pccl_fuzz_corpus tests/fuzz/corpus)
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "collectives/quantize.h"
#include "protocol/codec.h"
#include "security/handshake.h"
#include "shared_state/chunk_codec.h"
#include "shared_state/hashing.h"
#include "transfer_entries.h"
#include "transport/data_wire.h"
#include "util/bytes.h"

using namespace pccl;
using namespace pccl::protocol;
namespace fs = std::filesystem;

namespace {

fs::path gRoot;
int gFiles = 0;
bool gOk = true;

void require(bool cond, const std::string &what) {
    if (!cond) {
        std::fprintf(stderr, "pccl_fuzz_corpus: %s\n", what.c_str());
        gOk = false;
    }
}

void write(const std::string &harness, const std::string &name, const std::vector<uint8_t> &bytes) {
    const fs::path dir = gRoot / harness;
    fs::create_directories(dir);
    std::ofstream(dir / name, std::ios::binary).write(reinterpret_cast<const char *>(bytes.data()),
                                                      static_cast<std::streamsize>(bytes.size()));
    ++gFiles;
}

Uuid uuid(uint8_t k) {
    Uuid u;
    for (size_t i = 0; i < u.bytes.size(); ++i) u.bytes[i] = static_cast<uint8_t>(0x11 * k + 7 * i);
    return u;
}

NetAddr addr(uint8_t host, uint16_t port) {
    NetAddr a;
    a.ip = {10, 0, 0, host};
    a.port = port;
    return a;
}

NetAddr addr6(uint16_t port) {
    NetAddr a;
    a.family = 6;
    a.ip = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    a.port = port;
    return a;
}

std::vector<RingMember> ring(size_t n) {
    std::vector<RingMember> r;
    for (size_t i = 0; i < n; ++i) r.push_back({uuid(static_cast<uint8_t>(i + 1)), i == 2 ? addr6(48149) : addr(static_cast<uint8_t>(i + 2), 48149)});
    return r;
}

Digest digestOf(uint8_t k) {
    Digest d{};
    for (size_t i = 0; i < d.size(); ++i) d[i] = static_cast<uint8_t>(k * 31 + i);
    return d;
}

// ---- control messages: u16 type, then the payload
void control(const std::string &name, const ControlMessage &m) {
    std::vector<uint8_t> frame;
    encodeFrame(m, frame);
    std::vector<uint8_t> in(frame.begin() + 4, frame.end());  // drop the u32 length: type, payload
    std::string error;
    require(decodeMessage(loadLE16(in.data()), in.data() + 2, in.size() - 2, &error).has_value(), name + ": " + error);
    write("fuzz_control", std::to_string(m.index()) + "-" + messageName(m) + "-" + name, in);
}

void controlMessages() {
    const WorldInfo world{3, 3, 1, 3};
    const CollectiveDesc desc{1u << 20, pcclFloat, pcclSum, 0, 0, 0, 0, 0, 0, {}};
    const CollectiveDesc quant{1u << 20, pcclFloat, pcclAvg, pcclUint8, pcclQuantMinMax, 1u << 20, 2, 0, 3, {5, 0, 7}};
    // One default of each message, then real ones.
    std::vector<ControlMessage> defaults;
    [&]<size_t... I>(std::index_sequence<I...>) {
        (defaults.push_back(ControlMessage{std::in_place_index<I>}), ...);
    }(std::make_index_sequence<std::variant_size_v<ControlMessage>>{});
    for (auto &m : defaults) control("default", m);

    control("join", Hello{kMagic, kProtocolVersion, 0, 48149, uuid(1), 0});
    control("deadline", Hello{kMagic, kProtocolVersion, 2, 50000, uuid(2), 3000});
    control("nat", Hello{kMagic, kProtocolVersion, 0, 7001, uuid(3), 0, NetAddr{4, {203, 0, 113, 7}, 7101}});
    control("old-version", Hello{kMagic, 4, 0, 48149, uuid(1), 0});
    control("ok", LinksReady{7, true, ""});
    control("failed", LinksReady{7, false, "connect to 10.0.0.3:48149: connection refused", uuid(3)});
    control("sum", CollectiveInit{1, desc});
    control("quantized", CollectiveInit{42, quant});
    control("ok", CollectiveDone{1, 17, true, "", 0, 1250000000});
    control("lost", CollectiveDone{1, 17, false, "peer 3b1f... closed the connection", pcclRankConnectionLost, 0});
    std::array<uint8_t, 32> key{};
    for (size_t i = 0; i < key.size(); ++i) key[i] = static_cast<uint8_t>(0x3c ^ (i * 29));
    control("welcome", Welcome{uuid(1), addr(2, 40312), {}});
    control("welcome-v6-secret", Welcome{uuid(1), addr6(40312), key});
    control("version", Reject{pcclInvalidUsage, "protocol version 4 is not 5"});
    control("ring", TopologyUpdate{8, ring(3), world});
    control("ok", TopologyDone{8, true, ""});
    control("failed", TopologyDone{8, false, "peer 2 could not reach its successor"});
    control("pending", PeersPendingResult{true});
    control("failed", OptimizeTopologyResult{false, "a probe round timed out"});
    control("leave", WorldUpdate{WorldInfo{2, 2, 1, 2}, ring(2)});
    control("ring", CollectiveCommence{1, 17, ring(3)});
    control("committed", CollectiveCommitted{1, 17});
    control("lost", CollectiveAborted{1, 17, pcclRankConnectionLost, "peer lost", {uuid(3)}});
    control("mismatch", CollectiveAborted{5, 0, pcclMismatch, "descriptions differ: count 1048576 vs 1048577", {}});
    control("kicked", Kicked{"heartbeat timeout after 10000 ms"});
    EntryDesc weights{"weights", pcclFloat, 3u << 20, false, digestOf(1), {digestOf(2), digestOf(3), digestOf(4)}};
    EntryDesc step{"step", pcclUint64, 1, true, digestOf(5), {digestOf(6)}};
    control("two-entries", SharedStateSync{12, 0, true, {weights, step}});
    control("first", SharedStateSync{0, 1, false, {weights}});
    SharedStatePlan plan{3, 12, ring(3), {ChunkFetch{0, {0, 2}, {digestOf(2), digestOf(4)}, {0, 2}}}, {1}};
    control("receive-serve", plan);
    control("ok", SharedStateDone{3, true, "", 0});
    control("failed", SharedStateDone{3, false, "digest mismatch", pcclRankConnectionLost});
    control("committed", SharedStateCommitted{3, 12});
    control("lost", SharedStateAborted{3, pcclRankConnectionLost, "no source left", {uuid(2)}});
    control("timeout", VoteFailed{static_cast<uint8_t>(VoteKind::Topology), pcclTimeout, "vote deadline of 30000 ms"});
    control("lost", SharedStateSourceLost{3, uuid(2)});
    control("round", BandwidthProbe{4, 99, ring(3), 2000});
    control("rates", BandwidthReport{4, {uuid(2), uuid(3)}, {117000000, 0}});
    control("await", CollectiveAwait{42});
    control("two", PeerKeys{{PeerKey{uuid(2), key}, PeerKey{uuid(3), key}}});
}

// ---- data plane: selector byte, then the bytes
void dataWire() {
    using namespace transport;
    SameHostIdentity id;
    id.pid = 4242;
    id.netns = 4026531840ull;
    id.tokenAddress = 0x00007f12345678c0ull;
    for (size_t i = 0; i < id.token.size(); ++i) id.token[i] = static_cast<uint8_t>(0x5a ^ (i * 13));
    auto add = [](const std::string &name, uint8_t sel, const uint8_t *b, size_t n) {
        std::vector<uint8_t> in{sel};
        in.insert(in.end(), b, b + n);
        write("fuzz_data_wire", name, in);
    };
    for (bool offer : {false, true}) {
        const auto h = encodeDataHello(DataHello::make(uuid(1), uuid(2), id, offer));
        require(decodeDataHello(h.data(), h.size()).has_value(), "hello");
        add(offer ? "hello-same-host" : "hello", 0, h.data(), h.size());
    }
    for (int k = 0; k < 3; ++k) {
        DataAck a;
        a.accepted = k > 0;
        a.same_host = k == 2;
        const auto b = encodeDataAck(a);
        require(decodeDataAck(b.data(), b.size()).has_value(), "ack");
        add("ack-" + std::to_string(k), 1, b.data(), b.size());
    }
    // Frames of an all-reduce (phases 0, 1), a shared-state transfer (2, 3, 4) and a probe (7).
    struct F {
        const char *name;
        SegmentHeader s;
    };
    const F frames[] = {{"reduce-scatter", {17, 262144, 1u << 20, 0}}, {"all-gather", {17, 524288, 1u << 20, 1}},
                        {"chunk", {3, (uint64_t{1} << 40) | 2, 4u << 20, 2}},  {"request", {3, 2, 0, 3}},
                        {"zstd", {3, 0, 181234, 4}},                         {"probe", {99, 0, 32768, 7}}};
    for (const auto &f : frames)
        for (bool sameHost : {false, true})
            for (bool byRef : {false, true}) {
                if (byRef && (!sameHost || f.s.bytes < kRefMinBytes)) continue;
                uint8_t b[kMaxFrameHeaderBytes];
                encodeFrameHeader(FrameHeader{f.s, byRef, byRef ? 0x00007f0012340000ull : 0}, sameHost, b);
                require(decodeFrameHeader(b, sameHost).has_value(), "frame header");
                add(std::string("frame-") + f.name + (sameHost ? "-same-host" : "") + (byRef ? "-by-ref" : ""),
                    sameHost ? 3 : 2, b, frameHeaderBytes(sameHost));
            }
}

// ---- shared-state transfer: a TCP frame header, then the payload
void transfer() {
    using namespace shared_state;
    const auto entries = fuzz::transferEntries();
    auto frame = [](const std::string &name, uint64_t offset, uint8_t phase, const std::vector<uint8_t> &payload) {
        transport::FrameHeader f;
        f.segment = {3, offset, static_cast<uint32_t>(payload.size()), phase};
        std::vector<uint8_t> in(transport::kSegmentHeaderBytes);
        transport::encodeFrameHeader(f, false, in.data());
        in.insert(in.end(), payload.begin(), payload.end());
        write("fuzz_transfer", name, in);
    };
    for (uint32_t e = 0; e < entries.size(); ++e)
        for (uint32_t c = 0; c < chunkCount(entries[e].bytes); ++c) {
            transport::SegmentHeader h{3, chunkKey(e, c), 0, kRequest};
            require(parseRequest(h, entries).has_value(), "request");
            frame("request-" + entries[e].name + "-" + std::to_string(c), chunkKey(e, c), kRequest, {});
        }
    // Chunks as a real entry holds them: float weights, a step counter.
    std::mt19937 rng(5);
    std::normal_distribution<float> d(0.0f, 0.02f);
    for (uint32_t e : {0u, 1u, 3u}) {
        const uint32_t c = e == 3 ? 2 : 0;
        const size_t bytes = std::min<size_t>(kStateChunkBytes, entries[e].bytes - size_t{c} * kStateChunkBytes);
        std::vector<uint8_t> plain(bytes);
        for (size_t i = 0; i + 4 <= bytes; i += 4) {
            // Weights rounded to a coarse grid, as after a few optimizer steps in low precision: compressible.
            const float w = std::round(d(rng) * 256) / 256;
            std::memcpy(plain.data() + i, &w, 4);
        }
        frame("chunk-" + entries[e].name + "-" + std::to_string(c), chunkKey(e, c), kChunkRaw, plain);
        std::vector<uint8_t> packed;
        if (compressIfSmaller(plain.data(), bytes, 3, &packed)) {
            std::vector<uint8_t> back(bytes);
            require(decompressExactly(packed.data(), packed.size(), back.data(), bytes).ok() && back == plain, "zstd");
            frame("zstd-" + entries[e].name + "-" + std::to_string(c), chunkKey(e, c), kChunkZstd, packed);
        }
    }
}

// ---- quantized segments: mode byte, then a wire segment (bit 3 clear) or values (set)
void quantized() {
    using namespace collectives;
    std::mt19937 rng(9);
    std::normal_distribution<double> d(0.0, 1e-3);
    for (uint8_t mode = 0; mode < 8; ++mode) {
        QuantSpec s;
        s.algorithm = mode & 1 ? pcclQuantZeroPointScale : pcclQuantMinMax;
        s.quantized = mode & 2 ? pcclUint16 : pcclUint8;
        s.acc = mode & 4 ? pcclDouble : pcclFloat;
        const size_t n = 48, acc = s.acc == pcclDouble ? 8 : 4;
        std::vector<uint8_t> values(n * acc);
        for (size_t i = 0; i < n; ++i) {
            const double v = i == 7 ? NAN : i == 11 ? INFINITY : d(rng);
            if (acc == 8) std::memcpy(values.data() + i * 8, &v, 8);
            else {
                const float f = static_cast<float>(v);
                std::memcpy(values.data() + i * 4, &f, 4);
            }
        }
        std::vector<uint8_t> wire(quantizedBytes(s, n)), out(n * acc);
        quantize(s, values.data(), n, wire.data());
        require(dequantize(s, wire.data(), n, out.data()), "quantized segment");
        std::vector<uint8_t> in{mode};
        in.insert(in.end(), wire.begin(), wire.end());
        write("fuzz_quantize", "segment-" + std::to_string(mode), in);
        in = {static_cast<uint8_t>(mode | 8)};
        in.insert(in.end(), values.begin(), values.end());
        write("fuzz_quantize", "values-" + std::to_string(mode), in);
    }
}

// ---- authentication: selector byte, then the handshake message(s) or a record
void handshake() {
    using namespace security;
    Key key{};
    for (size_t i = 0; i < key.size(); ++i) key[i] = static_cast<uint8_t>(0xa5 ^ i);
    auto add = [](const std::string &name, uint8_t sel, std::vector<uint8_t> bytes) {
        bytes.insert(bytes.begin(), sel);
        write("fuzz_handshake", name, bytes);
    };
    for (auto kind : {ConnKind::Control, ConnKind::Data})
        for (auto suite : {Suite::Aes256Gcm, Suite::ChaCha20Poly1305})
            for (auto mode : {Mode::Encrypt, Mode::Integrity}) {
                const bool data = kind == ConnKind::Data;
                ClientHandshake c(key, kind, suite, mode, data ? uuid(1) : Uuid{}, data ? uuid(2) : Uuid{});
                std::string error;
                const auto hello = decodeClientHello(c.hello().data(), c.hello().size(), &error);
                require(hello.has_value(), "client hello: " + error);
                ServerHandshake srv(key, *hello);
                const auto finish = c.onServerHello(srv.reply().data(), srv.reply().size(), &error);
                require(finish && srv.onFinish(finish->data(), finish->size(), &error), "handshake: " + error);
                const std::string name = std::string(data ? "data-" : "control-") + suiteName(suite) + "-" + modeName(mode);
                add("client-hello-" + name, 0, {c.hello().begin(), c.hello().end()});
                if (kind == ConnKind::Control && mode == Mode::Encrypt) {
                    add("server-hello-" + name, 1, {srv.reply().begin(), srv.reply().end()});
                    add("answer-" + name, 2, {srv.reply().begin(), srv.reply().end()});
                }
                std::vector<uint8_t> both(c.hello().begin(), c.hello().end());
                both.insert(both.end(), finish->begin(), finish->end());
                add("finish-" + name, 3, both);
            }
    for (auto status : {ServerStatus::NoSecret, ServerStatus::Refused}) {
        const auto r = ServerHandshake::refusal(status);
        add("refusal-" + std::to_string(static_cast<int>(status)), 1, {r.begin(), r.end()});
        add("answer-refusal-" + std::to_string(static_cast<int>(status)), 2, {r.begin(), r.end()});
    }
    // Records: a control frame sealed with its header as AAD, in each suite and mode.
    std::vector<uint8_t> frame;
    encodeFrame(Kicked{"heartbeat timeout after 10000 ms"}, frame);
    for (uint8_t sm = 0; sm < 4; ++sm) {
        const Suite suite = sm & 1 ? Suite::ChaCha20Poly1305 : Suite::Aes256Gcm;
        const Mode mode = sm & 2 ? Mode::Integrity : Mode::Encrypt;
        std::vector<uint8_t> in{sm, static_cast<uint8_t>(kFrameHeaderBytes)};
        in.insert(in.end(), frame.begin(), frame.begin() + kFrameHeaderBytes);
        std::vector<uint8_t> body(frame.begin() + kFrameHeaderBytes, frame.end()), sealed(body.size());
        uint8_t tag[kTagBytes];
        RecordCipher(suite, mode, key, true).seal({frame.data(), kFrameHeaderBytes}, body.data(), sealed.data(), body.size(), tag);
        in.insert(in.end(), sealed.begin(), sealed.end());
        in.insert(in.end(), tag, tag + kTagBytes);
        add(std::string("record-") + suiteName(suite) + "-" + modeName(mode), 4, in);
    }
}

} // namespace

int main(int argc, char **argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    gRoot = argv[1];
    controlMessages();
    dataWire();
    transfer();
    quantized();
    handshake();
    std::printf("pccl_fuzz_corpus: %d files under %s\n", gFiles, gRoot.c_str());
    return gOk ? 0 : 1;
}
