#include "master/topology_solver.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <unordered_map>

namespace pccl::master {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
using Clock = std::chrono::steady_clock;

double link(const BandwidthMatrix &bw, size_t i, size_t j) {
    if (i == j || i >= bw.size() || j >= bw[i].size()) return 0;
    const double x = bw[i][j];
    return std::isfinite(x) && x > 0 ? x : 0;
}

// Dense n x n copy with unknown links as 0, so the solvers index without checks.
BandwidthMatrix sanitize(const BandwidthMatrix &bw, size_t n) {
    BandwidthMatrix w(n, std::vector<double>(n, 0));
    for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < n; ++j) w[i][j] = link(bw, i, j);
    return w;
}

struct Key {
    double bottleneck = kInf;
    double sum = 0;
};

double sumSlack(double sum) { return 1e-12 * std::abs(sum); }

// a is strictly better than b.
bool better(const Key &a, const Key &b) {
    if (a.bottleneck != b.bottleneck) return a.bottleneck > b.bottleneck;
    return a.sum > b.sum + sumSlack(b.sum);
}

Key evaluate(const BandwidthMatrix &w, const std::vector<size_t> &r) {
    Key k;
    if (r.size() < 2) return k;
    for (size_t i = 0; i < r.size(); ++i) {
        const double x = w[r[i]][r[(i + 1) % r.size()]];
        k.bottleneck = std::min(k.bottleneck, x);
        k.sum += x;
    }
    return k;
}

// Held-Karp over rings that start at peer 0 and use only links >= threshold, maximising the
// value built by `combine(hop, rest of the ring)`. f[mask][v]: best value of the rest of a ring
// that stands at v having visited `mask` (bit v-1 for peer v; peer 0 is implicit). Returns the
// lexicographically smallest optimal order and stores the optimum in *best. Needs 2 <= n.
template <class Combine>
std::vector<size_t> heldKarp(const BandwidthMatrix &w, double threshold, Combine combine, double *best) {
    const size_t n = w.size(), m = n - 1, full = (size_t{1} << m) - 1;
    auto bit = [](size_t v) { return size_t{1} << (v - 1); };
    auto usable = [&](size_t a, size_t b) { return w[a][b] >= threshold; };
    std::vector<double> f((full + 1) * m, -kInf);
    auto at = [&](size_t mask, size_t v) -> double & { return f[mask * m + (v - 1)]; };
    for (size_t v = 1; v < n; ++v)
        if (usable(v, 0)) at(full, v) = w[v][0];
    for (size_t mask = full; mask-- > 1;)  // supersets first
        for (size_t v = 1; v < n; ++v) {
            if (!(mask & bit(v))) continue;
            double b = -kInf;
            for (size_t u = 1; u < n; ++u)
                if (!(mask & bit(u)) && usable(v, u)) b = std::max(b, combine(w[v][u], at(mask | bit(u), u)));
            at(mask, v) = b;
        }
    double target = -kInf;
    for (size_t u = 1; u < n; ++u)
        if (usable(0, u)) target = std::max(target, combine(w[0][u], at(bit(u), u)));
    *best = target;
    // Walk forward; the same expressions are recomputed, so the equality test is exact.
    std::vector<size_t> order{0};
    for (size_t mask = 0, v = 0; order.size() < n;) {
        size_t u = 1;
        while (u < n && ((mask & bit(u)) || !usable(v, u) || combine(w[v][u], at(mask | bit(u), u)) != target)) ++u;
        if (u == n) throw std::logic_error("ring solver: Held-Karp reconstruction lost the optimum");
        target = at(mask | bit(u), u);
        mask |= bit(u);
        v = u;
        order.push_back(u);
    }
    return order;
}

std::vector<size_t> greedyRing(const BandwidthMatrix &w) {
    const size_t n = w.size();
    std::vector<size_t> r{0};
    std::vector<bool> used(n, false);
    used[0] = true;
    while (r.size() < n) {
        size_t next = n;
        for (size_t u = 0; u < n; ++u)
            if (!used[u] && (next == n || w[r.back()][u] > w[r.back()][next])) next = u;
        used[next] = true;
        r.push_back(next);
    }
    return r;
}

