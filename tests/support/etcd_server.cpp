#include "support/etcd_server.h"

#ifdef PCCL_HAVE_ETCD
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "master/etcd_client.h"
#include "support/common.h"
#include "support/spawn.h"

namespace pccl_test {

std::string EtcdServer::binary() {
    if (const char *env = std::getenv("PCCL_ETCD_BIN"); env && *env) return ::access(env, X_OK) == 0 ? env : "";
    const char *path = std::getenv("PATH");
    std::stringstream dirs(path ? path : "/usr/bin:/bin");
    for (std::string dir; std::getline(dirs, dir, ':');) {
        const std::string candidate = (dir.empty() ? "." : dir) + "/etcd";
        if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    return "";
}

EtcdServer::EtcdServer() {
    const std::string bin = binary();
    PT_CHECK_MSG(!bin.empty(), skipMessage());
    char tmpl[] = "/tmp/pccl-etcd-XXXXXX";
    PT_CHECK_MSG(::mkdtemp(tmpl) != nullptr, "mkdtemp failed");
    dir_ = tmpl;
    const std::string client = "http://127.0.0.1:" + std::to_string(freeLoopbackPort());
    const std::string peer = "http://127.0.0.1:" + std::to_string(freeLoopbackPort());
    endpoint_ = client;
    // Through the shell only to send etcd's chatty log to a file; exec keeps the pid etcd's.
    const std::string cmd = "exec '" + bin + "' --name pccl-test --data-dir '" + dir_ + "/data' --listen-client-urls " +
                            client + " --advertise-client-urls " + client + " --listen-peer-urls " + peer +
                            " --initial-advertise-peer-urls " + peer + " --initial-cluster pccl-test=" + peer +
                            " >'" + dir_ + "/etcd.log' 2>&1";
    pccl_spawn::SpawnOptions so;
    so.stdinNull = true;
    std::string err;
    const pccl_spawn::Spawned s = pccl_spawn::spawn({"/bin/sh", "-c", cmd}, so, &err);
    PT_CHECK_MSG(s.pid > 0, "cannot start " << bin << ": " << err);
    pid_ = s.pid;
    ::close(s.out);  // it writes nothing there: its output goes to etcd.log
    auto etcd = pccl::master::EtcdClient::create(endpoint_, 1000);
    if (!etcd.ok()) stopAndFail(etcd.status().message());
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    bool up = false, exited = false;
    while (!up && !exited && std::chrono::steady_clock::now() < deadline) {
        up = (*etcd)->get("/pccl-test/ready").ok();
        exited = !up && pccl_spawn::tryReap(pid_).has_value();
        if (!up && !exited) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (exited) pid_ = -1;
    if (!up) stopAndFail("etcd did not come up at " + endpoint_ + (exited ? " (it exited)" : "") + ": " + log());
}

// A constructor that throws runs no destructor: the process and the directory go first.
void EtcdServer::stopAndFail(const std::string &why) {
    stop();
    ::pccl_test::fail(__FILE__, __LINE__, why);
}

void EtcdServer::stop() {
    if (pid_ > 0) pccl_spawn::killAndReap(pid_);
    pid_ = -1;
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
}

EtcdServer::~EtcdServer() { stop(); }

std::string EtcdServer::log() const {
    std::ifstream in(dir_ + "/etcd.log");
    std::stringstream s;
    s << in.rdbuf();
    std::string text = s.str();
    return text.size() > 4000 ? text.substr(text.size() - 4000) : text;
}

} // namespace pccl_test
#endif
