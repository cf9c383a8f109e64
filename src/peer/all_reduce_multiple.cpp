// pcclAllReduceMultipleWithRetry: a bounded window of concurrent all-reduces with retry after
// peer loss. Every peer sees the same aborts (all-or-nothing), so all peers retry the same tags.
#include <chrono>
#include <deque>

#include "peer/communicator.h"

namespace pccl::peer {

Status Communicator::allReduceMultipleWithRetry(const std::vector<ReduceArgs> &ops, int maxInFlight,
                                                ReduceResult *total) {
    const auto started = std::chrono::steady_clock::now();
    const size_t window = maxInFlight <= 0 ? ops.size() : static_cast<size_t>(maxInFlight);
    std::deque<size_t> todo;
    for (size_t i = 0; i < ops.size(); ++i) todo.push_back(i);
    std::deque<size_t> inFlight;
    Status firstError;
    bool tooFew = false;
    ReduceResult sum;
    while (!todo.empty() || !inFlight.empty()) {
        while (firstError.ok() && !tooFew && !todo.empty() && inFlight.size() < window) {
            const size_t i = todo.front();
            todo.pop_front();
            Status st = startAllReduce(ops[i]);
            if (!st.ok()) {
                firstError = st;
                break;
            }
            inFlight.push_back(i);
        }
        if (inFlight.empty()) break;
        const size_t i = inFlight.front();
        inFlight.pop_front();
        ReduceResult r;
        Status st = awaitAllReduce(ops[i].tag, &r);
        sum.txBytes += r.txBytes;
        sum.rxBytes += r.rxBytes;
        if (st.ok()) {
            sum.worldSize = r.worldSize;
            continue;
        }
        if (st.code() == pcclRankConnectionLost) {
            auto size = attribute(PCCL_ATTRIBUTE_PEER_GROUP_WORLD_SIZE);
            if (!size.ok()) {
                if (firstError.ok()) firstError = size.status();
            } else if (*size < 2) {
                tooFew = true;
            } else {
                todo.push_back(i);
            }
            continue;
        }
        if (firstError.ok()) firstError = st;
    }
    sum.durationUs = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started).count());
    if (total) *total = sum;
    if (!firstError.ok()) return firstError;
    if (tooFew) return {pcclTooFewPeers, "fewer than two peers remain in the peer group; some all-reduces did not complete"};
    return {};
}

} // namespace pccl::peer
