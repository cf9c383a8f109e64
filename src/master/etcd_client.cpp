#include "master/etcd_client.h"

#include <httplib.h>
#include <openssl/evp.h>

#include <nlohmann/json.hpp>

namespace pccl::master {

using json = nlohmann::json;

namespace {

Status failed(const std::string &what) { return {pcclMasterConnectionFailed, "etcd: " + what}; }

std::string base64(const std::string &in) {
    std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
    const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char *>(out.data()),
                                  reinterpret_cast<const unsigned char *>(in.data()), static_cast<int>(in.size()));
    out.resize(static_cast<size_t>(n));
    return out;
}

bool unbase64(const std::string &in, std::string *out) {
    if (in.size() % 4 != 0) return false;
    std::string raw(in.size() / 4 * 3 + 1, '\0');
    const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char *>(raw.data()),
                                  reinterpret_cast<const unsigned char *>(in.data()), static_cast<int>(in.size()));
    if (n < 0) return false;
    size_t len = static_cast<size_t>(n);
    for (size_t i = in.size(); i > 0 && in[i - 1] == '='; --i) --len;  // EVP_DecodeBlock keeps the padding's zeros
    raw.resize(len);
    *out = std::move(raw);
    return true;
}

// etcd's gateway writes int64 fields as JSON strings and leaves out fields that are zero.
int64_t int64Field(const json &j, const char *name) {
    auto it = j.find(name);
    if (it == j.end() || it->is_null()) return 0;
    if (it->is_number_integer()) return it->get<int64_t>();
    if (it->is_string()) return std::stoll(it->get<std::string>());
    throw std::runtime_error(std::string("field ") + name + " is not an integer");
}

Result<std::optional<EtcdValue>> firstValue(const json &range) {
    auto kvs = range.find("kvs");
    if (kvs == range.end() || !kvs->is_array() || kvs->empty()) return std::optional<EtcdValue>{};
    const json &kv = kvs->front();
    EtcdValue v;
    if (!unbase64(kv.value("value", std::string()), &v.value)) return failed("a value that is not base64");
    v.createRevision = int64Field(kv, "create_revision");
    v.lease = int64Field(kv, "lease");
    return std::optional<EtcdValue>{std::move(v)};
}

} // namespace

struct EtcdClient::Impl {
    httplib::Client http;
    explicit Impl(const std::string &endpoint) : http(endpoint) {}

    // POSTs `body` to `path` and parses etcd's answer; an error answer (a JSON "error" or
    // "message" field, a non-200 status) is a failure carrying etcd's words.
    Result<json> call(const char *path, const json &body) {
        auto res = http.Post(path, body.dump(), "application/json");
        if (!res) return failed(std::string(path) + ": " + httplib::to_string(res.error()));
        json j = json::parse(res->body, nullptr, false);
        if (j.is_discarded() || !j.is_object())
            return failed(std::string(path) + ": HTTP " + std::to_string(res->status) + ", not JSON: " +
                          res->body.substr(0, 200));
        if (res->status != 200 || j.contains("error")) {
            auto message = j.find("message");
            const std::string why = message != j.end() && message->is_string() ? message->get<std::string>()
                                    : j.contains("error")                     ? j["error"].dump()
                                                                              : res->body.substr(0, 200);
            return failed(std::string(path) + ": HTTP " + std::to_string(res->status) + ": " + why);
        }
        return j;
    }
};

Result<std::unique_ptr<EtcdClient>> EtcdClient::create(const std::string &endpoint, uint64_t requestTimeoutMs) {
    const std::string scheme = "http://";
    if (endpoint.rfind(scheme, 0) != 0 || endpoint.size() == scheme.size() ||
        endpoint.find('/', scheme.size()) != std::string::npos)
        return invalidArgument("etcd endpoint '" + endpoint + "': expected http://HOST:PORT");
    auto impl = std::make_unique<Impl>(endpoint);
    if (!impl->http.is_valid()) return invalidArgument("etcd endpoint '" + endpoint + "' is not a valid URL");
    const auto timeout = std::chrono::milliseconds(requestTimeoutMs);
    const time_t s = static_cast<time_t>(timeout.count() / 1000);
    const time_t us = static_cast<time_t>(timeout.count() % 1000 * 1000);
    impl->http.set_connection_timeout(s, us);
    impl->http.set_read_timeout(s, us);
    impl->http.set_write_timeout(s, us);
    impl->http.set_keep_alive(true);
    return std::unique_ptr<EtcdClient>(new EtcdClient(endpoint, std::move(impl)));
}

