// Transmission-phase reply encoders (proto.md, "Simple reply message", "Structured reply chunk
// message", "Structured reply types"). Payload data (READ contents) is never copied here: the
// encoders produce headers the driver sends with the data in one gathered write.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include <blockdev/block_device.hpp>

namespace nbd {

// Simple reply: magic, error, cookie. For a successful READ the data follows.
std::array<std::byte, 16> encode_simple_reply(uint64_t cookie, uint32_t error) noexcept;

// Structured chunk header: magic, flags, type, cookie, payload length.
std::array<std::byte, 20> encode_chunk_header(uint64_t cookie, uint16_t flags, uint16_t type,
                                              uint32_t payload_length) noexcept;

// NBD_REPLY_TYPE_OFFSET_DATA header (chunk header + 64-bit offset); `data_length` bytes of data
// follow. Marked NBD_REPLY_FLAG_DONE when `done` (we only do so once the data is in hand).
// data_length must be in [1, 2^32 - 9].
std::array<std::byte, 28> encode_offset_data_header(uint64_t cookie, uint64_t offset,
                                                    uint32_t data_length, bool done) noexcept;

// NBD_REPLY_TYPE_NONE with NBD_REPLY_FLAG_DONE: a successful reply with no payload.
std::array<std::byte, 20> encode_none_chunk(uint64_t cookie) noexcept;

// NBD_REPLY_TYPE_ERROR with NBD_REPLY_FLAG_DONE: error value, message length, message
// (truncated to the 4096-byte string limit).
std::vector<std::byte> encode_error_chunk(uint64_t cookie, uint32_t error,
                                          std::string_view message);

// One block status descriptor of the base:allocation context: length in bytes and the
// NBD_STATE_HOLE / NBD_STATE_ZERO flags.
struct BlockStatusDescriptor {
  uint32_t length = 0;
  uint32_t flags = 0;
  friend bool operator==(const BlockStatusDescriptor&, const BlockStatusDescriptor&) = default;
};

// The descriptors answering an NBD_CMD_BLOCK_STATUS of `request_length` bytes from the
// device's extents (proto.md NBD_CMD_BLOCK_STATUS): consecutive from the request's offset,
// cut at the requested length, neighbours of equal flags merged, empty extents skipped, and with
// `req_one` (NBD_CMD_FLAG_REQ_ONE) only the first. Empty when the device reported nothing, which
// is no valid answer ("the server MUST return at least one status descriptor").
std::vector<BlockStatusDescriptor> block_status_descriptors(
    std::span<const blockdev::Extent> extents, uint32_t request_length, bool req_one);

// NBD_REPLY_TYPE_BLOCK_STATUS with NBD_REPLY_FLAG_DONE (the only chunk: we select one
// context): metadata context id, then per descriptor its length and status flags.
std::vector<std::byte> encode_block_status_chunk(
    uint64_t cookie, uint32_t context_id, std::span<const BlockStatusDescriptor> descriptors);

}  // namespace nbd
