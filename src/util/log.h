// Logging: one line per event to stderr, level from PCCL_LOG_LEVEL (trace|debug|info|warn|error|off;
// default warn) or setLevel(). Thread-safe. Usage: PCCL_LOG(Info, "peer " << id << " joined").
#pragma once
#include <chrono>
#include <functional>
#include <sstream>
#include <string>

namespace pccl::log {

enum class Level { Trace = 0, Debug = 1, Info = 2, Warn = 3, Error = 4, Off = 5 };

Level level();
void setLevel(Level l);
bool parseLevel(const char *text, Level *out);
void write(Level l, const std::string &line);

// A line's time as it is printed: ISO 8601 in UTC with milliseconds, "2026-12-06T21:55:03.123Z".
// A line reads "[pccl 2026-12-06T21:55:03.123Z 18943 INFO] text" (time, pid, level).
std::string formatTime(std::chrono::system_clock::time_point t);

// For tests: while a sink is set, the lines that pass the level go to it instead of stderr (one
// call per line, serialised; the sink must not log). An empty sink restores stderr.
using Sink = std::function<void(Level, const std::string &)>;
void setSink(Sink sink);

} // namespace pccl::log

#define PCCL_LOG(lvl, expr)                                                                                            \
    do {                                                                                                               \
        if (::pccl::log::Level::lvl >= ::pccl::log::level()) {                                                         \
            std::ostringstream pccl_log_os_;                                                                           \
            pccl_log_os_ << expr;                                                                                      \
            ::pccl::log::write(::pccl::log::Level::lvl, pccl_log_os_.str());                                           \
        }                                                                                                              \
    } while (0)
