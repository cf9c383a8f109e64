// The shared-state election of one sync round (docs/shared_state.md), as a pure function of
// what every peer described: who is removed, who gets a usage error, the target revision, the
// sources, and what each peer must receive from whom.
#pragma once
#include <pccl.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "protocol/messages.h"

namespace pccl::master {

using PeerKey = uint64_t;  // the master's client id

struct ElectionOutcome {
    std::map<PeerKey, std::string> removed;      // kicked, with the reason
    std::map<PeerKey, std::string> usageErrors;  // pcclInvalidUsage, no part in the round
    std::string noStateReason;                   // non-empty: pcclNoSharedStateAvailable for all
    uint64_t revision = 0;
    std::vector<protocol::EntryDesc> popular;    // layout and digests that win
    std::vector<PeerKey> sources;                // peers holding the popular content
    // What one participant must fetch of one entry: the dirty chunks, their popular digests, and
    // the peers that may serve them, in the order this receiver should prefer them.
    struct Fetch {
        uint32_t entry = 0;
        std::vector<uint32_t> chunks;
        std::vector<protocol::Digest> digests;
        std::vector<PeerKey> sources;
    };
    std::map<PeerKey, std::vector<Fetch>> receive;
};

ElectionOutcome electSharedState(const std::map<PeerKey, protocol::SharedStateSync> &described,
                                 std::optional<uint64_t> lastRevision);

} // namespace pccl::master
