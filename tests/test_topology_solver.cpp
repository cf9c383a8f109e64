// The ring-order solver (master/topology_solver.h): exactness against brute force, quality and
// time on larger inputs, determinism, cheapest insertion of joiners, and unknown links.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <utility>

#include "master/topology_solver.h"

using namespace pccl::master;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Continuous bandwidths in [1e8, 1e10), or with `levels` > 0 integers in [0, levels) (0 = unknown),
// which makes many rings tie.
BandwidthMatrix randomMatrix(size_t n, uint32_t seed, int levels = 0) {
    std::mt19937 rng(seed);
    BandwidthMatrix bw(n, std::vector<double>(n, 0));
    for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < n; ++j)
            if (i != j) bw[i][j] = levels > 0 ? double(rng() % levels) : 1e8 + double(rng() % 9900) * 1e6;
    return bw;
}

double ringSum(const BandwidthMatrix &bw, const std::vector<size_t> &r) {
    double s = 0;
    for (size_t i = 0; i < r.size(); ++i) s += bw[r[i]][r[(i + 1) % r.size()]];
    return s;
}

struct Best {
    double bottleneck = -1, sum = 0;
    std::vector<size_t> order;
};

// Every ring starting at 0, in lexicographic order; the first best (bottleneck, then sum) is kept,
// i.e. the lexicographically smallest optimal order.
Best bruteForce(const BandwidthMatrix &bw) {
    std::vector<size_t> r(bw.size());
    std::iota(r.begin(), r.end(), size_t{0});
    Best best;
    do {
        const double b = ringBottleneck(bw, r), s = ringSum(bw, r);
        if (b > best.bottleneck || (b == best.bottleneck && s > best.sum * (1 + 1e-9))) best = {b, s, r};
    } while (std::next_permutation(r.begin() + 1, r.end()));
    return best;
}

bool isPermutation(std::vector<size_t> order, size_t n) {
    std::sort(order.begin(), order.end());
    for (size_t i = 0; i < order.size(); ++i)
        if (order[i] != i) return false;
    return order.size() == n;
}

std::vector<size_t> naiveOrder(size_t n) {
    std::vector<size_t> r(n);
    std::iota(r.begin(), r.end(), size_t{0});
    return r;
}

// The baseline: from peer 0 always to the unvisited peer with the fastest link.
std::vector<size_t> greedyOrder(const BandwidthMatrix &bw) {
    std::vector<size_t> r{0};
    std::vector<bool> used(bw.size(), false);
    used[0] = true;
    while (r.size() < bw.size()) {
        size_t next = bw.size();
        for (size_t u = 0; u < bw.size(); ++u)
            if (!used[u] && (next == bw.size() || bw[r.back()][u] > bw[r.back()][next])) next = u;
        used[next] = true;
        r.push_back(next);
    }
    return r;
}

bool hasHop(const std::vector<size_t> &r, size_t from, size_t to) {
    for (size_t i = 0; i < r.size(); ++i)
        if (r[i] == from && r[(i + 1) % r.size()] == to) return true;
    return false;
}

// Two clusters (even and odd peers), fast inside (~10 GB/s), slow across (0.1 GB/s) except two
// fast cross links, each fast in one direction only.
BandwidthMatrix twoClusters(size_t n, std::pair<size_t, size_t> evenToOdd, std::pair<size_t, size_t> oddToEven) {
    std::mt19937 rng(7);
    BandwidthMatrix bw(n, std::vector<double>(n, 0));
    for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < n; ++j)
            if (i != j) bw[i][j] = (i % 2 == j % 2 ? 9e9 : 0.1e9) + double(rng() % 100) * 1e6;
    bw[evenToOdd.first][evenToOdd.second] = 8e9;
    bw[oddToEven.first][oddToEven.second] = 8e9;
    return bw;
}

// current with the joiners removed, rotated to start at current[0].
std::vector<size_t> withoutJoiners(std::vector<size_t> r, const std::vector<size_t> &current) {
    std::set<size_t> keep(current.begin(), current.end());
    r.erase(std::remove_if(r.begin(), r.end(), [&](size_t p) { return !keep.count(p); }), r.end());
    std::rotate(r.begin(), std::find(r.begin(), r.end(), current[0]), r.end());
    return r;
}

} // namespace

