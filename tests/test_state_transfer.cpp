// The shared-state transfer of one round between real data planes on 127.0.0.1 (no master):
// striping over sources, verification and refetch, a lost source, compression.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstring>
#include <future>
#include <memory>
#include <random>
#include <vector>

#include "shared_state/hashing.h"
#include "shared_state/transfer.h"
#include "util/bytes.h"

#include <xxhash.h>  // the reference the digest is checked against

using namespace pccl;
using pccl::protocol::kStateChunkBytes;
using pccl::shared_state::StateTransfer;

namespace {

struct Node {
    transport::DataPlane plane{1};
    Uuid id = Uuid::random();
    Node() {
        plane.setSelf(id);
        REQUIRE(plane.listen(0).ok());
    }
    protocol::RingMember member() const {
        protocol::RingMember m;
        m.uuid = id;
        m.data_addr.family = 4;
        m.data_addr.ip = {127, 0, 0, 1};
        m.data_addr.port = plane.port();
        return m;
    }
};

std::vector<uint8_t> pattern(size_t bytes, uint32_t seed, bool compressible = false) {
    std::vector<uint8_t> v(bytes);
    std::mt19937 rng(seed);
    for (size_t i = 0; i < bytes; ++i) v[i] = compressible && (i / 4096) % 2 ? 0 : static_cast<uint8_t>(rng());
    return v;
}

// One participant of the round: its transfer and the outcome reported through onFinished.
struct Party {
    std::shared_ptr<StateTransfer> transfer;
    std::promise<Status> finished;
    std::future<Status> outcome = finished.get_future();
    Party(Node &node, uint64_t seq, std::vector<shared_state::LocalEntry> entries, protocol::SharedStatePlan plan,
          shared_state::TransferOptions options = {}) {
        plan.seq = seq;
        transfer = std::make_shared<StateTransfer>(node.plane, std::move(entries), std::move(plan), options,
                                                   [this](Status st) { finished.set_value(st); });
        node.plane.registerSink(seq, transfer);
    }
    Status wait() {
        REQUIRE(outcome.wait_for(std::chrono::seconds(20)) == std::future_status::ready);
        return outcome.get();
    }
    // As on commit or abort: stop and wait until no I/O touches the buffers.
    void drain() {
        std::promise<void> quiet;
        transfer->abort("round over", [&] { quiet.set_value(); });
        REQUIRE(quiet.get_future().wait_for(std::chrono::seconds(20)) == std::future_status::ready);
    }
};

// The receiver's plan: every chunk of every entry of `good`, from `sources` (peer indices).
protocol::SharedStatePlan fetchAll(const std::vector<std::vector<uint8_t> *> &good, std::vector<protocol::RingMember> peers) {
    protocol::SharedStatePlan plan;
    plan.peers = std::move(peers);
    for (uint32_t e = 0; e < good.size(); ++e) {
        auto h = shared_state::hashEntry(good[e]->data(), good[e]->size());
        protocol::ChunkFetch f;
        f.entry = e;
        for (uint32_t c = 0; c < h.chunks.size(); ++c) {
            f.chunks.push_back(c);
            f.digests.push_back(h.chunks[c]);
        }
        for (uint32_t s = 0; s < plan.peers.size(); ++s) f.sources.push_back(s);
        plan.receive.push_back(f);
    }
    return plan;
}

protocol::SharedStatePlan serveTo(const Node &receiver) {
    protocol::SharedStatePlan plan;
    plan.peers = {receiver.member()};
    plan.serve = {0};
    return plan;
}

} // namespace

