// At most one log line per interval for one kind of event that strangers can cause at will (a
// refused connection, a connection closed before its Hello): the log cannot be flooded, and each
// line says how many events it stands for. Not thread-safe: one owner thread (or strand).
#pragma once
#include <chrono>
#include <cstddef>
#include <optional>
#include <string>

namespace pccl::log {

class Limiter {
public:
    explicit Limiter(std::chrono::milliseconds interval = std::chrono::seconds(1)) : interval_(interval) {}
    // Whether this event gets a line: when it does, the suffix to append (" (and N more like it
    // since the last line)", or ""); nullopt when the line is skipped.
    std::optional<std::string> admit() {
        const auto now = std::chrono::steady_clock::now();
        if (logged_ && now - last_ < interval_) {
            ++skipped_;
            return std::nullopt;
        }
        logged_ = true;
        last_ = now;
        const size_t n = skipped_;
        skipped_ = 0;
        return n ? " (and " + std::to_string(n) + " more like it since the last such line)" : std::string();
    }

private:
    std::chrono::milliseconds interval_;
    std::chrono::steady_clock::time_point last_{};
    bool logged_ = false;
    size_t skipped_ = 0;
};

} // namespace pccl::log
