// One shared-state sync round's data movement on this peer (docs/shared_state.md): stream the
// entries this peer is a source for straight from the user's buffers, receive the entries it
// is missing straight into the user's buffers, and verify each received entry's digest.
//
// Threads: start()/abort() from the communicator's control thread; frame callbacks on the data
// plane's I/O threads. onFinished runs once (success, or the first local failure); abort as in
// transport::DataOperation.
#pragma once
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "protocol/messages.h"
#include "transport/data_operation.h"
#include "util/status.h"

namespace pccl::shared_state {

struct LocalEntry {
    std::string name;
    void *data = nullptr;
    size_t bytes = 0;
};

struct TransferOptions {
    int poolSize = 4;
    std::chrono::milliseconds connectTimeout{10000};
    size_t segmentBytes = 1 << 20;
};

class StateTransfer : public transport::DataOperation {
public:
    StateTransfer(transport::DataPlane &plane, std::vector<LocalEntry> entries, protocol::SharedStatePlan plan,
                  TransferOptions options, std::function<void(Status)> onFinished);
    void start();

    void *beginFrame(const transport::SegmentHeader &h, const Uuid &from, std::string *error) override;
    void onPayload(const transport::SegmentHeader &h) override;
    void onPayloadFailed(const transport::SegmentHeader &h, const std::string &why) override;

    static constexpr uint8_t kPhase = 2;
    static constexpr int kOffsetBits = 40;

private:
    struct Incoming {
        protocol::EntryTransfer from;
        std::vector<uint8_t> got;  // per segment
        size_t segmentsLeft = 0;
    };
    bool completeLocked() const override { return entriesLeft_ == 0; }
    std::string waitingForLocked() const override;
    std::vector<Uuid> linkedPeersLocked() const override;
    void sendEntries(const Uuid &to, const std::vector<uint32_t> &entries);

    std::vector<LocalEntry> entries_;
    protocol::SharedStatePlan plan_;
    TransferOptions options_;

    // Guarded by mu_:
    std::map<uint32_t, Incoming> incoming_;
    size_t entriesLeft_ = 0;  // incoming entries not yet verified
};

} // namespace pccl::shared_state
