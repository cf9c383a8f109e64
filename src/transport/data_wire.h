// The data plane's wire format, every structure in one place with one encode and one decode:
// the hello and acknowledgement that open a data connection (through the field codec of the
// control messages, protocol/field_codec.h) and the header of every frame (fixed offsets: it is
// on the hot path, encoded into the send queue's own memory).
//
// A connection: the opener sends DataHello; the receiver answers DataAck and, unless it accepted,
// closes. Then the opener sends frames (header, then payload unless sent by reference). On a
// same-host connection (transport/same_host.h) the receiver sends back a running u64 total of the
// by-reference frames it has consumed; otherwise it never sends after the acknowledgement.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "protocol/messages.h"
#include "transport/same_host.h"
#include "util/uuid.h"

namespace pccl::transport {

inline constexpr uint32_t kDataMagic = 0x4c444350;  // "PCDL"

// Opens a data connection: who sends, to whom it thinks it is talking, and, when `offer` is 1,
// the sender's same-host identity (any other value of `offer`: no offer, identity ignored).
struct DataHello {
    uint32_t magic = kDataMagic;
    uint16_t version = protocol::kProtocolVersion;
    Uuid sender;
    Uuid receiver;
    uint8_t offer = 0;
    std::array<uint8_t, 3> reserved{};  // sent as zero, ignored on receipt
    uint32_t pid = 0;
    uint64_t netns = 0;
    uint64_t token_address = 0;
    std::array<uint8_t, 16> token{};
    PCCL_FIELDS(magic, version, sender, receiver, offer, reserved, pid, netns, token_address, token)

    static DataHello make(const Uuid &sender, const Uuid &receiver, const SameHostIdentity &id, bool offer);
    bool offersSameHost() const { return offer == 1; }
    SameHostIdentity identity() const;
};
inline constexpr size_t kDataHelloBytes = 78;

// The receiver's answer: whether it accepted the hello (if not, it closes the connection after
// this), and whether frames on this connection use same-host copies.
struct DataAck {
    uint32_t magic = kDataMagic;
    bool accepted = false;
    bool same_host = false;
    std::array<uint8_t, 2> reserved{};  // sent as zero, ignored on receipt
    PCCL_FIELDS(magic, accepted, same_host, reserved)
};
inline constexpr size_t kDataAckBytes = 8;

std::array<uint8_t, kDataHelloBytes> encodeDataHello(const DataHello &h);
std::array<uint8_t, kDataAckBytes> encodeDataAck(const DataAck &a);
// nullopt unless `size` is exactly the structure's size and every field is well-formed.
std::optional<DataHello> decodeDataHello(const uint8_t *data, size_t size);
std::optional<DataAck> decodeDataAck(const uint8_t *data, size_t size);

// The header of one frame of an operation.
struct SegmentHeader {
    uint64_t seq = 0;
    uint64_t offset = 0;  // in elements of the operation's logical buffer
    uint32_t bytes = 0;
    uint8_t phase = 0;
};
inline constexpr size_t kSegmentHeaderBytes = 24;
inline constexpr uint32_t kMaxSegmentBytes = 64u << 20;

// A frame header as it travels: {u64 seq, u64 offset, u32 bytes, u8 phase, u8 by_ref, 2 zero
// bytes}, and on a same-host connection 8 more bytes: the payload's address in the sender when
// by_ref is 1 (its payload is then not sent), else zero. A frame is sent by reference only when
// it is at least kRefMinBytes; smaller ones carry their payload inline, as on TCP.
struct FrameHeader {
    SegmentHeader segment;
    bool byRef = false;
    uint64_t address = 0;
};
inline constexpr size_t kRefBytes = 8;
inline constexpr size_t kRefMinBytes = 16 << 10;
inline constexpr size_t kMaxFrameHeaderBytes = kSegmentHeaderBytes + kRefBytes;
// What the receiver of a same-host connection sends: the u64 total of by-reference frames consumed.
inline constexpr size_t kConsumedBytes = 8;

constexpr size_t frameHeaderBytes(bool sameHost) { return kSegmentHeaderBytes + (sameHost ? kRefBytes : 0); }

// Writes frameHeaderBytes(sameHost) bytes to out. byRef requires sameHost.
void encodeFrameHeader(const FrameHeader &f, bool sameHost, uint8_t *out);
// Reads frameHeaderBytes(sameHost) bytes; nullopt if malformed: nonzero padding, by_ref other
// than 0, or 1 on a same-host connection, or more than kMaxSegmentBytes of payload.
std::optional<FrameHeader> decodeFrameHeader(const uint8_t *in, bool sameHost);
// The seq of an encoded frame header (to find a queued frame's operation).
uint64_t encodedSeq(const uint8_t *header);

} // namespace pccl::transport