TEST_CASE("state transfer: chunks are spread over every source, verified, and land in the receiver's buffers",
          "[shared_state][transfer]") {
    Node r, a, b;
    auto w = pattern(10 * kStateChunkBytes + 12345, 1), bias = pattern(777, 2);  // 11 chunks, 1 chunk
    std::vector<uint8_t> w2 = w, bias2 = bias, wOut(w.size()), biasOut(bias.size());
    Party sa(a, 5, {{"w", w.data(), w.size()}, {"bias", bias.data(), bias.size()}}, serveTo(r));
    Party sb(b, 5, {{"w", w2.data(), w2.size()}, {"bias", bias2.data(), bias2.size()}}, serveTo(r));
    Party recv(r, 5, {{"w", wOut.data(), wOut.size()}, {"bias", biasOut.data(), biasOut.size()}},
               fetchAll({&w, &bias}, {a.member(), b.member()}));
    for (auto *p : {&sa, &sb, &recv}) p->transfer->start();
    CHECK(sa.wait().ok());  // a source has nothing to wait for
    const Status st = recv.wait();
    REQUIRE(st.ok());
    CHECK(wOut == w);
    CHECK(biasOut == bias);
    CHECK(recv.transfer->rxBytes() == w.size() + bias.size());
    CHECK(sa.transfer->txBytes() > 0);
    CHECK(sb.transfer->txBytes() > 0);
    CHECK(sa.transfer->txBytes() + sb.transfer->txBytes() == w.size() + bias.size());
    for (auto *p : {&sa, &sb, &recv}) p->drain();
}

TEST_CASE("state transfer: chunks from a source with corrupted data fail verification and are fetched again from "
          "another; the result is exact", "[shared_state][transfer]") {
    Node r, bad, good;
    auto w = pattern(6 * kStateChunkBytes, 3);
    auto corrupt = w;
    for (size_t c = 0; c < 6; ++c) corrupt[c * kStateChunkBytes + 17] ^= 0x40;  // one bit per chunk
    std::vector<uint8_t> out(w.size());
    Party sBad(bad, 9, {{"w", corrupt.data(), corrupt.size()}}, serveTo(r));
    Party sGood(good, 9, {{"w", w.data(), w.size()}}, serveTo(r));
    Party recv(r, 9, {{"w", out.data(), out.size()}}, fetchAll({&w}, {bad.member(), good.member()}));
    for (auto *p : {&sBad, &sGood, &recv}) p->transfer->start();
    REQUIRE(recv.wait().ok());
    CHECK(out == w);
    CHECK(sBad.transfer->txBytes() > 0);                // it was asked, and served bad data
    CHECK(recv.transfer->rxBytes() > w.size());         // those chunks came twice
    for (auto *p : {&sBad, &sGood, &recv}) p->drain();
}

TEST_CASE("state transfer: when every source serves bad data the round fails and names the chunk",
          "[shared_state][transfer]") {
    Node r, a;
    auto w = pattern(kStateChunkBytes + 10, 4);
    auto corrupt = w;
    corrupt[3] ^= 1;
    std::vector<uint8_t> out(w.size(), 0);
    Party sa(a, 2, {{"w", corrupt.data(), corrupt.size()}}, serveTo(r));
    Party recv(r, 2, {{"w", out.data(), out.size()}}, fetchAll({&w}, {a.member()}));
    sa.transfer->start();
    recv.transfer->start();
    const Status st = recv.wait();
    CHECK_FALSE(st.ok());
    CHECK(st.message().find("no source left for chunk 0 of entry 'w'") != std::string::npos);
    CHECK(st.message().find("failed verification") != std::string::npos);
    // Only verified chunks reach the user's buffer: chunk 0 never did.
    CHECK(std::all_of(out.begin(), out.begin() + kStateChunkBytes, [](uint8_t x) { return x == 0; }));
    for (auto *p : {&sa, &recv}) p->drain();
}

TEST_CASE("state transfer: a source lost mid-transfer is dropped and the receiver completes from the other",
          "[shared_state][transfer]") {
    Node r, silent, good;
    auto w = pattern(8 * kStateChunkBytes, 5);
    std::vector<uint8_t> out(w.size());
    // `silent` never takes part (its requests park there unanswered), like a source that hung
    // and was then removed by the master.
    Party sGood(good, 4, {{"w", w.data(), w.size()}}, serveTo(r));
    Party recv(r, 4, {{"w", out.data(), out.size()}}, fetchAll({&w}, {silent.member(), good.member()}));
    sGood.transfer->start();
    recv.transfer->start();
    CHECK(recv.outcome.wait_for(std::chrono::milliseconds(500)) == std::future_status::timeout);
    recv.transfer->sourceLost(silent.id);
    REQUIRE(recv.wait().ok());
    CHECK(out == w);
    CHECK(sGood.transfer->txBytes() == w.size());
    for (auto *p : {&sGood, &recv}) p->drain();
}

