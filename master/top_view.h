// pccl-top's frame: the master's /api/status document (docs/status.schema.json) rendered as text
// for a terminal, with what the status page shows (docs/observability.md): the run line, the
// peers, each group's ring with its links' bandwidth, the collectives and the last events.
// Pure: no I/O, so the tests feed it documents directly.
#pragma once
#include <cstddef>
#include <string>

#include "util/status.h"

namespace pccl::top {

struct FrameOptions {
    std::string source;  // shown in the run line: where the document came from ("HOST:PORT")
    size_t events = 10;  // the newest events shown
};

// One frame (lines ending in '\n'), or pcclInvalidArgument naming what is wrong when `body` is
// not JSON or not a status document (a missing field, a field of the wrong type).
Result<std::string> renderFrame(const std::string &body, const FrameOptions &options);

} // namespace pccl::top
