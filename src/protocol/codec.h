// Encoding and total, bounded decoding of control messages. A frame on the control connection
// is: u32 payload length, u16 message type (index in ControlMessage), payload (fields in the
// order PCCL_FIELDS lists them, little-endian). Decoding never throws: malformed input yields
// an error string and the caller closes that one connection.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "protocol/messages.h"

namespace pccl::protocol {

inline constexpr size_t kFrameHeaderBytes = 6;

// Appends a complete frame (header + payload) for m to out.
void encodeFrame(const ControlMessage &m, std::vector<uint8_t> &out);

// Decodes a message of wire type `type` from exactly `size` payload bytes.
std::optional<ControlMessage> decodeMessage(uint16_t type, const uint8_t *payload, size_t size, std::string *error);

} // namespace pccl::protocol
