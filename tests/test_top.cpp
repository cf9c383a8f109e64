// pccl-top (master/top.cpp, top_view.h) and the status server of embedded masters
// (pcclMasterCreateParamsEx_t.http_listen, PCCL_MASTER_HTTP): the frame from documents written
// here, then the real program against a real embedded master with peers, and its exit codes.
#if defined(PCCL_HAVE_HTTP) && defined(PCCL_TOP_BIN)
#include "support/cluster.h"

#include <catch2/catch.hpp>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "master/http_status.h"
#include "top_view.h"

using namespace pccl_test;

namespace {

// A status document as the master writes it (docs/status.schema.json), 2 peers in one ring.
const char *const kDocument = R"({"version":"0.1.0","now_unix_ms":1700000010000,"uptime_seconds":3725.5,"epoch":4,
"connecting":1,"peers":[
 {"uuid":"aaaaaaaa111111111111111111111111","address":"127.0.0.1:5000","data_address":"10.0.0.1:6000","group":0,
  "rank":0,"state":"accepted","activity":"idle","connected_unix_ms":1700000000000,"joined_unix_ms":1700000001000,
  "last_heartbeat_unix_ms":1700000009500,"stats":{"reported_unix_ms":1700000009000,"tx_bytes":2500000,
  "rx_bytes":1200,"collectives_completed":7,"collectives_failed":0,"syncs_completed":0,"syncs_failed":0,
  "last_op_micros":100,"last_op_bytes":4096}},
 {"uuid":"bbbbbbbb222222222222222222222222","address":"127.0.0.1:5001","data_address":"10.0.0.2:6000","group":0,
  "rank":1,"state":"voting","activity":"voting","connected_unix_ms":1700000000000,"joined_unix_ms":1700000001000,
  "last_heartbeat_unix_ms":1700000008000,"stats":null}],
"rings":[{"group":0,"order":["aaaaaaaa111111111111111111111111","bbbbbbbb222222222222222222222222"],
  "shared_state_revision":12}],
"links":[{"from":"aaaaaaaa111111111111111111111111","to":"bbbbbbbb222222222222222222222222",
  "measured_bytes_per_second":1000000,"reported_bytes_per_second":2000000}],
"in_flight":[{"kind":"all_reduce","group":0,"tag":9,"seq":31,"phase":"running","members":2,"started":2,"done":1,
  "since_unix_ms":1700000009000}],
"counters":{"collectives":[{"kind":"all_reduce","result":"completed","count":7},
  {"kind":"all_reduce","result":"aborted","count":2}],"durations":[{"kind":"all_reduce","count":7,"sum_seconds":0.07}],
  "joins":2,"losses":{"crash":1,"heartbeat":2},"stats_reports":3},
"events":[{"at_unix_ms":1700000001000,"kind":"admitted","text":"first event"},
  {"at_unix_ms":1700000002000,"kind":"lost","text":"peer x lost: \u001b[2Jcrash"}]})";

bool has(const std::string &text, const std::string &needle) { return text.find(needle) != std::string::npos; }

// pccl-top with `args`: its stdout and exit status (-1: killed or still running after 20 s).
std::pair<std::string, int> runTop(const std::vector<std::string> &args) {
    std::vector<std::string> argv{PCCL_TOP_BIN};
    argv.insert(argv.end(), args.begin(), args.end());
    ChildProcess top(argv);
    std::string out;
    while (auto line = top.readLine(20)) out += *line + "\n";
    auto status = top.wait(5);
    return {out, status && WIFEXITED(*status) ? WEXITSTATUS(*status) : -1};
}

std::string writeFile(const std::string &name, const std::string &text) {
    const std::string path = "/tmp/pccl_test_top_" + std::to_string(::getpid()) + "_" + name;
    std::ofstream(path) << text << "\n";
    return path;
}

// An embedded master through the C API with params.http_listen; the caller sets the rest.
struct HttpEmbeddedMaster {
    pcclMasterInstance_t *master = nullptr;
    explicit HttpEmbeddedMaster(pcclMasterCreateParamsEx_t params) {
        PT_OK(nullptr, pcclCreateMasterEx(loopbackV4(0), &params, &master));
    }
    ~HttpEmbeddedMaster() {
        if (master) pcclDestroyMaster(master);
    }
    uint16_t httpPort() const {
        uint16_t port = 0;
        PT_OK(nullptr, pcclGetMasterHttpPort(master, &port));
        return port;
    }
    ccoip_socket_address_t address() const {
        uint16_t port = 0;
        PT_OK(nullptr, pcclGetMasterPort(master, &port));
        return loopbackV4(port);
    }
};