// One sweep over every 2-opt and Or-opt move of r, applying each one that improves on `key` (the
// key of r, kept up to date) as it is found. Returns whether any did. r[0] never moves.
bool sweep(const BandwidthMatrix &w, std::vector<size_t> &r, Key &key) {
    const size_t n = r.size();
    std::vector<double> hop(n);  // hop[k]: r[k] -> r[k+1]
    size_t slowHops = 0;         // hops at the bottleneck
    auto refresh = [&] {
        for (size_t k = 0; k < n; ++k) hop[k] = w[r[k]][r[(k + 1) % n]];
        key = evaluate(w, r);
        slowHops = size_t(std::count(hop.begin(), hop.end(), key.bottleneck));
    };
    refresh();
    auto slow = [&](size_t k) { return size_t(hop[k] == key.bottleneck); };
    bool improved = false;
    // Every hop is >= the bottleneck, so a move adding no hop below it cannot lower it: the move
    // improves if it raises the sum, or (checked in full) if it removes every bottleneck hop.
    auto tryMove = [&](double addedMin, size_t removedSlow, double delta, auto &&apply, auto &&undo) {
        if (addedMin < key.bottleneck) return false;
        if (delta <= sumSlack(key.sum)) {
            if (removedSlow < slowHops) return false;
            apply();
            if (!better(evaluate(w, r), key)) return undo(), false;
        } else {
            apply();
        }
        refresh();
        return improved = true;
    };
    // 2-opt: reverse r[i..j]; hops i-1..j become r[i-1]->r[j], the inner hops reversed, r[i]->r[j+1].
    for (size_t i = 1; i + 1 < n; ++i) {
        double backMin = kInf, backSum = 0, fwdSum = hop[i - 1] + hop[i];
        size_t fwdSlow = slow(i - 1) + slow(i);
        for (size_t j = i + 1; j < n; ++j) {
            const double back = w[r[j]][r[j - 1]];
            backMin = std::min(backMin, back), backSum += back;
            fwdSlow += slow(j), fwdSum += hop[j];
            const double in = w[r[i - 1]][r[j]], out = w[r[i]][r[(j + 1) % n]];
            auto reverse = [&] { std::reverse(r.begin() + i, r.begin() + j + 1); };
            if (tryMove(std::min({in, backMin, out}), fwdSlow, in + backSum + out - fwdSum, reverse, reverse)) break;
        }
    }
    // Or-opt: move r[i..e] between r[k] and r[k+1]; hops p->s, t->q, a->c become p->q, a->s, t->c.
    for (size_t len = 1; len <= 3; ++len)
        for (size_t i = 1; i + len <= n; ++i) {
            const size_t e = i + len - 1, p = r[i - 1], s = r[i], t = r[e], q = r[(e + 1) % n];
            for (size_t k = 0; k < n; ++k) {
                if (k + 1 >= i && k <= e) continue;  // k in [i-1, e]: not a move
                const size_t a = r[k], c = r[(k + 1) % n];
                const double pq = w[p][q], as = w[a][s], tc = w[t][c];
                auto apply = [&] {
                    if (k < i) std::rotate(r.begin() + k + 1, r.begin() + i, r.begin() + e + 1);
                    else std::rotate(r.begin() + i, r.begin() + e + 1, r.begin() + k + 1);
                };
                auto undo = [&] {
                    if (k < i) std::rotate(r.begin() + k + 1, r.begin() + k + 1 + len, r.begin() + e + 1);
                    else std::rotate(r.begin() + i, r.begin() + k + 1 - len, r.begin() + k + 1);
                };
                if (tryMove(std::min({pq, as, tc}), slow(i - 1) + slow(e) + slow(k),
                            pq + as + tc - hop[i - 1] - hop[e] - hop[k], apply, undo))
                    break;
            }
        }
    return improved;
}

std::vector<size_t> heuristicRing(const BandwidthMatrix &w, Clock::time_point deadline, bool *truncated) {
    const size_t n = w.size();
    auto expired = [&] { return *truncated = *truncated || Clock::now() >= deadline; };
    auto descend = [&](std::vector<size_t> &r) {
        Key k = evaluate(w, r);
        while (!expired() && sweep(w, r, k)) continue;
        return k;
    };
    std::vector<size_t> best = greedyRing(w);
    Key bestKey = descend(best);
    std::mt19937 rng(0x5eed);  // the sequence is fixed by the standard
    for (size_t kick = 0; kick < kKicksPerPeer * n && !expired(); ++kick) {
        size_t cut[3] = {1 + rng() % n, 1 + rng() % n, 1 + rng() % n};  // positions 1..n
        std::sort(cut, cut + 3);
        if (cut[0] == cut[1] || cut[1] == cut[2]) continue;
        std::vector<size_t> r = best;
        std::rotate(r.begin() + cut[0], r.begin() + cut[1], r.begin() + cut[2]);  // swap [c0,c1) and [c1,c2)
        const Key k = descend(r);
        if (better(k, bestKey)) best = std::move(r), bestKey = k;
    }
    return best;
}

} // namespace

double ringBottleneck(const BandwidthMatrix &bw, const std::vector<size_t> &order) {
    if (order.size() < 2) return kInf;
    double b = kInf;
    for (size_t i = 0; i < order.size(); ++i) b = std::min(b, link(bw, order[i], order[(i + 1) % order.size()]));
    return b;
}