TEST_CASE("topology: the exact solver finds the best bottleneck and sum of a brute-force search over all rings",
          "[topology]") {
    for (size_t n = 3; n <= 8; ++n)
        for (uint32_t seed = 1; seed <= 4; ++seed) {
            INFO("n=" << n << " seed=" << seed);
            const auto bw = randomMatrix(n, seed * 100 + uint32_t(n));
            const auto s = solveRing(bw, std::chrono::milliseconds(50));
            const auto best = bruteForce(bw);
            REQUIRE(s.exact);
            REQUIRE(isPermutation(s.order, n));
            CHECK(s.order[0] == 0);
            CHECK(s.bottleneck == best.bottleneck);
            CHECK(ringBottleneck(bw, s.order) == s.bottleneck);
            CHECK(ringSum(bw, s.order) == Approx(best.sum).epsilon(1e-12));
        }
}

TEST_CASE("topology: among tied rings the exact solver returns the lexicographically smallest best order",
          "[topology]") {
    for (size_t n = 4; n <= 8; ++n)
        for (uint32_t seed = 1; seed <= 4; ++seed) {
            INFO("n=" << n << " seed=" << seed);
            const auto bw = randomMatrix(n, seed * 31 + uint32_t(n), 3);  // values 0, 1, 2: many ties
            const auto s = solveRing(bw, std::chrono::milliseconds(50));
            const auto best = bruteForce(bw);
            CHECK(s.bottleneck == best.bottleneck);
            CHECK(ringSum(bw, s.order) == best.sum);
            CHECK(s.order == best.order);
        }
}

TEST_CASE("topology: two fast clusters are joined through their fast cross links, not in index order",
          "[topology]") {
    // n = 8 takes the exact solver, n = 24 the heuristic.
    for (auto [n, a, b] : {std::tuple<size_t, std::pair<size_t, size_t>, std::pair<size_t, size_t>>{8, {4, 7}, {5, 2}},
                           {24, {10, 17}, {21, 6}}}) {
        INFO("n=" << n);
        const auto bw = twoClusters(n, a, b);
        const auto s = solveRing(bw, std::chrono::milliseconds(50));
        const double naive = ringBottleneck(bw, naiveOrder(n));
        CHECK(naive < 0.2e9);
        CHECK(s.bottleneck >= 8e9);
        CHECK(s.bottleneck >= 40 * naive);
        CHECK(hasHop(s.order, a.first, a.second));
        CHECK(hasHop(s.order, b.first, b.second));
        CHECK(s.exact == (n <= kExactLimit));
    }
}

TEST_CASE("topology: large rings are solved within the budget and beat the index order and the greedy ring",
          "[topology]") {
    for (size_t n : {32u, 64u}) {
        for (int levels : {0, 4}) {
            INFO("n=" << n << " levels=" << levels);
            const auto bw = randomMatrix(n, uint32_t(n) + 5, levels);
            const auto t0 = std::chrono::steady_clock::now();
            const auto s = solveRing(bw, std::chrono::milliseconds(50));
            const auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
            CHECK(ms < 500);
            REQUIRE(isPermutation(s.order, n));
            CHECK(s.order[0] == 0);
            CHECK_FALSE(s.exact);
            CHECK(s.bottleneck == ringBottleneck(bw, s.order));
            CHECK(s.bottleneck >= ringBottleneck(bw, naiveOrder(n)));
            const auto greedy = greedyOrder(bw);
            CHECK(s.bottleneck >= ringBottleneck(bw, greedy));
            if (s.bottleneck == ringBottleneck(bw, greedy)) CHECK(ringSum(bw, s.order) >= ringSum(bw, greedy));
            // An upper bound: every peer leaves and is entered by one hop.
            double bound = kInf;
            for (size_t i = 0; i < n; ++i) {
                double out = 0, in = 0;
                for (size_t j = 0; j < n; ++j) out = std::max(out, bw[i][j]), in = std::max(in, bw[j][i]);
                bound = std::min({bound, out, in});
            }
            CHECK(s.bottleneck <= bound);
            if (levels > 0) CHECK(s.bottleneck > 0);  // a ring avoiding unknown links certainly exists here
        }
    }
}

TEST_CASE("topology: the same matrix always gives the same ring, and equal links give the index order",
          "[topology]") {
    for (size_t n : {7u, 20u}) {
        INFO("n=" << n);
        const auto bw = randomMatrix(n, 99, 3);
        const auto a = solveRing(bw, std::chrono::seconds(5)), b = solveRing(bw, std::chrono::seconds(5));
        CHECK_FALSE(a.truncated);
        CHECK(a.order == b.order);
        CHECK(a.bottleneck == b.bottleneck);

        const BandwidthMatrix flat(n, std::vector<double>(n, 1e9));
        CHECK(solveRing(flat, std::chrono::seconds(5)).order == naiveOrder(n));
    }
}

