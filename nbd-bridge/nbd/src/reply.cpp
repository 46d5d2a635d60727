#include "nbd/reply.hpp"

#include <algorithm>

#include "common/bytes.hpp"
#include "nbd/wire.hpp"

namespace nbd {

std::array<std::byte, 16> encode_simple_reply(uint64_t cookie, uint32_t error) noexcept {
  std::array<std::byte, 16> out{};
  common::store_be32(out, 0, kSimpleReplyMagic);
  common::store_be32(out, 4, error);
  common::store_be64(out, 8, cookie);
  return out;
}

std::array<std::byte, 20> encode_chunk_header(uint64_t cookie, uint16_t flags, uint16_t type,
                                              uint32_t payload_length) noexcept {
  std::array<std::byte, 20> out{};
  common::store_be32(out, 0, kStructuredReplyMagic);
  common::store_be16(out, 4, flags);
  common::store_be16(out, 6, type);
  common::store_be64(out, 8, cookie);
  common::store_be32(out, 16, payload_length);
  return out;
}

std::array<std::byte, 28> encode_offset_data_header(uint64_t cookie, uint64_t offset,
                                                    uint32_t data_length, bool done) noexcept {
  std::array<std::byte, 28> out{};
  const auto header =
      encode_chunk_header(cookie, done ? kReplyFlagDone : 0, kReplyTypeOffsetData, data_length + 8);
  std::copy(header.begin(), header.end(), out.begin());
  common::store_be64(out, 20, offset);
  return out;
}

std::array<std::byte, 20> encode_none_chunk(uint64_t cookie) noexcept {
  return encode_chunk_header(cookie, kReplyFlagDone, kReplyTypeNone, 0);
}

std::vector<std::byte> encode_error_chunk(uint64_t cookie, uint32_t error,
                                          std::string_view message) {
  message = message.substr(0, kMaxStringLength);
  const auto payload_length = static_cast<uint32_t>(6 + message.size());
  std::vector<std::byte> out(kStructuredReplyHeaderSize + payload_length);
  const auto header = encode_chunk_header(cookie, kReplyFlagDone, kReplyTypeError, payload_length);
  std::copy(header.begin(), header.end(), out.begin());
  common::store_be32(out, 20, error);
  common::store_be16(out, 24, static_cast<uint16_t>(message.size()));
  const auto text = common::as_bytes(message);
  std::copy(text.begin(), text.end(), out.begin() + 26);
  return out;
}

std::vector<BlockStatusDescriptor> block_status_descriptors(
    std::span<const blockdev::Extent> extents, uint32_t request_length, bool req_one) {
  std::vector<BlockStatusDescriptor> out;
  uint32_t left = request_length;
  for (const blockdev::Extent& extent : extents) {
    if (left == 0) break;
    if (extent.length == 0) continue;
    const auto length = static_cast<uint32_t>(std::min<uint64_t>(extent.length, left));
    const uint32_t flags = ((extent.flags & blockdev::Extent::hole) ? kStateHole : 0) |
                           ((extent.flags & blockdev::Extent::zero) ? kStateZero : 0);
    left -= length;
    // "The server SHOULD use different status values between consecutive descriptors".
    if (!out.empty() && out.back().flags == flags) {
      out.back().length += length;
      continue;
    }
    // REQ_ONE: "MUST NOT send metadata on more than one extent".
    if (req_one && !out.empty()) break;
    out.push_back({length, flags});
  }
  return out;
}

std::vector<std::byte> encode_block_status_chunk(
    uint64_t cookie, uint32_t context_id, std::span<const BlockStatusDescriptor> descriptors) {
  const auto payload_length = static_cast<uint32_t>(4 + 8 * descriptors.size());
  std::vector<std::byte> out(kStructuredReplyHeaderSize + payload_length);
  const auto header =
      encode_chunk_header(cookie, kReplyFlagDone, kReplyTypeBlockStatus, payload_length);
  std::copy(header.begin(), header.end(), out.begin());
  common::store_be32(out, 20, context_id);
  size_t at = 24;
  for (const BlockStatusDescriptor& d : descriptors) {
    common::store_be32(out, at, d.length);
    common::store_be32(out, at + 4, d.flags);
    at += 8;
  }
  return out;
}

}  // namespace nbd
