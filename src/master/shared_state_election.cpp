#include "master/shared_state_election.h"

#include <algorithm>
#include <functional>
#include <set>
#include <string>

namespace pccl::master {

using namespace protocol;

namespace {

bool sameLayout(const std::vector<EntryDesc> &a, const std::vector<EntryDesc> &b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (!a[i].sameLayout(b[i])) return false;
    return true;
}

// The digests that take part in the vote (entries without allow_content_inequality).
std::vector<Digest> voteKey(const std::vector<EntryDesc> &entries) {
    std::vector<Digest> k;
    for (auto &e : entries)
        if (!e.allow_inequality) k.push_back(e.digest);
    return k;
}

// Why no peer can provide the state, and the usual cause: a revision not advanced by one.
std::string noStateReason(const std::map<PeerKey, const SharedStateSync *> &live, uint64_t revision,
                          std::optional<uint64_t> lastRevision) {
    std::set<uint64_t> described;
    for (auto &[id, s] : live) described.insert(s->revision);
    std::string seen;
    for (uint64_t r : described) seen += (seen.empty() ? "" : ", ") + std::to_string(r);
    std::string why = "no peer of the group at revision " + std::to_string(revision) +
                      " can provide the shared state (all are behind or receive-only; this sync was described at "
                      "revision " + seen + ")";
    if (lastRevision)
        why += ": the group's last revision was " + std::to_string(*lastRevision) +
               ", so advance the revision by exactly one each step before syncing (shared_state->revision + 1; "
               "Python: SharedState.push_revision())";
    return why;
}

using Live = std::map<PeerKey, const SharedStateSync *>;

// Strategies: ENFORCE_POPULAR mixed with the others is a usage error for the others.
Live checkStrategies(const std::map<PeerKey, SharedStateSync> &described, ElectionOutcome &out) {
    const bool anyEnforce = std::any_of(described.begin(), described.end(), [](auto &kv) {
        return kv.second.strategy == PCCL_SHARED_STATE_SYNC_STRATEGY_ENFORCE_POPULAR;
    });
    Live live;
    for (auto &[id, s] : described) {
        if (anyEnforce && s.strategy != PCCL_SHARED_STATE_SYNC_STRATEGY_ENFORCE_POPULAR) {
            out.usageErrors[id] = "this peer used the receive-only/send-only strategy while other peers of the group "
                                  "used ENFORCE_POPULAR in the same sync";
            continue;
        }
        live[id] = &s;
    }
    return live;
}

// Structure: the most common layout wins (ties: the one described by the lowest peer id).
void keepCommonLayout(Live &live, ElectionOutcome &out) {
    std::vector<std::pair<const std::vector<EntryDesc> *, size_t>> layouts;
    for (auto &[id, s] : live) {
        auto it = std::find_if(layouts.begin(), layouts.end(), [&](auto &l) { return sameLayout(*l.first, s->entries); });
        if (it == layouts.end()) layouts.push_back({&s->entries, 1});
        else ++it->second;
    }
    const auto *layout = std::max_element(layouts.begin(), layouts.end(), [](auto &a, auto &b) {
                             return a.second < b.second;  // stable: first maximum wins
                         })->first;
    std::erase_if(live, [&](const auto &kv) {
        if (sameLayout(*layout, kv.second->entries)) return false;
        out.removed[kv.first] = "shared state layout differs from the group's (entry names, order, data types or "
                                "element counts)";
        return true;
    });
}

// Revision: the last committed one plus one, else the most common (ties: the highest).
void chooseRevision(Live &live, std::optional<uint64_t> lastRevision, ElectionOutcome &out) {
    if (lastRevision) {
        out.revision = *lastRevision + 1;
    } else {
        std::map<uint64_t, size_t> counts;
        for (auto &[id, s] : live) ++counts[s->revision];
        size_t best = 0;
        for (auto &[rev, n] : counts)
            if (n >= best) {  // ascending order: ties go to the highest revision
                best = n;
                out.revision = rev;
            }
    }
    std::erase_if(live, [&](const auto &kv) {
        if (kv.second->revision <= out.revision) return false;
        out.removed[kv.first] = "shared state revision " + std::to_string(kv.second->revision) +
                                " jumped ahead of the group's next revision " + std::to_string(out.revision);
        return true;
    });
}

// Content: candidates are peers at the target revision that may win; the most common content
// wins. Sources hold it; the first of them also defines the allow_content_inequality entries a
// newcomer receives. False when no peer can provide the state.
bool electSources(const Live &live, ElectionOutcome &out) {
    std::vector<std::pair<std::vector<Digest>, std::vector<PeerKey>>> votes;
    for (auto &[id, s] : live) {
        if (s->revision != out.revision || s->strategy == PCCL_SHARED_STATE_SYNC_STRATEGY_RECEIVE_ONLY) continue;
        auto key = voteKey(s->entries);
        auto it = std::find_if(votes.begin(), votes.end(), [&](auto &v) { return v.first == key; });
        if (it == votes.end()) votes.push_back({std::move(key), {id}});
        else it->second.push_back(id);
    }
    if (votes.empty()) return false;
    std::sort(votes.begin(), votes.end(), [](auto &a, auto &b) {
        if (a.second.size() != b.second.size()) return a.second.size() > b.second.size();
        return a.first < b.first;  // deterministic tie-break: the smallest digest sequence
    });
    out.sources = votes.front().second;
    out.popular = live.at(out.sources.front())->entries;
    return true;
}

// What peer `s` lacks of the popular state: per entry, the chunks that differ and where to get
// them (`rotation()`: the sources starting at this receiver's turn).
std::vector<ElectionOutcome::Fetch> fetchesOf(const SharedStateSync &s, bool isSource, const ElectionOutcome &out,
                                              const std::function<const std::vector<PeerKey> &()> &rotation) {
    std::vector<ElectionOutcome::Fetch> want;
    for (uint32_t i = 0; i < out.popular.size(); ++i) {
        const auto &pop = out.popular[i];
        const auto &mine = s.entries[i];
        if (pop.allow_inequality ? (s.synced_before || isSource) : mine.digest == pop.digest) continue;
        ElectionOutcome::Fetch f;
        f.entry = i;
        for (uint32_t c = 0; c < pop.chunks.size(); ++c)
            if (c >= mine.chunks.size() || mine.chunks[c] != pop.chunks[c]) {
                f.chunks.push_back(c);
                f.digests.push_back(pop.chunks[c]);
            }
        // Entries allowed to differ come from the source whose digests were published.
        if (pop.allow_inequality) f.sources = {out.sources.front()};
        else f.sources = rotation();
        if (!f.chunks.empty()) want.push_back(std::move(f));
    }
    return want;
}

// Receivers start on different sources (rotation by receiver), so that downloads spread.
// Looked up, and rotated only for a peer that receives: with N peers in sync, each of them a
// source, these are O(N log N) per round, not O(N^2).
void planReceivers(const Live &live, ElectionOutcome &out) {
    const std::set<PeerKey> isSourceOf(out.sources.begin(), out.sources.end());
    size_t rr = 0;
    for (auto &[id, s] : live) {
        std::vector<PeerKey> rotated;
        auto rotation = [&]() -> const std::vector<PeerKey> & {
            if (rotated.empty())
                for (size_t k = 0; k < out.sources.size(); ++k)
                    rotated.push_back(out.sources[(rr + k) % out.sources.size()]);
            return rotated;
        };
        auto want = fetchesOf(*s, isSourceOf.count(id) != 0, out, rotation);
        if (want.empty()) continue;
        if (s->strategy == PCCL_SHARED_STATE_SYNC_STRATEGY_SEND_ONLY) {
            out.removed[id] = "this send-only peer does not hold the group's popular shared state";
            continue;
        }
        ++rr;
        out.receive[id] = std::move(want);
    }
}

} // namespace

ElectionOutcome electSharedState(const std::map<PeerKey, SharedStateSync> &described,
                                 std::optional<uint64_t> lastRevision) {
    ElectionOutcome out;
    Live live = checkStrategies(described, out);
    if (live.empty()) return out;
    keepCommonLayout(live, out);
    chooseRevision(live, lastRevision, out);
    if (!electSources(live, out)) {
        out.noStateReason = noStateReason(live, out.revision, lastRevision);
        return out;
    }
    planReceivers(live, out);
    return out;
}

} // namespace pccl::master
