// Transmission-phase request header decode and validation (proto.md, "Request message",
// "Request types", "Error values") against exports of varied geometry. A request validate()
// lets through must be safe to hand to the device: inside the export, aligned, bounded.
//
// Input: [device byte][request header (28 bytes)...]
//   device bits 0-2: logical block size 512 << n (n = 7 gives an invalid 65536 << 1, which must
//   fall back), bit 3 read-only, bit 4 TRIM/WRITE_ZEROES, bit 5 FUA, bit 6 structured replies,
//   bit 7 odd export size and transfer limit. The cookie's low bit says whether base:allocation
//   was selected (NBD_CMD_BLOCK_STATUS).
#include <array>
#include <vector>

#include <nbd/errors.hpp>
#include <nbd/export.hpp>
#include <nbd/request.hpp>
#include <nbd/wire.hpp>

#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* raw, size_t size) {
  auto input = fuzz::as_bytes(raw, size);
  const fuzz::Prefix prefix(input, 1);
  blockdev::DeviceInfo info;
  info.logical_block_size = 512u << (prefix.u8(0) & 7u);
  info.physical_block_size = info.logical_block_size;
  info.read_only = prefix.bit(0, 3);
  info.supports_trim = info.supports_write_zeroes = prefix.bit(0, 4);
  info.supports_fua = prefix.bit(0, 5);
  const bool structured = prefix.bit(0, 6);
  info.size_bytes = prefix.bit(0, 7) ? (uint64_t{1} << 40) + 12345 : uint64_t{1} << 30;
  info.max_transfer_bytes = prefix.bit(0, 7) ? 1000000 : 1u << 20;

  nbd::Request request;
  const std::error_code ec = nbd::decode_request(input, request);
  if (input.size() < nbd::kRequestHeaderSize) {
    FUZZ_CHECK(ec);
    return 0;
  }
  if (ec) {
    FUZZ_CHECK(ec == nbd::errc::bad_request_magic);
    return 0;
  }
  // What decode read, encode writes back byte for byte.
  std::array<std::byte, nbd::kRequestHeaderSize> again{};
  nbd::encode_request(request, again);
  FUZZ_CHECK(std::equal(again.begin(), again.end(), input.begin()));

  const bool base_allocation = (request.cookie & 1) != 0;
  const nbd::Validation v = nbd::validate(request, info, structured, base_allocation);
  (void)nbd::nbd_error_name(v.error);
  blockdev::IoOp op{};
  const bool has_op = nbd::to_io_op(request.type, op);
  if (!v || request.type == nbd::kCmdDisc) return 0;
  FUZZ_CHECK(has_op);
  if (request.type == nbd::kCmdFlush) {
    FUZZ_CHECK(request.offset == 0 && request.length == 0);
    return 0;
  }
  const nbd::BlockSizes sizes = nbd::block_sizes(info);
  FUZZ_CHECK(sizes.minimum != 0 && sizes.maximum >= sizes.minimum);
  FUZZ_CHECK(request.offset <= info.size_bytes);
  FUZZ_CHECK(request.length <= info.size_bytes - request.offset);
  FUZZ_CHECK(request.offset % sizes.minimum == 0 && request.length % sizes.minimum == 0);
  if (request.type == nbd::kCmdRead || request.type == nbd::kCmdWrite) {
    FUZZ_CHECK(request.length <= sizes.maximum);
    FUZZ_CHECK(request.length <= nbd::kMaxPayloadBytes);
  }
  const bool writes = request.type == nbd::kCmdWrite || request.type == nbd::kCmdTrim ||
                      request.type == nbd::kCmdWriteZeroes;
  if (writes) FUZZ_CHECK(!info.read_only);
  if (request.type == nbd::kCmdBlockStatus)
    FUZZ_CHECK(structured && base_allocation && request.length > 0);
  return 0;
}
