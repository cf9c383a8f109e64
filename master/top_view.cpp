#include "top_view.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <map>
#include <sstream>

namespace pccl::top {

namespace {

using nlohmann::json;

// Decimal units, as the status page.
std::string bytes(double n) {
    static const char *const units[] = {"B", "KB", "MB", "GB", "TB"};
    int i = 0;
    while (n >= 1000 && i < 4) n /= 1000, ++i;
    char out[32];
    std::snprintf(out, sizeof out, i ? "%.1f %s" : "%.0f %s", n, units[i]);
    return out;
}

std::string rate(double n) { return n > 0 ? bytes(n) + "/s" : "-"; }

std::string duration(double s) {
    const auto t = static_cast<uint64_t>(std::max(0.0, s));
    const uint64_t h = t / 3600, m = t % 3600 / 60;
    std::string out;
    if (h) out += std::to_string(h) + "h ";
    if (h || m) out += std::to_string(m) + "m ";
    return out + std::to_string(t % 60) + "s";
}

std::string timeOfDay(uint64_t unixMs) {
    const time_t t = static_cast<time_t>(unixMs / 1000);
    tm local{};
    localtime_r(&t, &local);
    char out[16];
    std::strftime(out, sizeof out, "%H:%M:%S", &local);
    return out;
}

// A string of the document, printable: control characters (a peer's reason could carry terminal
// escape sequences) become '?'.
std::string str(const json &j) {
    std::string s = j.get<std::string>();
    for (char &c : s)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
    return s;
}

std::string shortUuid(const json &uuid) { return str(uuid).substr(0, 8); }

// printf into a std::string (the table rows).
template <class... A>
std::string format(const char *fmt, A... args) {
    char out[512];
    std::snprintf(out, sizeof out, fmt, args...);
    return out;
}

void runLine(std::ostringstream &o, const json &s, const FrameOptions &opts) {
    std::map<std::string, int> states;
    for (auto &p : s.at("peers")) ++states[str(p.at("state"))];
    o << "pccl master";
    if (!opts.source.empty()) o << " " << opts.source;
    o << " | epoch " << s.at("epoch").get<uint64_t>() << " | up " << duration(s.at("uptime_seconds").get<double>())
      << " | peers " << s.at("peers").size() << " (accepted " << states["accepted"] << ", voting " << states["voting"]
      << ", pending " << states["pending"] << ") | connecting " << s.at("connecting").get<uint64_t>() << " | groups "
      << s.at("rings").size() << " | version " << str(s.at("version")) << "\n";
}

void peerTable(std::ostringstream &o, const json &s) {
    const auto now = s.at("now_unix_ms").get<uint64_t>();
    o << "\n" << format("%-8s  %-21s  %5s  %4s  %-8s  %10s  %10s  %9s", "PEER", "ADDRESS", "GROUP", "RANK", "STATE", "TX", "RX", "HEARTBEAT") << "\n";
    for (auto &p : s.at("peers")) {
        const auto rank = p.at("rank").get<int64_t>();
        const auto &stats = p.at("stats");
        const auto seen = p.at("last_heartbeat_unix_ms").get<uint64_t>();
        const double age = static_cast<double>(now - std::min(now, seen)) / 1000.0;
        o << format("%-8s  %-21s  %5u  %4s  %-8s  %10s  %10s  %7.1f s", shortUuid(p.at("uuid")).c_str(),
                    str(p.at("data_address")).c_str(), p.at("group").get<uint32_t>(),
                    rank < 0 ? "-" : std::to_string(rank).c_str(), str(p.at("state")).c_str(),
                    stats.is_null() ? "-" : bytes(stats.at("tx_bytes").get<double>()).c_str(),
                    stats.is_null() ? "-" : bytes(stats.at("rx_bytes").get<double>()).c_str(), age)
          << "\n";
    }
    if (s.at("peers").empty()) o << "(no peers)\n";
}

// Each hop of each ring with its bandwidth: what the sender reported achieving, else what the
// probe measured (as the page), both when both are known.
void rings(std::ostringstream &o, const json &s) {
    std::map<std::pair<std::string, std::string>, std::pair<double, double>> links;  // -> (reported, measured)
    for (auto &l : s.at("links"))
        links[{str(l.at("from")), str(l.at("to"))}] = {
            l.at("reported_bytes_per_second").get<double>(), l.at("measured_bytes_per_second").get<double>()};
    o << "\nRINGS\n";
    if (s.at("rings").empty()) o << "(no admitted peers)\n";
    for (auto &g : s.at("rings")) {
        const auto &order = g.at("order");
        o << "group " << g.at("group").get<uint32_t>() << ": " << order.size() << " peer(s)";
        if (!g.at("shared_state_revision").is_null())
            o << ", shared-state revision " << g.at("shared_state_revision").get<uint64_t>();
        o << "\n";
        const size_t n = order.size();
        for (size_t i = 0; n > 1 && i < n; ++i) {
            const auto from = str(order[i]), to = str(order[(i + 1) % n]);
            auto it = links.find({from, to});
            const double reported = it == links.end() ? 0 : it->second.first;
            const double measured = it == links.end() ? 0 : it->second.second;
            o << format("  %zu %s -> %zu %s  %s", i, from.substr(0, 8).c_str(), (i + 1) % n, to.substr(0, 8).c_str(),
                        rate(reported ? reported : measured).c_str());
            if (reported && measured) o << "  (probe " << rate(measured) << ")";
            else if (measured) o << "  (probe)";
            o << "\n";
        }
        if (n == 1) o << "  0 " << shortUuid(order[0]) << " (alone)\n";
    }
}

void collectives(std::ostringstream &o, const json &s) {
    std::map<std::string, std::map<std::string, uint64_t>> byKind;  // kind -> result -> count
    const auto &c = s.at("counters");
    for (auto &x : c.at("collectives"))
        byKind[x.at("kind").get<std::string>()][x.at("result").get<std::string>()] += x.at("count").get<uint64_t>();
    std::map<std::string, std::pair<uint64_t, double>> durations;
    for (auto &d : c.at("durations"))
        durations[d.at("kind").get<std::string>()] = {d.at("count").get<uint64_t>(), d.at("sum_seconds").get<double>()};
    o << "\nCOLLECTIVES\n";
    // all_reduce and shared_state_sync always; the other collectives once the master counted one.
    byKind["all_reduce"];
    byKind["shared_state_sync"];
    for (auto &[kind, r] : byKind) {
        o << format("  %-17s  %llu completed, %llu aborted, %llu mismatched, %llu timed out", kind.c_str(),
                    static_cast<unsigned long long>(r["completed"]), static_cast<unsigned long long>(r["aborted"]),
                    static_cast<unsigned long long>(r["mismatched"]), static_cast<unsigned long long>(r["timed_out"]));
        auto d = durations.find(kind);
        if (d != durations.end() && d->second.first)
            o << format(", mean %.1f ms", d->second.second * 1000.0 / static_cast<double>(d->second.first));
        o << "\n";
    }
    uint64_t losses = 0;
    for (auto &[reason, n] : c.at("losses").items()) losses += n.get<uint64_t>();
    const auto &inFlight = s.at("in_flight");
    o << "  joins " << c.at("joins").get<uint64_t>() << ", losses " << losses << ", in flight " << inFlight.size() << "\n";
    const auto now = s.at("now_unix_ms").get<uint64_t>();
    for (auto &f : inFlight) {
        const auto since = f.at("since_unix_ms").get<uint64_t>();
        o << format("    %s group %u tag %llu seq %llu: %s, %zu of %zu started, %zu done, for %.1f s\n",
                    str(f.at("kind")).c_str(), f.at("group").get<uint32_t>(),
                    static_cast<unsigned long long>(f.at("tag").get<uint64_t>()),
                    static_cast<unsigned long long>(f.at("seq").get<uint64_t>()), str(f.at("phase")).c_str(),
                    f.at("started").get<size_t>(), f.at("members").get<size_t>(), f.at("done").get<size_t>(),
                    static_cast<double>(now - std::min(now, since)) / 1000.0);
    }
}

void events(std::ostringstream &o, const json &s, size_t count) {
    const auto &all = s.at("events");
    const size_t first = all.size() > count ? all.size() - count : 0;
    o << "\nEVENTS (newest last)\n";
    if (all.empty()) o << "(none)\n";
    for (size_t i = first; i < all.size(); ++i) {
        const auto &e = all[i];
        o << format("  %s  %-10s  ", timeOfDay(e.at("at_unix_ms").get<uint64_t>()).c_str(), str(e.at("kind")).c_str())
          << str(e.at("text")) << "\n";
    }
}

} // namespace

Result<std::string> renderFrame(const std::string &body, const FrameOptions &options) {
    // A document from the network: every failure (not JSON, a missing field, a wrong type) is an
    // exception of nlohmann::json, turned into the reason here; nothing escapes.
    try {
        const json s = json::parse(body);
        if (!s.is_object()) return invalidArgument("the status document is not a JSON object");
        std::ostringstream o;
        runLine(o, s, options);
        peerTable(o, s);
        rings(o, s);
        collectives(o, s);
        events(o, s, options.events);
        return o.str();
    } catch (const nlohmann::json::exception &e) {
        return invalidArgument(std::string("not a pccl status document: ") + e.what());
    }
}

} // namespace pccl::top