int httpStatus(uint16_t port, const std::string &token = "") {
    httplib::Client client("127.0.0.1", port);
    client.set_connection_timeout(5, 0);
    if (!token.empty()) client.set_bearer_token_auth(token.c_str());
    auto res = client.Get("/api/status");
    return res ? res->status : -1;
}

} // namespace

TEST_CASE("pccl-top: a frame shows the run, the peers, the ring with its links, the collectives and the events", "[top]") {
    auto frame = pccl::top::renderFrame(kDocument, {"127.0.0.1:8080", 10});
    REQUIRE(frame.ok());
    const std::string &f = *frame;
    INFO(f);
    CHECK(has(f, "pccl master 127.0.0.1:8080 | epoch 4 | up 1h 2m 5s | peers 2 (accepted 1, voting 1, pending 0) | connecting 1"));
    CHECK(has(f, "aaaaaaaa  10.0.0.1:6000"));
    CHECK(has(f, "2.5 MB"));             // aaaaaaaa's tx
    CHECK(has(f, "0.5 s"));              // its heartbeat age
    CHECK(has(f, "bbbbbbbb  10.0.0.2:6000"));
    CHECK(has(f, "group 0: 2 peer(s), shared-state revision 12"));
    CHECK(has(f, "0 aaaaaaaa -> 1 bbbbbbbb  2.0 MB/s  (probe 1.0 MB/s)"));
    CHECK(has(f, "1 bbbbbbbb -> 0 aaaaaaaa  -"));  // no link known
    CHECK(has(f, "all_reduce         7 completed, 2 aborted, 0 mismatched, 0 timed out, mean 10.0 ms"));
    CHECK(has(f, "joins 2, losses 3, in flight 1"));
    CHECK(has(f, "all_reduce group 0 tag 9 seq 31: running, 2 of 2 started, 1 done, for 1.0 s"));
    CHECK(has(f, "first event"));
    CHECK(has(f, "peer x lost: ?[2Jcrash"));  // a terminal escape in a reason is defused
    CHECK(!has(f, "\x1b"));
    auto last = pccl::top::renderFrame(kDocument, {"", 1});
    REQUIRE(last.ok());
    CHECK(!has(*last, "first event"));
    CHECK(has(*last, "crash"));
}

TEST_CASE("pccl-top: a document that is not a status document is refused with the reason", "[top]") {
    for (const char *bad : {"", "{not json", "[1,2]", "{}", R"({"peers":5})"}) {
        auto frame = pccl::top::renderFrame(bad, {});
        INFO(bad);
        CHECK(!frame.ok());
        CHECK(frame.status().code() == pcclInvalidArgument);
        CHECK(has(frame.status().message(), "not"));
    }
    // A field of the wrong type deep inside.
    std::string doc = kDocument;
    doc.replace(doc.find("\"state\":\"voting\""), 16, "\"state\":17");
    auto frame = pccl::top::renderFrame(doc, {});
    CHECK(!frame.ok());
    CHECK(has(frame.status().message(), "not a pccl status document"));
}