TEST_CASE("topology: joiners keep the existing ring's order and sit next to the peers they have fast links with",
          "[topology]") {
    SECTION("relative order is kept and the result is a ring of everybody") {
        const auto bw = randomMatrix(9, 3);
        const std::vector<size_t> current{4, 0, 7, 2, 5}, joiners{8, 1, 6, 3};
        const auto r = insertJoiners(bw, current, joiners);
        CHECK(isPermutation(r, 9));
        CHECK(r[0] == 0);
        CHECK(withoutJoiners(r, current) == current);
    }
    SECTION("a joiner goes between the peers it has fast links with") {
        BandwidthMatrix bw(7, std::vector<double>(7, 1e9));
        for (size_t i = 0; i < 6; ++i) bw[i][6] = bw[6][i] = 0.5e9;
        bw[2][6] = bw[6][3] = 10e9;
        const auto r = insertJoiners(bw, {0, 1, 2, 3, 4, 5}, {6});
        CHECK(r == std::vector<size_t>{0, 1, 2, 6, 3, 4, 5});
    }
    SECTION("one joiner: the best insertion position, never above the optimum") {
        for (uint32_t seed = 1; seed <= 10; ++seed) {
            const auto bw = randomMatrix(7, seed, seed % 2 ? 0 : 4);
            const std::vector<size_t> current{0, 5, 2, 6, 1, 3};
            double bestInsertion = -1;
            for (size_t k = 0; k < current.size(); ++k) {
                auto r = current;
                r.insert(r.begin() + k + 1, 4);
                bestInsertion = std::max(bestInsertion, ringBottleneck(bw, r));
            }
            const auto r = insertJoiners(bw, current, {4});
            INFO("seed=" << seed);
            CHECK(isPermutation(r, 7));
            CHECK(ringBottleneck(bw, r) == bestInsertion);
            CHECK(ringBottleneck(bw, r) <= solveRing(bw, std::chrono::milliseconds(50)).bottleneck);
        }
    }
    SECTION("several joiners never beat the optimum") {
        for (uint32_t seed = 1; seed <= 10; ++seed) {
            const auto bw = randomMatrix(8, seed + 50);
            const auto r = insertJoiners(bw, {3, 1, 6}, {0, 7, 2, 5, 4});
            CHECK(isPermutation(r, 8));
            CHECK(ringBottleneck(bw, r) <= solveRing(bw, std::chrono::milliseconds(50)).bottleneck);
        }
    }
    SECTION("an empty ring is started by the first joiner") {
        const auto bw = randomMatrix(4, 11);
        const auto r = insertJoiners(bw, {}, {2, 3, 0, 1});
        CHECK(isPermutation(r, 4));
        CHECK(insertJoiners(bw, {}, {}).empty());
        CHECK(insertJoiners(bw, {}, {3}) == std::vector<size_t>{3});
        CHECK(insertJoiners(bw, {2}, {}) == std::vector<size_t>{2});
    }
}

TEST_CASE("topology: one and two peers, and unknown links", "[topology]") {
    SECTION("no peer, one peer, two peers") {
        const auto none = solveRing({}, std::chrono::milliseconds(10));
        CHECK(none.order.empty());
        const auto one = solveRing({{0}}, std::chrono::milliseconds(10));
        CHECK(one.order == std::vector<size_t>{0});
        CHECK(one.bottleneck == kInf);
        CHECK(one.exact);
        const auto two = solveRing({{0, 3e9}, {2e9, 0}}, std::chrono::milliseconds(10));
        CHECK(two.order == std::vector<size_t>{0, 1});
        CHECK(two.bottleneck == 2e9);
        CHECK(ringBottleneck({{0, 3e9}, {0, 0}}, {0, 1}) == 0);
    }
    SECTION("a ring that can avoid unknown links does") {
        // Only the ring 0 -> 3 -> 1 -> 4 -> 2 -> 0 and a few one-way links are known; the rest is
        // 0, negative, NaN, infinite or missing (short rows).
        const double nan = std::numeric_limits<double>::quiet_NaN();
        BandwidthMatrix bw{{0, 0, -1, 5e9}, {nan, 0, 0, 0, 1e9}, {2e9, 9e9}, {kInf, 4e9, 0, 0, 0}, {0, 0, 3e9, 7e9, 0}};
        const auto s = solveRing(bw, std::chrono::milliseconds(10));
        CHECK(s.order == std::vector<size_t>{0, 3, 1, 4, 2});
        CHECK(s.bottleneck == 1e9);
    }
    SECTION("the heuristic avoids unknown links when a known ring exists") {
        const size_t n = 40;
        auto bw = randomMatrix(n, 17, 2);  // half the links unknown
        std::vector<size_t> hidden(n);
        std::iota(hidden.begin(), hidden.end(), size_t{0});
        std::shuffle(hidden.begin() + 1, hidden.end(), std::mt19937(5));
        for (size_t i = 0; i < n; ++i) bw[hidden[i]][hidden[(i + 1) % n]] = 1;
        const auto s = solveRing(bw, std::chrono::milliseconds(50));
        CHECK(s.bottleneck == 1);
    }
    SECTION("when every ring needs an unknown link the order is still a ring of everybody") {
        for (size_t n : {5u, 20u}) {
            auto bw = randomMatrix(n, 23);
            for (size_t j = 0; j < n; ++j) bw[3][j] = 0;  // peer 3 reaches nobody
            const auto s = solveRing(bw, std::chrono::milliseconds(50));
            CHECK(isPermutation(s.order, n));
            CHECK(s.bottleneck == 0);
            CHECK(ringBottleneck(bw, s.order) == 0);
        }
        const BandwidthMatrix dark(6, std::vector<double>(6, 0));
        CHECK(solveRing(dark, std::chrono::milliseconds(10)).order == naiveOrder(6));
    }
}

