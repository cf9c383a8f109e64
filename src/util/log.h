// Logging: one line per event to stderr, level from PCCL_LOG_LEVEL (trace|debug|info|warn|error|off;
// default warn) or setLevel(). Thread-safe. Usage: PCCL_LOG(Info, "peer " << id << " joined").
#pragma once
#include <sstream>

namespace pccl::log {

enum class Level { Trace = 0, Debug = 1, Info = 2, Warn = 3, Error = 4, Off = 5 };

Level level();
void setLevel(Level l);
bool parseLevel(const char *text, Level *out);
void write(Level l, const std::string &line);

} // namespace pccl::log

#define PCCL_LOG(lvl, expr)                                                                                            \
    do {                                                                                                               \
        if (::pccl::log::Level::lvl >= ::pccl::log::level()) {                                                         \
            std::ostringstream pccl_log_os_;                                                                           \
            pccl_log_os_ << expr;                                                                                      \
            ::pccl::log::write(::pccl::log::Level::lvl, pccl_log_os_.str());                                           \
        }                                                                                                              \
    } while (0)
