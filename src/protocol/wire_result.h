// Results on the wire: control messages carry a pcclResult_t as a u8 holding its enum value
// (pccl.h never renumbers results, it only appends). These are the only conversions between the
// two; code on either side of the wire calls them instead of casting.
//
// Decoding does not reject an unknown value (the codec would then close the connection): a
// newer master may send a result appended after this build, and a failure report must fail the
// one call it concerns, not cut this peer off the master. So fromWire maps every value past
// kLastWireResult to pcclInternalError, and failureFromWire, for the fields of messages that
// report a failure (Reject, CollectiveAborted, SharedStateAborted, VoteFailed, and the `result`
// of a CollectiveDone or SharedStateDone whose `ok` is false), also maps pcclSuccess to
// pcclInternalError: a failure report never makes a call succeed.
#pragma once
#include <pccl.h>

#include <cstdint>

namespace pccl::protocol {

// The last result this build knows; raise it when pccl.h appends one (test_codec.cpp checks
// that pcclGetErrorString knows every value up to here and none past it).
inline constexpr pcclResult_t kLastWireResult = pcclAborted;

constexpr bool isKnownResult(long long v) { return v >= pcclSuccess && v <= kLastWireResult; }

// An out-of-range internal value (a cast gone wrong) travels as pcclInternalError.
constexpr uint8_t toWire(pcclResult_t r) {
    return static_cast<uint8_t>(isKnownResult(static_cast<long long>(r)) ? r : pcclInternalError);
}

constexpr pcclResult_t fromWire(uint8_t v) {
    return isKnownResult(v) ? static_cast<pcclResult_t>(v) : pcclInternalError;
}

constexpr pcclResult_t failureFromWire(uint8_t v) {
    const pcclResult_t r = fromWire(v);
    return r == pcclSuccess ? pcclInternalError : r;
}

} // namespace pccl::protocol
