// The master's HTTP status server (master/http_status.h) against real peers: what /metrics and
// /api/status report, and that slow or malformed HTTP clients never hold up the master's loop.
#ifdef PCCL_HAVE_HTTP
#include "support/cluster.h"

#include <catch2/catch.hpp>
#include <httplib.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <cstring>
#include <random>
#include <sys/socket.h>
#include <unistd.h>

#include "master/http_status.h"
#include "master/server.h"

using namespace pccl_test;

namespace {

// An embedded master (master::Server on a thread) with its status server on 127.0.0.1:0.
class HttpMaster {
public:
    HttpMaster() {
        pccl::master::ServerOptions o;
        o.listen.family = 4;
        o.listen.ip = {127, 0, 0, 1};
        o.statusPeriodMs = 50;
        http_ = std::make_shared<pccl::master::HttpStatus>();
        o.status = http_;
        server_ = std::make_unique<pccl::master::Server>(o);
        PT_CHECK(server_->bind().ok());
        PT_CHECK(http_->start({"127.0.0.1:0", "", false}).ok());
        thread_ = std::thread([this] { server_->run(); });
    }
    ~HttpMaster() {
        server_->stop();
        thread_.join();
        http_->stop();
    }
    ccoip_socket_address_t address() const { return loopbackV4(server_->port()); }
    uint16_t httpPort() const { return http_->port(); }

private:
    std::shared_ptr<pccl::master::HttpStatus> http_;
    std::unique_ptr<pccl::master::Server> server_;
    std::thread thread_;
};

std::string get(uint16_t port, const std::string &path, int *status = nullptr) {
    httplib::Client client("127.0.0.1", port);
    client.set_connection_timeout(5, 0);
    client.set_read_timeout(5, 0);
    auto res = client.Get(path.c_str());
    if (status) *status = res ? res->status : -1;
    return res ? res->body : "";
}

// Polls `path` until its body contains `needle` (the loop publishes every 50 ms here).
std::string waitFor(uint16_t port, const std::string &path, const std::string &needle, double timeout_s = 10) {
    const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
    std::string body;
    while (Clock::now() < deadline) {
        body = get(port, path);
        if (body.find(needle) != std::string::npos) return body;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    PT_CHECK_MSG(false, "no '" << needle << "' in " << path << " within " << timeout_s << " s; last:\n" << body);
    return body;
}

int connectTo(uint16_t port) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{0, 200000};
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (::connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

// Each of `ctx`'s peers runs `n` all-reduces of 1024 floats; returns the slowest one in seconds.
double allReduces(PeerCtx &ctx, int n, uint64_t firstTag = 1) {
    std::vector<float> data(1024, 1.0f), out(1024);
    double slowest = 0;
    for (int i = 0; i < n; ++i) {
        auto d = makeDescriptor(data.size(), pcclFloat, pcclSum, firstTag + static_cast<uint64_t>(i));
        const auto start = Clock::now();
        PT_OK(ctx.comm, pcclAllReduce(data.data(), out.data(), &d, ctx.comm, nullptr));
        slowest = std::max(slowest, std::chrono::duration<double>(Clock::now() - start).count());
    }
    return slowest;
}

} // namespace

TEST_CASE("status http: /metrics and /api/status count the collectives and peers of a run", "[status][api]") {
    isolated(90, [] {
        HttpMaster master;
        ClusterOptions opts;
        opts.groups = {0, 0, 0};
        runPeers(master.address(), opts, [](PeerCtx &ctx) { allReduces(ctx, 5); });
        const auto metrics =
            waitFor(master.httpPort(), "/metrics", "pccl_collectives_total{kind=\"all_reduce\",result=\"completed\"} 5\n");
        PT_CHECK(metrics.find("pccl_collective_duration_seconds_count{kind=\"all_reduce\"} 5\n") != std::string::npos);
        PT_CHECK(metrics.find("pccl_peer_joins_total 3\n") != std::string::npos);
        PT_CHECK(metrics.find("pccl_collectives_total{kind=\"all_reduce\",result=\"aborted\"} 0\n") != std::string::npos);
        PT_CHECK(metrics.find("# TYPE pccl_master_uptime_seconds gauge\n") != std::string::npos);
        const auto json = get(master.httpPort(), "/api/status");
        PT_CHECK(json.find("\"joins\":3") != std::string::npos);
        PT_CHECK(json.find("admitted to group 0") != std::string::npos);
        const auto page = get(master.httpPort(), "/");
        PT_CHECK(page.find("<title>pccl master</title>") != std::string::npos);
        int status = 0;
        get(master.httpPort(), "/nope", &status);
        PT_CHECK_EQ(status, 404);
    });
}

TEST_CASE("status http: stalled HTTP clients do not delay the peers' votes and all-reduces", "[status][api]") {
    isolated(90, [] {
        HttpMaster master;
        // More stalled clients than the status server has threads: each sent half a request.
        std::vector<int> stalled;
        // (Once every status thread holds one, further connections queue in the listen backlog
        // until it is full: those connects may time out, which is fine.)
        for (int i = 0; i < 12; ++i) {
            int fd = connectTo(master.httpPort());
            if (fd < 0) continue;
            const char half[] = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
            ::send(fd, half, sizeof half - 1, MSG_NOSIGNAL);
            stalled.push_back(fd);
        }
        PT_CHECK_MSG(stalled.size() >= 4, "only " << stalled.size() << " stalled clients connected");
        ClusterOptions opts;
        opts.groups = {0, 0, 0};
        opts.timeout_s = 30;
        const auto start = Clock::now();
        double slowest = 0;
        std::mutex mu;
        runPeers(master.address(), opts, [&](PeerCtx &ctx) {
            const double s = allReduces(ctx, 10);
            std::lock_guard lock(mu);
            slowest = std::max(slowest, s);
        });
        const double total = std::chrono::duration<double>(Clock::now() - start).count();
        // Connecting (admission votes) and 10 small all-reduces take well under a second here;
        // a loop blocked by HTTP would wait for the clients' 2 s read timeout at least once.
        PT_CHECK_MSG(slowest < 1.5, "slowest all-reduce took " << slowest << " s");
        PT_CHECK_MSG(total < 15, "connecting and 10 all-reduces took " << total << " s");
        for (int fd : stalled) ::close(fd);
        waitFor(master.httpPort(), "/metrics", "result=\"completed\"} 10\n");
    });
}

TEST_CASE("status http: random and oversized requests neither crash nor wedge the master", "[status][api]") {
    isolated(90, [] {
        HttpMaster master;
        const unsigned seed = std::random_device{}();
        std::fprintf(stderr, "status http fuzz: seed %u\n", seed);
        std::mt19937 rng(seed);
        const auto until = Clock::now() + std::chrono::seconds(3);
        int sent = 0;
        while (Clock::now() < until) {
            int fd = connectTo(master.httpPort());
            if (fd < 0) continue;
            std::string req;
            switch (rng() % 4) {
            case 0:  // random bytes
                for (size_t i = rng() % 4096; i > 0; --i) req += static_cast<char>(rng());
                break;
            case 1:  // a huge header
                req = "GET /metrics HTTP/1.1\r\nX-Big: " + std::string(64 * 1024 + rng() % 65536, 'a') + "\r\n\r\n";
                break;
            case 2:  // a huge URI
                req = "GET /" + std::string(20000, 'b') + " HTTP/1.1\r\n\r\n";
                break;
            default:  // a request line cut anywhere, or an absurd body length
                req = std::string("POST /api/status HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\nxx").substr(0, rng() % 70);
            }
            ::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
            ::close(fd);
            ++sent;
        }
        PT_CHECK(sent > 10);
        int status = 0;
        get(master.httpPort(), "/metrics", &status);
        PT_CHECK_EQ(status, 200);
        ClusterOptions opts;
        opts.groups = {0, 0};
        runPeers(master.address(), opts, [](PeerCtx &ctx) { allReduces(ctx, 2); });
        waitFor(master.httpPort(), "/metrics", "result=\"completed\"} 2\n");
    });
}

TEST_CASE("status http: with a token every request must carry it", "[status]") {
    pccl::master::HttpStatus http;
    REQUIRE(http.start({"127.0.0.1:0", "s3cret", true}).ok());
    int status = 0;
    get(http.port(), "/metrics", &status);
    CHECK(status == 401);
    httplib::Client client("127.0.0.1", http.port());
    client.set_bearer_token_auth("s3cret");
    auto res = client.Get("/metrics");
    REQUIRE(res);
    CHECK(res->status == 503);  // authorized; nothing published yet
    http.stop();
    pccl::master::HttpStatus open;
    // A run with a secret: a non-loopback bind without a token is refused before binding.
    auto st = open.start({"0.0.0.0:0", "", true});
    CHECK(!st.ok());
    CHECK(st.message().find("--http-token-file") != std::string::npos);
}
#endif
