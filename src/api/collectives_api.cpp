// The C facade of broadcast, all-gather, reduce-scatter and barrier: argument checks, then the
// all-reduce's own path (Communicator::startAllReduce with the kind in ReduceArgs, awaited with
// pcclAwaitAsyncReduce). Layouts and fault semantics: pccl.h and docs/collectives.md.
#include <pccl.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "api/api_common.h"
#include "collectives/quantize.h"
#include "collectives/reduce_kernels.h"
#include "protocol/messages.h"

using namespace pccl;
using pccl::api::checkComm;
using pccl::api::fail;
using pccl::api::guarded;

namespace {

// What the blocks look like from this peer: the whole buffer and its own block, in elements.
struct Layout {
    std::vector<uint64_t> counts;  // empty: even
    size_t total = 0, ownOffset = 0, ownCount = 0;
};

std::string tagged(CollectiveKind kind, uint64_t tag) {
    return std::string(collectiveName(kind)) + " tag " + std::to_string(tag);
}

Status checkDtype(pcclDataType_t dtype) {
    const long long v = api::rawEnum(dtype);
    if (v < 0 || v > pcclDouble) return invalidArgument("unknown data type " + std::to_string(v));
    return {};
}

bool overlap(const void *a, size_t aBytes, const void *b, size_t bBytes) {
    const auto *x = static_cast<const uint8_t *>(a), *y = static_cast<const uint8_t *>(b);
    return x < y + bBytes && y < x + aBytes;
}

// The group as this peer sees it now: its size must be the descriptor's world_size, and at least
// two (pcclTooFewPeers, as for the all-reduce). *rank: this peer's ring rank. A communicator that
// is not connected passes (rank 0) and is refused by the session with pcclInvalidUsage.
Status checkGroup(const pcclComm_t *comm, uint32_t world, const std::string &what, uint32_t *rank) {
    *rank = 0;
    if (world == 0) return invalidArgument(what + ": world_size is 0 (the group size the buffers are laid out for)");
    if (world > protocol::kMaxVectorItems)
        return invalidArgument(what + ": world_size " + std::to_string(world) + " is too large");
    if (!comm->rep->connected()) return {};
    auto size = comm->rep->attribute(PCCL_ATTRIBUTE_PEER_GROUP_WORLD_SIZE);
    if (!size.ok()) return size.status();
    if (*size < 2)
        return {pcclTooFewPeers, what + ": the peer group of this peer has " + std::to_string(*size) +
                                     " peer(s) (a collective needs at least two); nothing was written"};
    if (static_cast<uint32_t>(*size) != world)
        return {pcclRankConnectionLost, what + ": the peer group has " + std::to_string(*size) +
                                            " peers, not the descriptor's world_size " + std::to_string(world) +
                                            " (the group changed: size the buffers for the current group and retry)"};
    auto r = comm->rep->attribute(PCCL_ATTRIBUTE_RANK);
    if (!r.ok()) return r.status();
    *rank = static_cast<uint32_t>(*r);
    return {};
}

Result<Layout> layout(size_t count, const size_t *counts, uint32_t world, uint32_t rank, size_t esize,
                      const std::string &what) {
    Layout l;
    const uint64_t limit = SIZE_MAX / 8 / std::max<size_t>(esize, 1);
    if (counts) {
        l.counts.assign(counts, counts + world);
        for (uint32_t r = 0; r < world; ++r) {
            if (counts[r] > limit || l.total > limit - counts[r])
                return invalidArgument(what + ": counts sum to more than can be addressed");
            if (r == rank) l.ownOffset = l.total, l.ownCount = counts[r];
            l.total += counts[r];
        }
        if (l.total == 0) return invalidArgument(what + ": every count is 0 (nothing to move)");
        return l;
    }
    if (count == 0) return invalidArgument(what + ": count is 0 (give the elements of one rank's block)");
    if (count > limit / world) return invalidArgument(what + ": world_size x count is too large");
    l.total = count * world;
    l.ownOffset = count * rank;
    l.ownCount = count;
    return l;
}

// Starts the collective described by args on comm; the handle names it for pcclAwaitAsyncReduce.
pcclResult_t start(const pcclComm_t *comm, const peer::ReduceArgs &args, pcclAsyncReduceOp_t *handle) {
    if (auto st = comm->rep->startAllReduce(args); !st.ok()) return fail(comm, st);
    handle->comm = const_cast<pcclComm_t *>(comm);
    handle->tag = args.tag;
    return pcclSuccess;
}

// Checks the block collectives share: buffers, dtype, layout. whole/own: the buffer holding every
// block and the one holding this rank's; in place when own is its block inside whole.
Result<peer::ReduceArgs> blockArgs(const pcclComm_t *comm, CollectiveKind kind, const void *whole, const void *own,
                                   size_t count, const size_t *counts, uint32_t world, pcclDataType_t dtype,
                                   uint64_t tag) {
    const std::string what = tagged(kind, tag);
    if (!whole || !own) return invalidArgument(what + ": sendbuf or recvbuf is NULL");
    PCCL_RETURN_IF_ERROR(checkDtype(dtype));
    uint32_t rank = 0;
    PCCL_RETURN_IF_ERROR(checkGroup(comm, world, what, &rank));
    const size_t esize = collectives::dataTypeSize(dtype);
    auto l = layout(count, counts, world, rank, esize, what);
    if (!l.ok()) return l.status();
    const auto *block = static_cast<const uint8_t *>(whole) + l->ownOffset * esize;
    if (own != block && overlap(whole, l->total * esize, own, l->ownCount * esize))
        return invalidArgument(what + ": the buffers overlap (in place means this rank's block inside the whole buffer, at "
                                      "offset " + std::to_string(l->ownOffset) + " elements)");
    peer::ReduceArgs a;
    a.kind = kind;
    a.world = world;
    a.counts = l->counts;
    a.count = counts ? 0 : count;
    a.dtype = dtype;
    a.tag = tag;
    return a;
}

} // namespace

