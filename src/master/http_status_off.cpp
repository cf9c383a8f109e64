// HttpStatus in a build without cpp-httplib (-DPCCL_HTTP=OFF): a master asked to serve its
// status (--http, PCCL_MASTER_HTTP, pcclMasterCreateParamsEx_t.http_listen) fails to start with
// this reason instead of running without it.
#include "master/http_status.h"

// Nothing defines httplib::Server in this build; HttpStatus::server_ stays null.
namespace httplib {
class Server {};
} // namespace httplib

namespace pccl::master {

HttpStatus::HttpStatus() = default;
HttpStatus::~HttpStatus() = default;

Status HttpStatus::start(const HttpOptions &options) {
    return {pcclInvalidArgument, "status server on " + options.listen +
                                     ": this build of pccl has no HTTP server (built with -DPCCL_HTTP=OFF)"};
}

void HttpStatus::stop() {}

void HttpStatus::publish(std::shared_ptr<const RunView>) {}

} // namespace pccl::master