namespace {

// Cheapest insertion by its definition (topology_solver.h): each step scores every (joiner,
// position) by the whole resulting ring; the first strictly better one wins. Integer bandwidths
// keep the sums exact, so this agrees with the O(1) scoring tie for tie.
std::vector<size_t> insertionByDefinition(const BandwidthMatrix &bw, std::vector<size_t> r, std::vector<size_t> left) {
    if (r.empty() && !left.empty()) r.push_back(left.front()), left.erase(left.begin());
    while (!left.empty()) {
        double bestB = -1, bestS = 0;
        size_t bestJ = 0, bestK = 0;
        for (size_t ji = 0; ji < left.size(); ++ji)
            for (size_t k = 0; k < r.size(); ++k) {
                auto cand = r;
                cand.insert(cand.begin() + k + 1, left[ji]);
                const double b = r.size() == 1 ? std::min(bw[r[0]][left[ji]], bw[left[ji]][r[0]]) : ringBottleneck(bw, cand);
                const double s = ringSum(bw, cand);
                if (b > bestB || (b == bestB && s > bestS)) bestB = b, bestS = s, bestJ = ji, bestK = k;
            }
        r.insert(r.begin() + bestK + 1, left[bestJ]);
        left.erase(left.begin() + bestJ);
    }
    std::rotate(r.begin(), std::min_element(r.begin(), r.end()), r.end());
    return r;
}

} // namespace

TEST_CASE("topology: joiners with no known link, dense or sparse links, are placed as by the definition",
          "[topology]") {
    for (uint32_t seed = 1; seed <= 40; ++seed) {
        std::mt19937 rng(seed);
        const size_t n = 5 + seed % 8;
        // Integer levels make many placements tie; some joiners (and sometimes a ring hop) unknown.
        BandwidthMatrix bw = randomMatrix(n, seed, 4);
        std::vector<size_t> ids(n);
        std::iota(ids.begin(), ids.end(), size_t{0});
        std::shuffle(ids.begin(), ids.end(), rng);
        const size_t ringSize = seed % 3 == 0 ? 0 : 1 + rng() % (n - 2);
        const std::vector<size_t> current(ids.begin(), ids.begin() + ringSize), joiners(ids.begin() + ringSize, ids.end());
        for (size_t j : joiners)
            if (rng() % 2)
                for (size_t x = 0; x < n; ++x) bw[j][x] = bw[x][j] = 0;  // never measured
        LinkMap links;
        for (size_t i = 0; i < n; ++i)
            for (size_t j = 0; j < n; ++j)
                if (bw[i][j] > 0) links[{i, j}] = bw[i][j];
        const auto expected = insertionByDefinition(bw, current, joiners);
        INFO("seed=" << seed);
        CHECK(insertJoiners(bw, current, joiners) == expected);
        CHECK(insertJoiners(links, n, current, joiners) == expected);
    }
}

TEST_CASE("topology: 3000 unmeasured joiners join a measured ring of 300 in O(J N), not O(J^2 N)", "[topology]") {
    const size_t ring = 300, n = 3300;
    LinkMap links;
    std::vector<size_t> current(ring), joiners(n - ring);
    std::iota(current.begin(), current.end(), size_t{0});
    std::iota(joiners.begin(), joiners.end(), ring);
    for (size_t i = 0; i < ring; ++i) links[{i, (i + 1) % ring}] = 1e9 + double(i);  // the ring's hops only
    const auto t0 = std::chrono::steady_clock::now();
    const auto r = insertJoiners(links, n, current, joiners);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(isPermutation(r, n));
    CHECK(withoutJoiners(r, current) == current);
    // Scoring every joiner at every position is ~10^10 steps (minutes); one per step is ~10^7.
    CHECK(s < 10.0);
}