extern "C" {

PCCL_EXPORT pcclResult_t pcclAllGatherAsync(const void *sendbuf, void *recvbuf, const pcclAllGatherDescriptor_t *d,
                                            const pcclComm_t *comm, pcclAsyncReduceOp_t *handle) {
    return guarded(comm, [&] {
        if (auto st = checkComm(comm); !st.ok()) return fail(comm, st);
        if (!d) return fail(comm, invalidArgument("all-gather descriptor is NULL"));
        if (!handle) return fail(comm, invalidArgument("reduce_handle_out is NULL"));
        auto a = blockArgs(comm, CollectiveKind::AllGather, recvbuf, sendbuf, d->count, d->counts, d->world_size,
                           d->datatype, d->tag);
        if (!a.ok()) return fail(comm, a.status());
        a->send = sendbuf;
        a->recv = recvbuf;
        return start(comm, *a, handle);
    });
}

PCCL_EXPORT pcclResult_t pcclReduceScatterAsync(const void *sendbuf, void *recvbuf,
                                                const pcclReduceScatterDescriptor_t *d, const pcclComm_t *comm,
                                                pcclAsyncReduceOp_t *handle) {
    return guarded(comm, [&] {
        if (auto st = checkComm(comm); !st.ok()) return fail(comm, st);
        if (!d) return fail(comm, invalidArgument("reduce-scatter descriptor is NULL"));
        if (!handle) return fail(comm, invalidArgument("reduce_handle_out is NULL"));
        const long long op = api::rawEnum(d->op);
        if (op < 0 || op > pcclMin) return fail(comm, invalidArgument("unknown reduce op " + std::to_string(op)));
        const auto &q = d->quantization_options;
        const long long algo = api::rawEnum(q.algorithm), qtype = api::rawEnum(q.quantized_datatype);
        if (algo < pcclQuantNone || algo > pcclQuantZeroPointScale)
            return fail(comm, invalidArgument("unknown quantization algorithm " + std::to_string(algo)));
        if (algo != pcclQuantNone && (qtype < 0 || qtype > pcclDouble))
            return fail(comm, invalidArgument("unknown quantized data type " + std::to_string(qtype)));
        if (auto st = checkDtype(d->src_descriptor.datatype); !st.ok()) return fail(comm, st);
        if (auto st = collectives::checkQuantization(d->src_descriptor.datatype, d->op, q); !st.ok())
            return fail(comm, st);
        auto a = blockArgs(comm, CollectiveKind::ReduceScatter, sendbuf, recvbuf, d->count, d->counts, d->world_size,
                           d->src_descriptor.datatype, d->tag);
        if (!a.ok()) return fail(comm, a.status());
        a->send = sendbuf;
        a->recv = recvbuf;
        a->op = d->op;
        a->quant = q;
        return start(comm, *a, handle);
    });
}

PCCL_EXPORT pcclResult_t pcclBroadcastAsync(const void *sendbuf, void *recvbuf, const pcclBroadcastDescriptor_t *d,
                                            const pcclComm_t *comm, pcclAsyncReduceOp_t *handle) {
    return guarded(comm, [&] {
        if (auto st = checkComm(comm); !st.ok()) return fail(comm, st);
        if (!d) return fail(comm, invalidArgument("broadcast descriptor is NULL"));
        if (!handle) return fail(comm, invalidArgument("reduce_handle_out is NULL"));
        const std::string what = tagged(CollectiveKind::Broadcast, d->tag);
        if (!recvbuf) return fail(comm, invalidArgument(what + ": recvbuf is NULL"));
        if (d->count == 0) return fail(comm, invalidArgument(what + ": count is 0"));
        if (auto st = checkDtype(d->datatype); !st.ok()) return fail(comm, st);
        const size_t bytes = d->count * collectives::dataTypeSize(d->datatype);
        if (d->count > SIZE_MAX / 8) return fail(comm, invalidArgument(what + ": count is too large"));
        if (d->world_size && d->root >= d->world_size)
            return fail(comm, invalidArgument(what + ": root " + std::to_string(d->root) + " is not below world_size " +
                                              std::to_string(d->world_size)));
        uint32_t rank = 0;
        if (auto st = checkGroup(comm, d->world_size, what, &rank); !st.ok()) return fail(comm, st);
        if (comm->rep->connected() && rank == d->root && !sendbuf)
            return fail(comm, invalidArgument(what + ": sendbuf is NULL on the root"));
        if (sendbuf && sendbuf != recvbuf && overlap(sendbuf, bytes, recvbuf, bytes))
            return fail(comm, invalidArgument(what + ": sendbuf and recvbuf overlap partially"));
        peer::ReduceArgs a;
        a.kind = CollectiveKind::Broadcast;
        a.world = d->world_size;
        a.root = d->root;
        a.send = rank == d->root ? sendbuf : (sendbuf == recvbuf ? recvbuf : nullptr);
        a.recv = recvbuf;
        a.count = d->count;
        a.dtype = d->datatype;
        a.tag = d->tag;
        return start(comm, a, handle);
    });
}

PCCL_EXPORT pcclResult_t pcclAllGather(const void *sendbuf, void *recvbuf, const pcclAllGatherDescriptor_t *descriptor,
                                       const pcclComm_t *comm, pcclReduceInfo_t *info) {
    pcclAsyncReduceOp_t handle;
    const pcclResult_t started = pcclAllGatherAsync(sendbuf, recvbuf, descriptor, comm, &handle);
    return started != pcclSuccess ? started : pcclAwaitAsyncReduce(&handle, info);
}

PCCL_EXPORT pcclResult_t pcclReduceScatter(const void *sendbuf, void *recvbuf,
                                           const pcclReduceScatterDescriptor_t *descriptor, const pcclComm_t *comm,
                                           pcclReduceInfo_t *info) {
    pcclAsyncReduceOp_t handle;
    const pcclResult_t started = pcclReduceScatterAsync(sendbuf, recvbuf, descriptor, comm, &handle);
    return started != pcclSuccess ? started : pcclAwaitAsyncReduce(&handle, info);
}

PCCL_EXPORT pcclResult_t pcclBroadcast(const void *sendbuf, void *recvbuf, const pcclBroadcastDescriptor_t *descriptor,
                                       const pcclComm_t *comm, pcclReduceInfo_t *info) {
    pcclAsyncReduceOp_t handle;
    const pcclResult_t started = pcclBroadcastAsync(sendbuf, recvbuf, descriptor, comm, &handle);
    return started != pcclSuccess ? started : pcclAwaitAsyncReduce(&handle, info);
}

PCCL_EXPORT pcclResult_t pcclBarrier(const pcclComm_t *comm, uint64_t tag) {
    pcclAsyncReduceOp_t handle;
    const pcclResult_t started = guarded(comm, [&] {
        if (auto st = checkComm(comm); !st.ok()) return fail(comm, st);
        peer::ReduceArgs a;
        a.kind = CollectiveKind::Barrier;
        a.dtype = pcclUint8;
        a.tag = tag;
        if (comm->rep->connected()) {
            // The group as it is now: a peer lost before everyone arrived fails the barrier.
            auto size = comm->rep->attribute(PCCL_ATTRIBUTE_PEER_GROUP_WORLD_SIZE);
            if (!size.ok()) return fail(comm, size.status());
            uint32_t rank = 0;
            if (auto st = checkGroup(comm, static_cast<uint32_t>(std::max(*size, 1)), tagged(a.kind, tag), &rank); !st.ok())
                return fail(comm, st);
            a.world = static_cast<uint32_t>(*size);
        }
        return start(comm, a, &handle);
    });
    return started != pcclSuccess ? started : pcclAwaitAsyncReduce(&handle, nullptr);
}

} // extern "C"
