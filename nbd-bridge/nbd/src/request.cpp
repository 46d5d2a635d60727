#include "nbd/request.hpp"

#include "common/bytes.hpp"
#include "nbd/errors.hpp"
#include "nbd/export.hpp"
#include "nbd/wire.hpp"

namespace nbd {

std::error_code decode_request(std::span<const std::byte> header, Request& out) noexcept {
  if (header.size() < kRequestHeaderSize) return std::make_error_code(std::errc::message_size);
  if (common::load_be32(header, 0) != kRequestMagic) return errc::bad_request_magic;
  out.flags = common::load_be16(header, 4);
  out.type = common::load_be16(header, 6);
  out.cookie = common::load_be64(header, 8);
  out.offset = common::load_be64(header, 16);
  out.length = common::load_be32(header, 24);
  return {};
}

void encode_request(const Request& request, std::span<std::byte, 28> out) noexcept {
  common::store_be32(out, 0, kRequestMagic);
  common::store_be16(out, 4, request.flags);
  common::store_be16(out, 6, request.type);
  common::store_be64(out, 8, request.cookie);
  common::store_be64(out, 16, request.offset);
  common::store_be32(out, 24, request.length);
}

namespace {

// Flags valid per command (proto.md, "Command flags"): FUA on any command once
// NBD_FLAG_SEND_FUA is advertised ("the server MUST accept all commands with this bit set"),
// DF on READ once structured replies are on, NO_HOLE and FAST_ZERO on WRITE_ZEROES, REQ_ONE
// on BLOCK_STATUS.
uint16_t allowed_flags(uint16_t command, uint16_t transmission) noexcept {
  uint16_t allowed = (transmission & kFlagSendFua) ? kCmdFlagFua : 0;
  switch (command) {
    case kCmdRead:
      if (transmission & kFlagSendDf) allowed |= kCmdFlagDf;
      break;
    case kCmdWriteZeroes:
      allowed |= kCmdFlagNoHole;
      if (transmission & kFlagSendFastZero) allowed |= kCmdFlagFastZero;
      break;
    case kCmdBlockStatus:
      allowed |= kCmdFlagReqOne;
      break;
    default:
      break;
  }
  return allowed;
}

}  // namespace

Validation validate(const Request& request, const blockdev::DeviceInfo& info,
                    bool structured_replies, bool base_allocation) noexcept {
  const uint16_t transmission = transmission_flags(info, structured_replies);
  const uint16_t command = request.type;
  switch (command) {
    case kCmdRead:
    case kCmdWrite:
    case kCmdDisc:
    case kCmdFlush:
    case kCmdTrim:
    case kCmdWriteZeroes:
      break;
    case kCmdCache:
      // proto.md NBD_FLAG_SEND_CACHE: without it the client "SHOULD NOT send" CACHE; an
      // unknown command to us then.
      if (transmission & kFlagSendCache) break;
      return {kEinval, "NBD_CMD_CACHE not supported"};
    case kCmdBlockStatus:
      // Without a selected metadata context (which needs structured replies) the client "MUST
      // NOT send" it: an unknown command to us.
      if (structured_replies && base_allocation) break;
      return {kEinval, "NBD_CMD_BLOCK_STATUS without a metadata context"};
    // "Servers SHOULD reply with NBD_EINVAL" to unknown commands.
    default:
      return {kEinval, "unsupported command"};
  }
  if (command == kCmdDisc) return {};
  if ((request.flags & ~allowed_flags(command, transmission)) != 0) {
    return {kEinval, "command flag not valid for this command"};
  }
  const bool writes = command == kCmdWrite || command == kCmdTrim || command == kCmdWriteZeroes;
  if (writes && info.read_only) return {kEperm, "export is read-only"};
  if (command == kCmdTrim && !(transmission & kFlagSendTrim)) {
    return {kEinval, "NBD_CMD_TRIM not supported"};
  }
  if (command == kCmdWriteZeroes && !(transmission & kFlagSendWriteZeroes)) {
    return {kEinval, "NBD_CMD_WRITE_ZEROES not supported"};
  }
  if (command == kCmdFlush) {
    // "length and offset are reserved, and MUST be set to all-zero".
    if (request.offset != 0 || request.length != 0) {
      return {kEinval, "NBD_CMD_FLUSH with nonzero offset or length"};
    }
    return {};
  }

  // proto.md NBD_CMD_BLOCK_STATUS: a length of 0 has unspecified behaviour (no disconnect);
  // an error tells the client more than an empty answer, which the spec does not allow.
  if (command == kCmdBlockStatus && request.length == 0) {
    return {kEinval, "NBD_CMD_BLOCK_STATUS of length 0"};
  }
  const uint64_t size = info.size_bytes;
  if (request.offset > size || request.length > size - request.offset) {
    // "Error values": ENOSPC for writes beyond the end, EINVAL for reads and trims.
    const bool grows = command == kCmdWrite || command == kCmdWriteZeroes;
    return {grows ? kEnospc : kEinval, "request extends beyond the end of the export"};
  }
  const BlockSizes sizes = block_sizes(info);
  if (request.offset % sizes.minimum != 0 || request.length % sizes.minimum != 0) {
    return {kEinval, "request not aligned to the minimum block size"};
  }
  if ((command == kCmdRead || command == kCmdWrite) && request.length > sizes.maximum) {
    // A DF read we would have to fragment earns EOVERFLOW (proto.md NBD_CMD_READ).
    if (command == kCmdRead && (request.flags & kCmdFlagDf)) {
      return {kEoverflow, "read too large to send unfragmented"};
    }
    return {kEinval, "request longer than the maximum block size"};
  }
  if (command == kCmdWriteZeroes && (request.flags & kCmdFlagFastZero) &&
      (!info.fast_zero || (request.flags & kCmdFlagNoHole))) {
    // proto.md NBD_CMD_FLAG_FAST_ZERO: "the server MUST fail quickly with NBD_ENOTSUP" unless
    // the zeroing is faster than a write: only deallocation on a LU that reads unmapped
    // blocks as zeros is (DeviceInfo::fast_zero); NO_HOLE forbids deallocation.
    return {kEnotsup, "fast zero not available"};
  }
  return {};
}

bool to_io_op(uint16_t command, blockdev::IoOp& op) noexcept {
  switch (command) {
    case kCmdRead:
      op = blockdev::IoOp::read;
      return true;
    case kCmdWrite:
      op = blockdev::IoOp::write;
      return true;
    case kCmdFlush:
      op = blockdev::IoOp::flush;
      return true;
    case kCmdTrim:
      op = blockdev::IoOp::trim;
      return true;
    case kCmdWriteZeroes:
      op = blockdev::IoOp::write_zeroes;
      return true;
    case kCmdBlockStatus:
      op = blockdev::IoOp::block_status;
      return true;
    case kCmdCache:
      op = blockdev::IoOp::cache;
      return true;
    default:
      return false;
  }
}

}  // namespace nbd