TEST_CASE("pccl-top --once against an embedded master with http_listen shows its peers and ring", "[top][status][api]") {
    isolated(120, [] {
        pcclMasterCreateParamsEx_t params = PCCL_MASTER_CREATE_PARAMS_EX_INIT;
        params.http_listen = "127.0.0.1:0";
        HttpEmbeddedMaster m(params);
        PT_OK(nullptr, pcclRunMaster(m.master));
        const uint16_t http = m.httpPort();
        PT_CHECK(http != 0);
        ClusterOptions opts;
        opts.groups = {0, 0, 0};
        opts.timeout_s = 60;
        runPeers(m.address(), opts, [&](PeerCtx &ctx) {
            std::vector<float> data(1024, 1.0f), out(1024);
            auto d = makeDescriptor(data.size(), pcclFloat, pcclSum, 1);
            PT_OK(ctx.comm, pcclAllReduce(data.data(), out.data(), &d, ctx.comm, nullptr));
            ctx.barrier();
            if (ctx.rank == 0) {
                // The loop publishes every 250 ms: retry until the frame has the whole ring.
                std::string frame;
                int code = -1;
                const auto deadline = Clock::now() + std::chrono::seconds(10);
                while (Clock::now() < deadline) {
                    std::tie(frame, code) = runTop({"--http", "127.0.0.1:" + std::to_string(http), "--once"});
                    if (code == 0 && has(frame, "group 0: 3 peer(s)") && has(frame, "1 completed")) break;
                    std::this_thread::sleep_for(std::chrono::milliseconds(100));
                }
                PT_CHECK_MSG(code == 0, "pccl-top exited " << code << ":\n" << frame);
                PT_CHECK_MSG(has(frame, "group 0: 3 peer(s)"), frame);
                PT_CHECK_MSG(has(frame, "peers 3 (accepted 3"), frame);
                PT_CHECK_MSG(has(frame, "all_reduce         1 completed"), frame);
                // Every peer of /api/status is in the table, and the ring goes round through them.
                httplib::Client client("127.0.0.1", http);
                auto res = client.Get("/api/status");
                PT_CHECK(res && res->status == 200);
                auto doc = nlohmann::json::parse(res->body);
                const auto &order = doc.at("rings").at(0).at("order");
                PT_CHECK_EQ(order.size(), size_t{3});
                for (size_t i = 0; i < 3; ++i) {
                    const std::string from = order[i].get<std::string>().substr(0, 8);
                    const std::string to = order[(i + 1) % 3].get<std::string>().substr(0, 8);
                    PT_CHECK_MSG(has(frame, "\n" + from + "  "), "no row for " << from << ":\n" << frame);
                    PT_CHECK_MSG(has(frame, std::to_string(i) + " " + from + " -> " + std::to_string((i + 1) % 3) + " " + to),
                                 "no hop " << from << " -> " << to << ":\n" << frame);
                }
            }
            ctx.barrier();
        });
    });
}

TEST_CASE("pccl-top: an unreachable server, a missing or wrong token, an error and a bad document exit non-zero",
          "[top][status]") {
    isolated(60, [] {
        // Nothing listens: a port bound and closed again (connect is refused).
        uint16_t closed = 0;
        {
            const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
            sockaddr_in a{};
            a.sin_family = AF_INET;
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            socklen_t len = sizeof a;
            PT_CHECK(::bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0);
            PT_CHECK(::getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len) == 0);
            closed = ntohs(a.sin_port);
            ::close(fd);
        }
        PT_CHECK_EQ(runTop({"--http", "127.0.0.1:" + std::to_string(closed), "--once"}).second, 3);
        PT_CHECK_EQ(runTop({"--once"}).second, 2);
        PT_CHECK_EQ(runTop({"--http", "nohost", "--once"}).second, 2);

        pccl::master::HttpStatus status;
        PT_CHECK(status.start({"127.0.0.1:0", "t0ken", false}).ok());
        const std::string at = "127.0.0.1:" + std::to_string(status.port());
        PT_CHECK_EQ(runTop({"--http", at, "--once"}).second, 4);  // 401: no token
        PT_CHECK_EQ(runTop({"--http", at, "--once", "--token-file", writeFile("wrong", "other")}).second, 4);
        const std::string good = writeFile("good", "  t0ken \n");
        PT_CHECK_EQ(runTop({"--http", at, "--once", "--token-file", good}).second, 4);  // 503: nothing published
        status.publish(std::make_shared<pccl::master::RunView>());
        auto [frame, code] = runTop({"--http", at, "--once", "--token-file", good});
        PT_CHECK_MSG(code == 0 && has(frame, "(no peers)"), code << ":\n" << frame);
        PT_CHECK_EQ(runTop({"--http", at, "--once", "--token-file", "/nonexistent/token"}).second, 2);
        status.stop();

        httplib::Server junk;
        junk.Get("/api/status", [](const httplib::Request &, httplib::Response &res) {
            res.set_content(R"({"version": "x", "peers": [)", "application/json");
        });
        const int port = junk.bind_to_any_port("127.0.0.1");
        std::thread serve([&] { junk.listen_after_bind(); });
        while (!junk.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        const int malformed = runTop({"--http", "127.0.0.1:" + std::to_string(port), "--once"}).second;
        junk.stop();
        serve.join();
        PT_CHECK_EQ(malformed, 5);
    });
}

