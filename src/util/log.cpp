#include "util/log.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>
#include <unistd.h>

namespace pccl::log {
namespace {

Level initialLevel() {
    Level l = Level::Warn;
    if (const char *env = std::getenv("PCCL_LOG_LEVEL")) parseLevel(env, &l);
    return l;
}

std::atomic<Level> &current() {
    static std::atomic<Level> lvl{initialLevel()};
    return lvl;
}

std::mutex &writeMu() {
    static std::mutex mu;
    return mu;
}

Sink &sink() {  // under writeMu()
    static Sink s;
    return s;
}

const char *name(Level l) {
    static const char *names[] = {"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "OFF"};
    return names[static_cast<int>(l)];
}

} // namespace

Level level() { return current().load(std::memory_order_relaxed); }
void setLevel(Level l) { current().store(l, std::memory_order_relaxed); }

bool parseLevel(const char *text, Level *out) {
    static const char *names[] = {"trace", "debug", "info", "warn", "error", "off"};
    for (int i = 0; i < 6; ++i) {
        if (strcasecmp(text, names[i]) == 0) {
            *out = static_cast<Level>(i);
            return true;
        }
    }
    return false;
}

std::string formatTime(std::chrono::system_clock::time_point t) {
    using namespace std::chrono;
    const int64_t ms = duration_cast<milliseconds>(t.time_since_epoch()).count();
    const int64_t secs = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);  // floor, also before 1970
    const auto milli = static_cast<int>(ms - secs * 1000);
    const auto whole = static_cast<std::time_t>(secs);
    std::tm tm{};
    gmtime_r(&whole, &tm);
    char text[48];
    std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, milli);
    return text;
}

void setSink(Sink s) {
    std::lock_guard lock(writeMu());
    sink() = std::move(s);
}

void write(Level l, const std::string &line) {
    const std::string when = formatTime(std::chrono::system_clock::now());
    std::lock_guard lock(writeMu());
    if (sink()) return sink()(l, line);
    std::fprintf(stderr, "[pccl %s %d %s] %s\n", when.c_str(), static_cast<int>(getpid()), name(l), line.c_str());
}

} // namespace pccl::log