EtcdClient::EtcdClient(std::string endpoint, std::unique_ptr<Impl> impl)
    : endpoint_(std::move(endpoint)), impl_(std::move(impl)) {}
EtcdClient::~EtcdClient() = default;

// Runs `parse` (what reading etcd's answer may throw): an odd answer is a failed call, never a
// crashed master.
namespace {
template <class T, class F>
Result<T> guarded(F &&parse) {
    try {
        return parse();
    } catch (const std::exception &e) {
        return failed(std::string("unexpected answer: ") + e.what());
    }
}
} // namespace

Result<EtcdLease> EtcdClient::grant(int64_t ttlS) {
    auto r = impl_->call("/v3/lease/grant", json{{"TTL", std::to_string(ttlS)}});
    if (!r.ok()) return r.status();
    return guarded<EtcdLease>([&]() -> Result<EtcdLease> {
        EtcdLease lease{int64Field(*r, "ID"), int64Field(*r, "TTL")};
        if (lease.id == 0 || lease.ttlS <= 0) return failed("lease grant without an ID or TTL: " + r->dump());
        return lease;
    });
}

Result<int64_t> EtcdClient::keepAlive(int64_t leaseId) {
    auto r = impl_->call("/v3/lease/keepalive", json{{"ID", std::to_string(leaseId)}});
    if (!r.ok()) return r.status();
    return guarded<int64_t>([&]() -> Result<int64_t> {
        // A stream of one answer: {"result": {"ID", "TTL"}}; TTL left out (0) when the lease is gone.
        auto it = r->find("result");
        if (it == r->end() || !it->is_object()) return failed("keepalive answer without a result: " + r->dump());
        return int64Field(*it, "TTL");
    });
}

Status EtcdClient::revoke(int64_t leaseId) {
    auto r = impl_->call("/v3/lease/revoke", json{{"ID", std::to_string(leaseId)}});
    return r.status();
}

Result<std::optional<EtcdValue>> EtcdClient::get(const std::string &key) {
    auto r = impl_->call("/v3/kv/range", json{{"key", base64(key)}});
    if (!r.ok()) return r.status();
    return guarded<std::optional<EtcdValue>>([&] { return firstValue(*r); });
}

Result<EtcdCampaign> EtcdClient::createIfAbsent(const std::string &key, const std::string &value, int64_t leaseId) {
    const std::string k = base64(key);
    json txn = {
        {"compare", json::array({{{"key", k}, {"target", "CREATE"}, {"result", "EQUAL"}, {"create_revision", "0"}}})},
        {"success",
         json::array({{{"request_put", {{"key", k}, {"value", base64(value)}, {"lease", std::to_string(leaseId)}}}}})},
        {"failure", json::array({{{"request_range", {{"key", k}}}}})},
    };
    auto r = impl_->call("/v3/kv/txn", txn);
    if (!r.ok()) return r.status();
    return guarded<EtcdCampaign>([&]() -> Result<EtcdCampaign> {
        EtcdCampaign c;
        c.won = r->value("succeeded", false);
        if (c.won) {
            // The put is the transaction's only write: the key was created at its revision.
            c.revision = int64Field(r->at("header"), "revision");
            if (c.revision <= 0) return failed("transaction without a revision: " + r->dump());
            return c;
        }
        auto responses = r->find("responses");
        if (responses != r->end() && responses->is_array() && !responses->empty()) {
            auto range = firstValue(responses->front().at("response_range"));
            if (!range.ok()) return range.status();
            c.current = std::move(*range);
        }
        return c;
    });
}

} // namespace pccl::master
