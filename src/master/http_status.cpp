#include "master/http_status.h"

#include <httplib.h>

#include <chrono>

#include "master/status_render.h"
#include "transport/address.h"
#include "util/log.h"

namespace pccl::master {

namespace {

constexpr int kThreads = 4;          // concurrent HTTP clients served; more wait in the queue
constexpr time_t kIoTimeoutS = 2;    // a client that sends or reads nothing this long is dropped
constexpr size_t kMaxBodyBytes = 1024;

bool isLoopback(const protocol::NetAddr &a) {
    if (a.family == 4) return a.ip[0] == 127;
    for (size_t i = 0; i < 15; ++i)
        if (a.ip[i] != 0) return false;
    return a.ip[15] == 1;
}

// Constant-time comparison: the token must not leak through response times.
bool sameToken(const std::string &a, const std::string &b) {
    unsigned char diff = a.size() != b.size();
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
    return diff == 0;
}

} // namespace

HttpStatus::HttpStatus() : server_(std::make_unique<httplib::Server>()) {}

HttpStatus::~HttpStatus() { stop(); }

void HttpStatus::publish(std::shared_ptr<const RunView> view) {
    std::lock_guard lock(mutex_);
    view_ = std::move(view);
}

std::shared_ptr<const RunView> HttpStatus::latest() const {
    std::lock_guard lock(mutex_);
    return view_;
}

void HttpStatus::routes() {
    auto &s = *server_;
    s.set_pre_routing_handler([this](const httplib::Request &req, httplib::Response &res) {
        if (token_.empty() || sameToken(req.get_header_value("Authorization"), "Bearer " + token_))
            return httplib::Server::HandlerResponse::Unhandled;
        res.status = 401;
        res.set_header("WWW-Authenticate", "Bearer");
        res.set_content("a bearer token is required\n", "text/plain");
        return httplib::Server::HandlerResponse::Handled;
    });
    // Until the loop published its first view the API answers 503.
    auto serve = [this](httplib::Response &res, std::string (*render)(const RunView &), const char *type) {
        auto view = latest();
        if (!view) {
            res.status = 503;
            res.set_content("the master has not published its status yet\n", "text/plain");
            return;
        }
        res.set_header("Cache-Control", "no-store");
        res.set_content(render(*view), type);
    };
    s.Get("/metrics", [serve](const httplib::Request &, httplib::Response &res) {
        serve(res, renderMetrics, "text/plain; version=0.0.4; charset=utf-8");
    });
    s.Get("/api/status", [serve](const httplib::Request &, httplib::Response &res) {
        serve(res, renderStatusJson, "application/json");
    });
    s.Get("/", [](const httplib::Request &, httplib::Response &res) {
        res.set_header("Cache-Control", "no-store");
        res.set_content(statusPageHtml(), "text/html; charset=utf-8");
    });
    s.set_exception_handler([](const httplib::Request &, httplib::Response &res, std::exception_ptr) {
        res.status = 500;
        res.set_content("internal error\n", "text/plain");
    });
}

Status HttpStatus::start(const HttpOptions &options) {
    std::string text = options.listen;
    if (text.find(':') == std::string::npos) text = "127.0.0.1:" + text;
    else if (text[0] == ':') text = "127.0.0.1" + text;
    auto addr = transport::parseSocketAddress(text, 0);
    if (!addr.ok()) return {pcclInvalidArgument, "status server: " + addr.status().message()};
    if (options.runHasSecret && options.token.empty() && !isLoopback(*addr))
        return {pcclInvalidArgument, "status server on " + options.listen +
                                         ": this run has a secret, so the status server binds to a loopback address "
                                         "only, unless requests must carry a token (--http-token-file, http_token_file)"};
    token_ = options.token;
    routes();
    auto &s = *server_;
    s.new_task_queue = [] { return new httplib::ThreadPool(kThreads); };
    s.set_read_timeout(kIoTimeoutS, 0);
    s.set_write_timeout(kIoTimeoutS, 0);
    s.set_keep_alive_timeout(kIoTimeoutS);
    s.set_payload_max_length(kMaxBodyBytes);
    protocol::NetAddr host = *addr;
    std::string ip = host.str();
    ip = ip.substr(0, ip.rfind(':'));
    if (!ip.empty() && ip.front() == '[') ip = ip.substr(1, ip.size() - 2);
    if (host.port == 0) {
        const int port = s.bind_to_any_port(ip);
        if (port <= 0) return {pcclInvalidArgument, "status server: cannot listen on " + text + " (in use?)"};
        port_ = static_cast<uint16_t>(port);
    } else {
        if (!s.bind_to_port(ip, host.port)) return {pcclInvalidArgument, "status server: cannot listen on " + text + " (in use?)"};
        port_ = host.port;
    }
    protocol::NetAddr shown = host;
    shown.port = port_;
    url_ = "http://" + shown.str() + "/";
    if (!isLoopback(host) && options.token.empty())
        PCCL_LOG(Warn, "master: the status server on " << text << " answers anyone who can reach it (no token)");
    thread_ = std::thread([this] {
        server_->listen_after_bind();
        finished_ = true;
    });
    return {};
}

void HttpStatus::stop() {
    if (!thread_.joinable()) return;
    // stop() is a no-op until the thread is inside listen_after_bind(): repeat until it left.
    while (!finished_) {
        server_->stop();
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    thread_.join();
}

} // namespace pccl::master