TEST_CASE("state transfer: compressible chunks travel zstd-compressed and arrive exact", "[shared_state][transfer]") {
    Node r, a;
    auto w = pattern(3 * kStateChunkBytes + 100, 6, /*compressible=*/true);
    auto noise = pattern(kStateChunkBytes, 7);  // incompressible: sent raw
    std::vector<uint8_t> out(w.size()), noiseOut(noise.size());
    shared_state::TransferOptions zstd;
    zstd.compressionLevel = 3;
    Party sa(a, 6, {{"w", w.data(), w.size()}, {"noise", noise.data(), noise.size()}}, serveTo(r), zstd);
    Party recv(r, 6, {{"w", out.data(), out.size()}, {"noise", noiseOut.data(), noiseOut.size()}},
               fetchAll({&w, &noise}, {a.member()}));
    sa.transfer->start();
    recv.transfer->start();
    REQUIRE(recv.wait().ok());
    CHECK(out == w);
    CHECK(noiseOut == noise);
    CHECK(recv.transfer->rxBytes() < w.size() * 3 / 4 + noise.size());
    CHECK(recv.transfer->rxBytes() >= noise.size());
    for (auto *p : {&sa, &recv}) p->drain();
}

// The digest is part of the protocol: peers on CPUs with and without AVX2 must agree. Compare with
// libxxhash's portable XXH3-128 over every size class of XXH3 (0, 1-3, 4-8, 9-16, 17-128,
// 129-240, long with and without a partial stripe and block) at several misalignments.
TEST_CASE("state transfer: the digest is libxxhash's XXH3-128 at every size and alignment", "[shared_state][hashing]") {
    auto data = pattern((1 << 20) + 200, 11);
    for (size_t shift : {0, 1, 8, 16, 32, 63})
        for (size_t n : {0, 1, 3, 4, 8, 9, 16, 17, 128, 129, 240, 241, 1023, 1024, 65536 + 5, (1 << 20) + 131}) {
            const uint8_t *p = data.data() + shift;
            const XXH128_hash_t ref = XXH3_128bits(p, n);
            protocol::Digest want;
            storeLE64(want.data(), ref.low64);
            storeLE64(want.data() + 8, ref.high64);
            INFO("shift " << shift << ", " << n << " bytes");
            CHECK(shared_state::digest(p, n) == want);
        }
}

TEST_CASE("state transfer: hashing is the same whatever the threads, alignment or size", "[shared_state][hashing]") {
    auto data = pattern(5 * kStateChunkBytes + 7, 8);
    for (size_t shift : {0, 1, 3}) {
        const uint8_t *p = data.data() + shift;
        const size_t n = data.size() - shift;
        auto one = shared_state::hashEntries({{p, n}}, 1);
        auto many = shared_state::hashEntries({{p, n}, {p, 0}, {p, 5}}, 4);
        CHECK(one[0].digest == many[0].digest);
        CHECK(one[0].chunks == many[0].chunks);
        CHECK(many[0].chunks.size() == 6);
        CHECK(many[1].chunks.empty());
        CHECK(many[2].chunks.size() == 1);
        CHECK(many[0].digest == shared_state::combineChunks(many[0].chunks));
        CHECK(many[2].chunks[0] == shared_state::digest(p, 5));
    }
    // A one-byte change changes exactly one chunk digest.
    auto changed = data;
    changed[2 * kStateChunkBytes + 9] ^= 1;
    auto h0 = shared_state::hashEntry(data.data(), data.size()), h1 = shared_state::hashEntry(changed.data(), changed.size());
    CHECK(h0.digest != h1.digest);
    size_t differ = 0;
    for (size_t c = 0; c < h0.chunks.size(); ++c) differ += h0.chunks[c] != h1.chunks[c];
    CHECK(differ == 1);
    CHECK(h0.chunks[2] != h1.chunks[2]);
}
