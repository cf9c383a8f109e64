// The contract between pccl-soak-peer and pccl-soak: event lines and exit codes.
//
// A peer writes one event per line on stdout:
//     EV <kind> [ok|fail] key=value ... [msg=free text to the end of the line]
// kinds (the peer prints them in peer.cpp; the orchestrator checks them in checker.cpp):
//   start      slot pid name                         the process runs
//   connecting attempt                                before pcclConnect (admission wait begins)
//   connect    ok|fail ms world|code                  pcclConnect returned
//   destroy    ok|fail ms                             pcclDestroyCommunicator (after a failed connect)
//   sync       ok lineage rev hash rx tx world ms     pcclSynchronizeSharedState; hash = state without
//              fail rev code ms                       allow_content_inequality entries
//   allreduce  ok lineage rev tag how hash mask world ms    one all-reduce (hash of the result bytes,
//              fail lineage rev tag how code ms             mask = decoded participant slots, hex)
//   multi      ok|fail n ms [code]                    one pcclAllReduceMultipleWithRetry call
//   pending    ok|fail pending ms [code]              pcclArePeersPending
//   topology   ok|fail ms world [code]                pcclUpdateTopology
//   step       ok lineage rev world step_ms           a step completed (its all-reduces all succeeded)
//   violation  kind ...                               the peer found a wrong result (see README.md)
//   exit       code synced                            the peer is about to exit with that code
// Every "ms" is the duration of one library call (for async all-reduces: of the await;
// launch_ms: of the launch).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>

namespace soak {

// Peer exit codes.
constexpr int kExitDone = 0;        // --max-steps reached
constexpr int kExitUsage = 2;       // bad command line
constexpr int kExitRemoved = 3;     // pcclKicked / pcclMasterConnectionLost: removed from the run
constexpr int kExitUnexpected = 4;  // a result code the library must not return here
constexpr int kExitGaveUp = 5;      // too many failed connect or recovery attempts
constexpr int kExitStateLost = 6;   // pcclNoSharedStateAvailable: no live peer holds the state

struct Event {
    std::string kind;    // "sync", "allreduce", ...
    bool failed = false; // the word "fail" followed the kind
    std::map<std::string, std::string, std::less<>> kv;

    bool has(std::string_view key) const { return kv.find(key) != kv.end(); }
    std::string str(std::string_view key) const {
        auto it = kv.find(key);
        return it == kv.end() ? std::string() : it->second;
    }
    double num(std::string_view key, double fallback = 0) const {
        auto it = kv.find(key);
        return it == kv.end() ? fallback : std::strtod(it->second.c_str(), nullptr);
    }
    uint64_t u64(std::string_view key, int base = 10) const {
        auto it = kv.find(key);
        return it == kv.end() ? 0 : std::strtoull(it->second.c_str(), nullptr, base);
    }
};

// Parses an event line; false if the line is not one (library logs, blank lines).
inline bool parseEvent(std::string_view line, Event &ev) {
    if (line.substr(0, 3) != "EV ") return false;
    ev = Event{};
    size_t pos = 3;
    bool first = true;
    while (pos < line.size()) {
        const size_t end = std::min(line.find(' ', pos), line.size());
        const std::string_view word = line.substr(pos, end - pos);
        if (word.substr(0, 4) == "msg=") {
            ev.kv["msg"] = std::string(line.substr(pos + 4));
            break;
        }
        const size_t eq = word.find('=');
        if (first) ev.kind = std::string(word);
        else if (eq == std::string_view::npos) ev.failed = ev.failed || word == "fail";
        else ev.kv[std::string(word.substr(0, eq))] = std::string(word.substr(eq + 1));
        first = false;
        pos = end + 1;
    }
    return !ev.kind.empty();
}

}  // namespace soak
