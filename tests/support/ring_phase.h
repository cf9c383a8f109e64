// Reading the phase of a 3-peer ring all-reduce from one peer's in-place f32 sum buffer.
//
// Shared by the pccl_test_peer helper (which stops itself when its buffer shows a phase) and the
// suite (which checks the exact phase on a copy of the stopped helper's memory before killing it).
// It relies on the ring engine's documented memory use (collectives/allreduce_ring.h): chunk c of
// n is owned by ring position c; partials are received straight into the output buffer and
// accumulated there; the owner writes the final value; all-gather data lands in the output.
//
// Every peer's element j starts as value + j % 3, with distinct values (e.g. 100 for the
// observed peer, 1 and 10 for the others), so each element of the observed peer (at ring
// position v, unknown to it) is in one of these states:
//   chunk v-1: Input -> Final (all-gather received)
//   chunk v:   Input -> RawPair (sum of the two others received) -> Final (this peer finished it)
//   chunk v+1: Input -> Raw (the predecessor's input received) -> Accumulated (own input added,
//              forwarded) -> Final (all-gather received)
#pragma once

#include <array>
#include <cstddef>
#include <sstream>
#include <string>

namespace pccl_test::ring_phase {

enum class Cell { Input, Raw, Accumulated, RawPair, Final, Other };

struct Values {
    int self = 100;                 // the observed peer's value
    std::array<int, 2> others{1, 10};
};

inline Cell classify(float v, size_t j, const Values &x) {
    const int k = static_cast<int>(j % 3);
    const int o0 = x.others[0], o1 = x.others[1];
    auto is = [v](int want) { return v == static_cast<float>(want); };
    if (is(x.self + k)) return Cell::Input;
    if (is(x.self + o0 + o1 + 3 * k)) return Cell::Final;
    if (is(o0 + o1 + 2 * k)) return Cell::RawPair;
    if (is(o0 + k) || is(o1 + k)) return Cell::Raw;
    if (is(o0 + x.self + 2 * k) || is(o1 + x.self + 2 * k)) return Cell::Accumulated;
    return Cell::Other;
}

struct ChunkTally {
    size_t input = 0, raw = 0, accumulated = 0, raw_pair = 0, final_ = 0, other = 0, total = 0;
    void add(Cell c) {
        ++total;
        switch (c) {
            case Cell::Input: ++input; break;
            case Cell::Raw: ++raw; break;
            case Cell::Accumulated: ++accumulated; break;
            case Cell::RawPair: ++raw_pair; break;
            case Cell::Final: ++final_; break;
            case Cell::Other: ++other; break;
        }
    }
};

using Tally = std::array<ChunkTally, 3>;

// Chunk boundaries as the engine cuts them for a ring of 3.
inline size_t chunkBegin(size_t count, size_t c) { return count * c / 3; }

// Tally every `stride`-th element (stride 1: all of them) of a buffer of `count` elements.
// `load(j)` returns element j (the helper reads a buffer the library writes concurrently).
template <class Load>
Tally tally(size_t count, size_t stride, const Values &x, Load load) {
    Tally t;
    for (size_t c = 0; c < 3; ++c)
        for (size_t j = chunkBegin(count, c); j < chunkBegin(count, c + 1); j += stride) t[c].add(classify(load(j), j, x));
    return t;
}

inline size_t sum(const Tally &t, size_t ChunkTally::*field) { return t[0].*field + t[1].*field + t[2].*field; }

// Reduce-scatter, under way: this peer has reduced partials (accumulated its input into the
// predecessor's, or received the pair sum of its own chunk) and holds no final value yet: it has
// not finished its own chunk nor received any all-gather data, so its successor still waits for
// partials it forwards.
inline bool inReduceScatter(const Tally &t) {
    return sum(t, &ChunkTally::other) == 0 && sum(t, &ChunkTally::final_) == 0 &&
           sum(t, &ChunkTally::accumulated) + sum(t, &ChunkTally::raw_pair) > 0;
}

// All-gather: every peer finished its reduce-scatter and the all-gather is under way. Seen
// here as: this peer finished its own chunk v (all final), and chunk v+1, which it accumulated
// and forwarded, is being overwritten by its all-gather (both accumulated and final values):
// so its owner (the successor) finished it, and the predecessor, which forwards it, finished
// its own. No raw data anywhere.
inline bool inAllGather(const Tally &t) {
    if (sum(t, &ChunkTally::other) || sum(t, &ChunkTally::raw) || sum(t, &ChunkTally::raw_pair)) return false;
    for (size_t c = 0; c < 3; ++c) {
        const ChunkTally &next = t[c], &own = t[(c + 2) % 3];
        if (next.accumulated > 0 && next.final_ > 0 && own.final_ == own.total) return true;
    }
    return false;
}

inline std::string describe(const Tally &t) {
    std::ostringstream os;
    for (size_t c = 0; c < 3; ++c)
        os << (c ? "; " : "") << "chunk " << c << ": " << t[c].input << " input, " << t[c].raw << " raw, "
           << t[c].accumulated << " accumulated, " << t[c].raw_pair << " raw pair, " << t[c].final_ << " final, "
           << t[c].other << " other";
    return os.str();
}

} // namespace pccl_test::ring_phase
