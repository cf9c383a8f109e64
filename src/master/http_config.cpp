// What pccl-master and embedded masters share to start their status server (http_status.h): the
// token file, the environment, the one start sequence. Built with or without cpp-httplib.
#include <cstdlib>
#include <fstream>

#include "master/http_status.h"

namespace pccl::master {

Status readTokenFile(const std::string &path, std::string *token) {
    std::ifstream in(path);
    std::string line;
    if (!in || !std::getline(in, line)) return {pcclInvalidArgument, "cannot read the HTTP token file " + path};
    const auto first = line.find_first_not_of(" \t\r\n");
    const auto last = line.find_last_not_of(" \t\r\n");
    if (first == std::string::npos) return {pcclInvalidArgument, "the HTTP token file " + path + " is empty"};
    *token = line.substr(first, last - first + 1);
    return {};
}

HttpConfig HttpConfig::fromEnvironment() {
    HttpConfig c;
    if (const char *env = std::getenv("PCCL_MASTER_HTTP")) c.listen = env;
    if (const char *env = std::getenv("PCCL_MASTER_HTTP_TOKEN_FILE")) c.tokenFile = env;
    return c;
}

Status startStatusServer(HttpStatus &http, const HttpConfig &config, bool runHasSecret) {
    if (config.listen.empty()) return {};
    HttpOptions o{config.listen, "", runHasSecret};
    if (!config.tokenFile.empty()) PCCL_RETURN_IF_ERROR(readTokenFile(config.tokenFile, &o.token));
    return http.start(o);
}

} // namespace pccl::master
