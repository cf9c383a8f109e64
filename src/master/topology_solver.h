// The ring order for the ring all-reduce, as a pure function of a measured bandwidth matrix (no
// sockets, no threads; the only clock read is the heuristic's budget check).
//
// Input. bw[i][j] is the bandwidth (bytes/s) from peer i to peer j, measured, possibly
// asymmetric. A link that is missing (short row), 0, negative or not finite is unknown and
// counts as 0; the diagonal is ignored. Data moves order[k] -> order[k+1] and order.back() ->
// order.front().
//
// Objective. A pipelined ring runs at the speed of its slowest hop, so rings compare
// lexicographically by (1) the bottleneck, the smallest hop bandwidth, larger is better, then
// (2) the sum of the hop bandwidths, larger is better: among rings equally fast in steady state,
// prefer the one whose other hops are fast (a margin when a link degrades, and a quicker
// pipeline fill). Sums within a relative 1e-12 count as equal (rounding noise).
//
// Exact, N <= kExactLimit: two Held-Karp passes over subsets of peers, O(2^N N^2) time and
// O(2^N N) doubles each (N = 12: ~0.5 M steps, 180 KiB, about a millisecond). The first finds
// the best bottleneck B (max-min composes along a path, so the DP is exact); the second
// maximises the sum over rings that use only links >= B (max-sum alone would not compose with
// a bottleneck tie-break, hence two passes). The order is read forward from peer 0, each time
// taking the smallest next peer that keeps the optimum, so among equally good rings the
// lexicographically smallest order wins. The budget is not used.
//
// Heuristic, N > kExactLimit: greedy construction (from peer 0, always to the unvisited peer with
// the fastest link; ties to the lowest index), then local search in sweeps over every 2-opt move
// (reverse a segment) and Or-opt move (move a segment of 1-3 peers elsewhere), O(N^2) moves per
// sweep, each checked in O(1): a move adding a hop slower than the bottleneck is rejected, one
// raising the sum is taken, and the ring is re-evaluated in O(N) only when a move removes every
// bottleneck hop; improving moves are applied as found, until a sweep finds none. Then iterated
// local search: kicks (swap two adjacent segments, a double bridge) drawn from a fixed-seed
// std::mt19937, each followed by the local search, keeping the best ring. It stops after
// kKicksPerPeer * N kicks or at the budget, checked between sweeps (so it overruns by at most
// one sweep: well under 1 ms at N = 256, ~10 ms at N = 512). Never worse than the greedy ring.
// The result is deterministic unless the budget cut the search (`truncated`; the result then
// depends on machine speed). Measured on the 2-core VM, random matrices: the full search takes
// 20-60 ms at N = 32 and 0.3-0.5 s at N = 64; with a 50 ms budget N = 64 reaches a bottleneck
// within ~5% of a simple upper bound (min over peers of their fastest in- and out-link), and
// even a 0.1 ms budget (the first sweeps) gets within ~15%.
//
// Rotation does not change a ring: every returned order starts at its smallest peer index
// (peer 0 for solveRing). Ties never depend on container iteration order: only vectors, scanned
// by index.
#pragma once
#include <chrono>
#include <cstddef>
#include <map>
#include <utility>
#include <vector>

namespace pccl::master {

using BandwidthMatrix = std::vector<std::vector<double>>;

inline constexpr size_t kExactLimit = 12;    // solveRing is exact up to this many peers
inline constexpr size_t kKicksPerPeer = 16;  // heuristic: iterated-local-search kicks per peer

struct RingSolution {
    std::vector<size_t> order;  // a permutation of 0..N-1 starting at 0
    double bottleneck = 0;      // ringBottleneck(bw, order)
    bool exact = false;         // proven optimal (N <= kExactLimit)
    bool truncated = false;     // the heuristic stopped at the budget, not at its own limit
};

// The best ring over all N = bw.size() peers (see above). `budget` bounds the heuristic only.
RingSolution solveRing(const BandwidthMatrix &bw, std::chrono::milliseconds budget);

// Keeps an existing ring across joins and leaves instead of re-solving: `current` is the previous
// order (indices into bw, the departed already removed), `joiners` the new peers (distinct, not in
// current). Repeatedly inserts the (joiner, position) pair that leaves the best ring by the
// objective above (cheapest insertion; ties: earliest joiner in `joiners`, then earliest position
// in `current`). The existing peers keep their cyclic order. With `current` empty the first joiner
// starts the ring. Indices beyond bw are peers with unknown links. O(J^2 N + N^2) for J joiners
// and N peers in the result (each candidate is scored in O(1) from the ring's two slowest hops).
std::vector<size_t> insertJoiners(const BandwidthMatrix &bw, std::vector<size_t> current,
                                  const std::vector<size_t> &joiners);

// The known links of n peers, for runs too large for a dense matrix: (from, to) -> bytes/s, by
// the rules of bw[from][to] (an absent link is unknown). The master of a thousand peers mostly
// knows their ring hops, O(N) links, where a dense matrix would be O(N^2).
using LinkMap = std::map<std::pair<size_t, size_t>, double>;

// insertJoiners over the n peers of `links`: the same ring as with the dense matrix of these
// links. Joiners with no known link at all score the same at every position, so only the first
// of them is scored in each step: O(J N log L) when none is measured, instead of O(J^2 N).
std::vector<size_t> insertJoiners(const LinkMap &links, size_t n, std::vector<size_t> current,
                                  const std::vector<size_t> &joiners);

// The smallest hop bandwidth of the ring; +infinity for fewer than two peers (no hop limits it).
double ringBottleneck(const BandwidthMatrix &bw, const std::vector<size_t> &order);

} // namespace pccl::master
