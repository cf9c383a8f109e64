#include "support/fault.h"

#include "support/cluster.h"
#include "support/spawn.h"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <fstream>
#include <poll.h>
#include <sched.h>
#include <sstream>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace pccl_test {

void fillPattern(std::vector<float> &buf, int value) {
    for (size_t j = 0; j < buf.size(); ++j) buf[j] = static_cast<float>(value + static_cast<int>(j % 3));
}

std::string checkPattern(const float *buf, size_t count, int value_sum, int contributors) {
    for (size_t j = 0; j < count; ++j) {
        const float want = static_cast<float>(value_sum + contributors * static_cast<int>(j % 3));
        if (buf[j] != want) {
            std::ostringstream os;
            os << "element " << j << " is " << buf[j] << ", expected " << want << " (" << contributors << " peers)";
            return os.str();
        }
    }
    return "";
}

namespace {

// The state letter of /proc/<pid>/task/<tid>/stat ('T' = stopped), or 0 if unreadable.
char threadState(const std::string &stat_path) {
    std::ifstream in(stat_path);
    std::string line;
    if (!std::getline(in, line)) return 0;
    const size_t paren = line.rfind(')');
    if (paren == std::string::npos || paren + 2 >= line.size()) return 0;
    return line[paren + 2];
}

bool allThreadsStopped(pid_t pid) {
    const std::string dir = "/proc/" + std::to_string(pid) + "/task";
    DIR *d = ::opendir(dir.c_str());
    if (!d) return false;
    bool any = false, all = true;
    while (dirent *e = ::readdir(d)) {
        if (e->d_name[0] == '.') continue;
        const char s = threadState(dir + "/" + e->d_name + "/stat");
        any = true;
        if (s != 'T' && s != 't') all = false;
    }
    ::closedir(d);
    return any && all;
}

} // namespace

