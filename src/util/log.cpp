#include "util/log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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

void write(Level l, const std::string &line) {
    static std::mutex mu;
    using namespace std::chrono;
    const double t = duration<double>(system_clock::now().time_since_epoch()).count();
    std::lock_guard lock(mu);
    std::fprintf(stderr, "[pccl %.3f %d %s] %s\n", t, static_cast<int>(getpid()), name(l), line.c_str());
}

} // namespace pccl::log