TEST_CASE("embedded master: PCCL_MASTER_HTTP starts a status server, http_listen \"\" overrides it", "[status][api]") {
    isolated(60, [] {
        ::setenv("PCCL_MASTER_HTTP", "127.0.0.1:0", 1);
        pcclMasterInstance_t *plain = nullptr;
        PT_OK(nullptr, pcclCreateMaster(loopbackV4(0), &plain));
        uint16_t port = 0;
        PT_EXPECT_RESULT(nullptr, pcclInvalidUsage, pcclGetMasterHttpPort(plain, &port));  // not running yet
        PT_OK(nullptr, pcclRunMaster(plain));
        PT_EXPECT_RESULT(nullptr, pcclInvalidArgument, pcclGetMasterHttpPort(plain, nullptr));
        PT_OK(nullptr, pcclGetMasterHttpPort(plain, &port));
        PT_CHECK_EQ(httpStatus(port), 200);
        PT_OK(nullptr, pcclDestroyMaster(plain));
        PT_CHECK_EQ(httpStatus(port), -1);  // the status server stopped with it

        pcclMasterCreateParamsEx_t params = PCCL_MASTER_CREATE_PARAMS_EX_INIT;
        params.http_listen = "";
        HttpEmbeddedMaster off(params);
        PT_OK(nullptr, pcclRunMaster(off.master));
        PT_EXPECT_RESULT(nullptr, pcclInvalidUsage, pcclGetMasterHttpPort(off.master, &port));

        // A caller built before http_listen existed: its struct ends at require_secret, and
        // whatever follows it in memory is not read.
        struct {
            pcclMasterCreateParamsEx_t p;
        } old{};
        old.p.struct_size = offsetof(pcclMasterCreateParamsEx_t, http_listen);
        old.p.http_listen = reinterpret_cast<const char *>(uintptr_t{1});  // would crash if read
        old.p.http_token_file = reinterpret_cast<const char *>(uintptr_t{1});
        ::unsetenv("PCCL_MASTER_HTTP");
        HttpEmbeddedMaster legacy(old.p);
        PT_OK(nullptr, pcclRunMaster(legacy.master));
        PT_EXPECT_RESULT(nullptr, pcclInvalidUsage, pcclGetMasterHttpPort(legacy.master, &port));
    });
}

TEST_CASE("embedded master: the status server's token and the secret's loopback rule, as pccl-master --http",
          "[status][api]") {
    isolated(60, [] {
        const std::string token = writeFile("embedded", "embedded-token");
        pcclMasterCreateParamsEx_t params = PCCL_MASTER_CREATE_PARAMS_EX_INIT;
        params.secret = "embedded-master-secret-0123456789";
        params.http_listen = "0.0.0.0:0";
        HttpEmbeddedMaster refused(params);
        // A run with a secret, no token file, a non-loopback bind: refused, and again on a retry
        // (the master is not left half-started).
        for (int attempt = 0; attempt < 2; ++attempt) {
            PT_EXPECT_RESULT(nullptr, pcclInvalidArgument, pcclRunMaster(refused.master));
            const std::string why = pcclGetLastErrorMessage(nullptr);
            PT_CHECK_MSG(has(why, "loopback") && has(why, "http_token_file"), why);
        }
        params.http_token_file = token.c_str();
        params.http_listen = "127.0.0.1:0";
        HttpEmbeddedMaster tokened(params);
        PT_OK(nullptr, pcclRunMaster(tokened.master));
        PT_CHECK_EQ(httpStatus(tokened.httpPort()), 401);
        PT_CHECK_EQ(httpStatus(tokened.httpPort(), "wrong"), 401);
        PT_CHECK_EQ(httpStatus(tokened.httpPort(), "embedded-token"), 200);
        params.http_token_file = "/nonexistent/token";
        HttpEmbeddedMaster unreadable(params);
        PT_EXPECT_RESULT(nullptr, pcclInvalidArgument, pcclRunMaster(unreadable.master));
        PT_CHECK(has(pcclGetLastErrorMessage(nullptr), "token file"));
    });
}
#endif