bool waitStopped(pid_t pid, double timeout_s) {
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
    while (!allThreadsStopped(pid)) {
        if (Clock::now() >= deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
}

std::string readFloats(pid_t pid, uint64_t addr, size_t count, std::vector<float> &out) {
    out.assign(count, 0.0f);
    size_t done = 0;
    const size_t total = count * sizeof(float);
    while (done < total) {
        iovec local{reinterpret_cast<char *>(out.data()) + done, total - done};
        iovec remote{reinterpret_cast<void *>(addr + done), total - done};
        const ssize_t n = ::process_vm_readv(pid, &local, 1, &remote, 1, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return std::string("process_vm_readv: ") + (n < 0 ? std::strerror(errno) : "no progress");
        done += static_cast<size_t>(n);
    }
    return "";
}

std::string findExecutable(const std::string &name) {
    if (name.find('/') != std::string::npos) return ::access(name.c_str(), X_OK) == 0 ? name : "";
    std::string path = std::getenv("PATH") ? std::getenv("PATH") : "";
    path += ":/usr/sbin:/sbin:/usr/bin:/bin";
    std::istringstream dirs(path);
    std::string dir;
    while (std::getline(dirs, dir, ':')) {
        if (dir.empty()) continue;
        const std::string candidate = dir + "/" + name;
        struct stat st {};
        if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(candidate.c_str(), X_OK) == 0)
            return candidate;
    }
    return "";
}

int runCommand(const std::vector<std::string> &argv, std::string *output, double timeout_s) {
    if (argv.empty()) return -1;
    const std::string exe = findExecutable(argv[0]);
    if (exe.empty()) {
        if (output) *output += argv[0] + ": not found\n";
        return -1;
    }
    std::vector<std::string> args = argv;
    args[0] = exe;
    pccl_spawn::SpawnOptions options;
    options.err = pccl_spawn::Stderr::Stdout;
    options.dieWithParent = false;
    std::string err;
    const pccl_spawn::Spawned child = pccl_spawn::spawn(args, options, &err);
    if (child.pid < 0) return -1;
    const bool finished = pccl_spawn::readUntilEof(child.out, timeout_s, [&](const char *data, size_t n) {
        if (output) output->append(data, n);
    });
    ::close(child.out);
    const int status = finished ? pccl_spawn::reapBlocking(child.pid) : pccl_spawn::killAndReap(child.pid);
    if (!finished || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
}

bool runSetupStep(const std::vector<std::string> &argv, std::string *unavailable) {
    if (!unavailable->empty()) return false;
    std::string out;
    if (runCommand(argv, &out) == 0) return true;
    std::string cmd;
    for (auto &a : argv) cmd += (cmd.empty() ? "" : " ") + a;
    *unavailable = "'" + cmd + "' failed: " + out;
    return false;
}

void deleteStaleNamespaces(const std::string &ip, const std::string &prefix) {
    std::string list;
    if (runCommand({ip, "netns", "list"}, &list) != 0) return;
    std::istringstream lines(list);
    std::string line;
    while (std::getline(lines, line)) {
        const std::string name = line.substr(0, line.find(' '));
        if (name.rfind(prefix, 0) != 0) continue;
        const size_t digits = name.find_first_not_of("0123456789", prefix.size());
        if (digits == prefix.size() || digits == std::string::npos || name.size() - digits > 2 ||
            name.find_first_not_of("abcdefghijklmnopqrstuvwxyz", digits) != std::string::npos)
            continue;
        const unsigned long owner = std::stoul(name.substr(prefix.size(), digits - prefix.size()));
        if (::kill(static_cast<pid_t>(owner), 0) != 0 && errno == ESRCH) runCommand({ip, "netns", "delete", name});
    }
}

void enterNamespace(const std::string &name) {
    const std::string path = "/run/netns/" + name;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    PT_CHECK_MSG(fd >= 0, "open " << path << ": " << std::strerror(errno));
    const int r = ::setns(fd, CLONE_NEWNET);
    const int err = errno;
    ::close(fd);
    PT_CHECK_MSG(r == 0, "setns " << path << ": " << std::strerror(err));
}

// ---------------------------------------------------------------- NetnsPair

NetnsPair::NetnsPair() {
    if (::geteuid() != 0) {
        unavailable_ = "not running as root";
        return;
    }
    ip_ = findExecutable("ip");
    if (ip_.empty()) {
        unavailable_ = "iproute2 (ip) is not installed";
        return;
    }
    deleteStaleNamespaces(ip_, "pcclt");
    const std::string id = std::to_string(::getpid());
    nsA_ = "pcclt" + id + "a";
    nsB_ = "pcclt" + id + "b";
    vethA_ = "pt" + id + "a";
    vethB_ = "pt" + id + "b";
    auto step = [&](std::vector<std::string> argv) {
        argv.insert(argv.begin(), ip_);
        return runSetupStep(argv, &unavailable_);
    };
    createdA_ = step({"netns", "add", nsA_});
    createdB_ = step({"netns", "add", nsB_});
    step({"link", "add", vethA_, "netns", nsA_, "type", "veth", "peer", "name", vethB_, "netns", nsB_});
    step({"-n", nsA_, "addr", "add", std::string(kAddrA) + "/30", "dev", vethA_});
    step({"-n", nsB_, "addr", "add", std::string(kAddrB) + "/30", "dev", vethB_});
    for (const auto *ns : {&nsA_, &nsB_}) step({"-n", *ns, "link", "set", "lo", "up"});
    step({"-n", nsA_, "link", "set", vethA_, "up"});
    step({"-n", nsB_, "link", "set", vethB_, "up"});
}

NetnsPair::~NetnsPair() {
    if (createdA_) runCommand({ip_, "netns", "delete", nsA_});
    if (createdB_) runCommand({ip_, "netns", "delete", nsB_});
}

void NetnsPair::enterA() const { enterNamespace(nsA_); }

std::vector<std::string> NetnsPair::inB(const std::vector<std::string> &argv) const {
    std::vector<std::string> all{ip_, "netns", "exec", nsB_};
    all.insert(all.end(), argv.begin(), argv.end());
    return all;
}

void NetnsPair::setLink(bool up) const {
    std::string out;
    const int r = runCommand({ip_, "-n", nsB_, "link", "set", vethB_, up ? "up" : "down"}, &out);
    PT_CHECK_MSG(r == 0, "ip link set " << vethB_ << (up ? " up" : " down") << " failed: " << out);
}

void expectRunOnTwo(PeerCtx &ctx, const std::vector<float> &orig, std::vector<float> &buf,
                    const pcclReduceDescriptor_t &d, int both) {
    PT_OK(ctx.comm, pcclUpdateTopology(ctx.comm));
    PT_CHECK_EQ(attribute(ctx.comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE), 2);
    std::memcpy(buf.data(), orig.data(), orig.size() * sizeof(float));
    pcclReduceInfo_t info{};
    PT_OK(ctx.comm, pcclAllReduce(buf.data(), buf.data(), &d, ctx.comm, &info));
    PT_CHECK_EQ(info.local_world_size, 2u);
    const std::string diff = checkPattern(buf.data(), buf.size(), both, 2);
    PT_CHECK_MSG(diff.empty(), "after the topology update: " << diff);
}

} // namespace pccl_test