RingSolution solveRing(const BandwidthMatrix &bw, std::chrono::milliseconds budget) {
    const auto deadline = Clock::now() + budget;
    const size_t n = bw.size();
    const BandwidthMatrix w = sanitize(bw, n);
    RingSolution s;
    if (n < 3) {  // one ring only
        s.order.resize(n);
        std::iota(s.order.begin(), s.order.end(), size_t{0});
        s.exact = true;
    } else if (n <= kExactLimit) {
        double bottleneck = 0, sum = 0;
        heldKarp(w, 0.0, [](double hop, double rest) { return std::min(hop, rest); }, &bottleneck);
        s.order = heldKarp(w, bottleneck, [](double hop, double rest) { return hop + rest; }, &sum);
        s.exact = true;
    } else {
        s.order = heuristicRing(w, deadline, &s.truncated);
    }
    s.bottleneck = evaluate(w, s.order).bottleneck;
    return s;
}

namespace {

// insertJoiners over link(i, j) (0: unknown); measured[p]: peer p has a known link. A joiner
// without one scores the same as any other such joiner at every position: only the first of
// them in `left` can win a step (ties go to the earliest joiner), so the others are not scored.
template <class Link>
std::vector<size_t> insertWith(Link link, const std::vector<char> &measured, std::vector<size_t> current,
                               const std::vector<size_t> &joiners) {
    std::vector<size_t> left = joiners, &r = current;
    if (r.empty() && !left.empty()) r.push_back(left.front()), left.erase(left.begin());
    while (!left.empty()) {
        // The ring's sum and its two slowest hops, so that "the ring without hop k" is O(1).
        const size_t m = r.size();
        std::vector<double> hop(m);
        double sum = 0;
        size_t slowest = 0;
        for (size_t k = 0; k < m; ++k) {
            hop[k] = link(r[k], r[(k + 1) % m]), sum += hop[k];
            if (hop[k] < hop[slowest]) slowest = k;
        }
        double second = kInf;
        for (size_t k = 0; k < m; ++k)
            if (k != slowest) second = std::min(second, hop[k]);
        Key bestKey{-kInf, 0};
        size_t bestJoiner = 0, bestPos = 0;
        bool unmeasuredScored = false;
        for (size_t ji = 0; ji < left.size(); ++ji) {
            const size_t j = left[ji];
            if (!measured[j]) {
                if (unmeasuredScored) continue;
                unmeasuredScored = true;
            }
            for (size_t k = 0; k < m; ++k) {  // between r[k] and r[k+1]
                const size_t a = r[k], c = r[(k + 1) % m];
                const double in = measured[j] ? link(a, j) : 0, outw = measured[j] ? link(j, c) : 0;
                const double kept = m == 1 ? kInf : (k == slowest ? second : hop[slowest]);
                const Key key{std::min({kept, in, outw}), (m == 1 ? 0 : sum - hop[k]) + in + outw};
                if (better(key, bestKey)) bestKey = key, bestJoiner = ji, bestPos = k;
            }
        }
        r.insert(r.begin() + bestPos + 1, left[bestJoiner]);
        left.erase(left.begin() + bestJoiner);
    }
    std::rotate(r.begin(), std::min_element(r.begin(), r.end()), r.end());
    return r;
}

size_t peerCount(size_t n, const std::vector<size_t> &current, const std::vector<size_t> &joiners) {
    for (size_t p : current) n = std::max(n, p + 1);
    for (size_t p : joiners) n = std::max(n, p + 1);
    return n;
}

} // namespace

std::vector<size_t> insertJoiners(const BandwidthMatrix &bw, std::vector<size_t> current,
                                  const std::vector<size_t> &joiners) {
    const size_t n = peerCount(bw.size(), current, joiners);
    const BandwidthMatrix w = sanitize(bw, n);
    std::vector<char> measured(n, 0);
    for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < n; ++j)
            if (w[i][j] > 0) measured[i] = measured[j] = 1;
    return insertWith([&](size_t i, size_t j) { return w[i][j]; }, measured, std::move(current), joiners);
}

std::vector<size_t> insertJoiners(const LinkMap &links, size_t n, std::vector<size_t> current,
                                  const std::vector<size_t> &joiners) {
    n = peerCount(n, current, joiners);
    std::vector<char> measured(n, 0);
    std::unordered_map<uint64_t, double> known;  // i * n + j: hashed, looked up O(J N) times
    for (auto &[ij, x] : links)
        if (ij.first != ij.second && ij.first < n && ij.second < n && std::isfinite(x) && x > 0) {
            measured[ij.first] = measured[ij.second] = 1;
            known[uint64_t{ij.first} * n + ij.second] = x;
        }
    auto link = [&](size_t i, size_t j) {
        auto it = known.find(uint64_t{i} * n + j);
        return it != known.end() ? it->second : 0.0;
    };
    return insertWith(link, measured, std::move(current), joiners);
}

} // namespace pccl::master
