// Transmission-phase requests (proto.md, "Request message", "Request types", "Error values"):
// decoding the 28-byte header and deciding, before any I/O, which NBD error a request earns.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <system_error>

#include <blockdev/block_device.hpp>

namespace nbd {

struct Request {
  uint16_t flags = 0;   // NBD_CMD_FLAG_*
  uint16_t type = 0;    // NBD_CMD_*
  uint64_t cookie = 0;  // the "handle": echoed in every reply
  uint64_t offset = 0;
  uint32_t length = 0;
  friend bool operator==(const Request&, const Request&) = default;
};

// Decodes a request header. Errors: errc::bad_request_magic (the stream has lost framing: close
// the connection) or std::errc::message_size when fewer than 28 bytes are given.
std::error_code decode_request(std::span<const std::byte> header, Request& out) noexcept;

// Encodes a request header (for tests and tools).
void encode_request(const Request& request, std::span<std::byte, 28> out) noexcept;

struct Validation {
  uint32_t error = 0;            // 0 = go ahead, else an NBD error value for the reply
  std::string_view reason = {};  // static text for logs and structured error messages
  explicit operator bool() const noexcept { return error == 0; }
};

// Checks a request against the export before it reaches the device. `structured_replies`
// matters because NBD_CMD_FLAG_DF is only valid once structured replies are negotiated;
// `base_allocation` (HandshakeOutcome::base_allocation) because NBD_CMD_BLOCK_STATUS is only
// valid once a metadata context is selected, and is otherwise an unknown command.
// Order: unknown command, flags, read-only, unsupported command, bounds, alignment, length.
Validation validate(const Request& request, const blockdev::DeviceInfo& info,
                    bool structured_replies, bool base_allocation = false) noexcept;

// Maps a validated command to the device operation; false for commands with no device op.
bool to_io_op(uint16_t command, blockdev::IoOp& op) noexcept;

}  // namespace nbd
