#include "security/secret.h"

#include <sys/stat.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "security/handshake.h"
#include "util/log.h"

namespace pccl::security {

Status readSecretFile(const std::string &path, std::string *secret) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0)
        return {pcclInvalidArgument, "cannot read the secret file " + path + ": " + std::strerror(errno)};
    if (!S_ISREG(st.st_mode)) return {pcclInvalidArgument, "the secret file " + path + " is not a regular file"};
    if (st.st_mode & (S_IRWXG | S_IRWXO))
        return {pcclInvalidArgument, "the secret file " + path + " is accessible by group or others (mode " +
                                         [&] { std::ostringstream o; o << std::oct << (st.st_mode & 0777); return o.str(); }() +
                                         "); chmod 600 it"};
    std::ifstream f(path, std::ios::binary);
    if (!f) return {pcclInvalidArgument, "cannot open the secret file " + path};
    std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (s.size() > 4096) return {pcclInvalidArgument, "the secret file " + path + " holds more than 4096 bytes"};
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    *secret = std::move(s);
    return {};
}

Status loadSettings(const std::optional<std::string> &secret, const char *secretFile, uint32_t encrypt, Settings *out) {
    Settings s;
    std::string value;
    if (encrypt > 2) return {pcclInvalidArgument, "encrypt must be 0 (environment), 1 (on) or 2 (off), not " + std::to_string(encrypt)};
    if (encrypt == 0) {
        const char *env = std::getenv("PCCL_ENCRYPT");
        if (env && *env) {
            if (!std::strcmp(env, "off") || !std::strcmp(env, "0")) encrypt = 2;
            else if (!std::strcmp(env, "on") || !std::strcmp(env, "1")) encrypt = 1;
            else return {pcclInvalidArgument, std::string("PCCL_ENCRYPT=") + env + " is not on|off"};
        }
    }
    s.mode = encrypt == 2 ? Mode::Integrity : Mode::Encrypt;
    const char *envSecret = std::getenv("PCCL_SECRET");
    const char *envFile = std::getenv("PCCL_SECRET_FILE");
    if (secret) {
        value = *secret;
        s.source = "parameter";
    } else if (secretFile && *secretFile) {
        if (auto st = readSecretFile(secretFile, &value); !st.ok()) return st;
        s.source = std::string("file ") + secretFile;
    } else if (envSecret && *envSecret) {
        value = envSecret;
        s.source = "PCCL_SECRET";
    } else if (envFile && *envFile) {
        if (auto st = readSecretFile(envFile, &value); !st.ok()) return st;
        s.source = std::string("PCCL_SECRET_FILE ") + envFile;
    }
    if (!s.source.empty()) {
        if (value.size() < kMinSecretBytes)
            return {pcclInvalidArgument, "the run secret (" + s.source + ") has " + std::to_string(value.size()) +
                                             " bytes; at least " + std::to_string(kMinSecretBytes) +
                                             " are required (e.g. openssl rand -hex 32)"};
        s.runKey = runKey(value);
    }
    *out = std::move(s);
    return {};
}

void warnOpenRun(const char *who) {
    static std::atomic<bool> warned{false};
    if (warned.exchange(true)) return;
    PCCL_LOG(Warn, who << " runs without a run secret: anyone who can reach the master can join, read the model and "
                          "change it. Set PCCL_SECRET or PCCL_SECRET_FILE (docs/security.md)");
}

} // namespace pccl::security
