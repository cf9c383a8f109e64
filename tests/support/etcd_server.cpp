#include "support/etcd_server.h"

#ifdef PCCL_HAVE_ETCD
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "master/etcd_client.h"
#include "support/common.h"

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
                            " 2>'" + dir_ + "/etcd.log'";
    proc_ = std::make_unique<ChildProcess>(std::vector<std::string>{"/bin/sh", "-c", cmd});
    auto etcd = pccl::master::EtcdClient::create(endpoint_, 1000);
    PT_CHECK_MSG(etcd.ok(), etcd.status().message());
    const bool up = waitUntil([&] { return (*etcd)->get("/pccl-test/ready").ok() || proc_->wait(0).has_value(); }, 15);
    PT_CHECK_MSG(up && (*etcd)->get("/pccl-test/ready").ok(), "etcd did not come up at " << endpoint_ << ": " << log());
}

EtcdServer::~EtcdServer() {
    proc_.reset();  // SIGKILL + reap
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
}

std::string EtcdServer::log() const {
    std::ifstream in(dir_ + "/etcd.log");
    std::stringstream s;
    s << in.rdbuf();
    std::string text = s.str();
    return text.size() > 4000 ? text.substr(text.size() - 4000) : text;
}

} // namespace pccl_test
#endif
