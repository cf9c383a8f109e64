// Content digests of shared-state entries: XXH3-128 over the entry's bytes. The only place that
// includes xxhash. Any alignment, any size.
#pragma once
#include <cstddef>

#include "protocol/messages.h"

namespace pccl::shared_state {

protocol::Digest digest(const void *data, size_t bytes);
std::string digestHex(const protocol::Digest &d);

} // namespace pccl::shared_state
