// Request header decoding and validation (proto.md, "Request message", "Error values",
// "Block size constraints").
#include <catch2/catch.hpp>

#include <array>

#include "common/hex.hpp"
#include "nbd/errors.hpp"
#include "nbd/export.hpp"
#include "nbd/request.hpp"
#include "nbd/wire.hpp"

namespace {
using namespace nbd;

blockdev::DeviceInfo device() {
  blockdev::DeviceInfo info;
  info.size_bytes = 1 << 20;
  info.logical_block_size = 512;
  info.physical_block_size = 4096;
  info.max_transfer_bytes = 64 * 1024;
  info.supports_fua = true;
  info.supports_trim = true;
  info.supports_write_zeroes = true;
  return info;
}

Request req(uint16_t type, uint64_t offset, uint32_t length, uint16_t flags = 0) {
  return Request{flags, type, 0x1122334455667788, offset, length};
}

uint32_t check(const Request& r, const blockdev::DeviceInfo& info = device(),
               bool structured = false) {
  return validate(r, info, structured).error;
}

}  // namespace

TEST_CASE("request header decodes field by field", "[nbd]") {
  const auto bytes =
      common::from_hex("25609513 0001 0001 0102030405060708 0000000000001000 00000200");
  Request r;
  REQUIRE_FALSE(decode_request(bytes, r));
  CHECK(r.flags == kCmdFlagFua);
  CHECK(r.type == kCmdWrite);
  CHECK(r.cookie == 0x0102030405060708);
  CHECK(r.offset == 0x1000);
  CHECK(r.length == 0x200);

  std::array<std::byte, 28> encoded{};
  encode_request(r, encoded);
  CHECK(common::to_hex(encoded) == common::to_hex(bytes));
}

TEST_CASE("request header with a bad magic or too short is rejected", "[nbd]") {
  Request r;
  auto bytes = common::from_hex("25609514 0000 0000 0000000000000001 0000000000000000 00000200");
  CHECK(decode_request(bytes, r) == errc::bad_request_magic);
  bytes = common::from_hex("25609513 0000 0000");
  CHECK(decode_request(bytes, r) == std::errc::message_size);
  CHECK(decode_request({}, r) == std::errc::message_size);
}

TEST_CASE("valid requests pass", "[nbd]") {
  CHECK(check(req(kCmdRead, 0, 4096)) == 0);
  CHECK(check(req(kCmdRead, (1 << 20) - 512, 512)) == 0);
  CHECK(check(req(kCmdWrite, 512, 64 * 1024, kCmdFlagFua)) == 0);
  CHECK(check(req(kCmdFlush, 0, 0)) == 0);
  CHECK(check(req(kCmdTrim, 0, 1 << 20)) == 0);  // trim is not capped by the maximum
  CHECK(check(req(kCmdWriteZeroes, 0, 1 << 20, kCmdFlagNoHole | kCmdFlagFua)) == 0);
  CHECK(check(req(kCmdRead, 0, 0)) == 0);
  CHECK(check(req(kCmdDisc, 0, 0)) == 0);
  CHECK(check(req(kCmdRead, 0, 512, kCmdFlagDf), device(), true) == 0);
}

TEST_CASE("requests beyond the end: ENOSPC for writes, EINVAL otherwise", "[nbd]") {
  CHECK(check(req(kCmdRead, 1 << 20, 512)) == kEinval);
  CHECK(check(req(kCmdTrim, (1 << 20) - 512, 1024)) == kEinval);
  CHECK(check(req(kCmdWrite, 1 << 20, 512)) == kEnospc);
  CHECK(check(req(kCmdWriteZeroes, (1 << 20) - 512, 1024)) == kEnospc);
  // offset + length must not wrap around
  CHECK(check(req(kCmdRead, 0xfffffffffffffe00, 1024)) == kEinval);
  CHECK(check(req(kCmdWrite, 0xfffffffffffffe00, 1024)) == kEnospc);
}

TEST_CASE("misaligned requests get EINVAL", "[nbd]") {
  CHECK(check(req(kCmdRead, 1, 512)) == kEinval);
  CHECK(check(req(kCmdRead, 0, 511)) == kEinval);
  CHECK(check(req(kCmdWrite, 256, 512)) == kEinval);
  CHECK(check(req(kCmdTrim, 0, 100)) == kEinval);
  CHECK(check(req(kCmdWriteZeroes, 100, 512)) == kEinval);
}

TEST_CASE("reads and writes longer than the maximum block size get EINVAL", "[nbd]") {
  CHECK(check(req(kCmdRead, 0, 64 * 1024 + 512)) == kEinval);
  CHECK(check(req(kCmdWrite, 0, 64 * 1024 + 512)) == kEinval);
  SECTION("a don't-fragment read that is too large gets EOVERFLOW") {
    CHECK(check(req(kCmdRead, 0, 64 * 1024 + 512, kCmdFlagDf), device(), true) == kEoverflow);
  }
}

TEST_CASE("unknown commands and flags get EINVAL", "[nbd]") {
  CHECK(check(req(kCmdCache, 0, 512)) == kEinval);
  CHECK(check(req(kCmdBlockStatus, 0, 512)) == kEinval);
  CHECK(check(req(99, 0, 512)) == kEinval);
  CHECK(check(req(kCmdRead, 0, 512, 1u << 5)) == kEinval);
  CHECK(check(req(kCmdWrite, 0, 512, kCmdFlagNoHole)) == kEinval);  // WRITE_ZEROES only
  CHECK(check(req(kCmdRead, 0, 512, kCmdFlagReqOne)) == kEinval);   // BLOCK_STATUS only
  SECTION("DF only once structured replies are negotiated") {
    CHECK(check(req(kCmdRead, 0, 512, kCmdFlagDf), device(), false) == kEinval);
    CHECK(check(req(kCmdWrite, 0, 512, kCmdFlagDf), device(), true) == kEinval);
  }
  SECTION("FUA only when the device supports it") {
    auto info = device();
    info.supports_fua = false;
    CHECK(check(req(kCmdWrite, 0, 512, kCmdFlagFua), info) == kEinval);
    CHECK(check(req(kCmdWrite, 0, 512, kCmdFlagFua)) == 0);
    CHECK(check(req(kCmdFlush, 0, 0, kCmdFlagFua)) == 0);  // "valid for all commands"
  }
}

TEST_CASE("FLUSH with offset or length is invalid", "[nbd]") {
  CHECK(check(req(kCmdFlush, 512, 0)) == kEinval);
  CHECK(check(req(kCmdFlush, 0, 512)) == kEinval);
}

TEST_CASE("writes to a read-only export get EPERM, reads pass", "[nbd]") {
  auto info = device();
  info.read_only = true;
  CHECK(check(req(kCmdWrite, 0, 512), info) == kEperm);
  CHECK(check(req(kCmdTrim, 0, 512), info) == kEperm);
  CHECK(check(req(kCmdWriteZeroes, 0, 512), info) == kEperm);
  CHECK(check(req(kCmdRead, 0, 512), info) == 0);
  CHECK(check(req(kCmdFlush, 0, 0), info) == 0);
}

TEST_CASE("commands the device lacks get EINVAL", "[nbd]") {
  auto info = device();
  info.supports_trim = false;
  info.supports_write_zeroes = false;
  CHECK(check(req(kCmdTrim, 0, 512), info) == kEinval);
  CHECK(check(req(kCmdWriteZeroes, 0, 512), info) == kEinval);
}

TEST_CASE("fast zero requests fail fast with ENOTSUP unless the device zeroes fast", "[nbd]") {
  CHECK(check(req(kCmdWriteZeroes, 0, 512, kCmdFlagFastZero)) == kEnotsup);
  auto fast = device();
  fast.write_zeroes_may_unmap = true;
  fast.fast_zero = true;
  CHECK(check(req(kCmdWriteZeroes, 0, 512, kCmdFlagFastZero), fast) == 0);
  // NO_HOLE forbids the deallocation that makes it fast.
  CHECK(check(req(kCmdWriteZeroes, 0, 512, kCmdFlagFastZero | kCmdFlagNoHole), fast) == kEnotsup);
  auto info = device();
  info.supports_write_zeroes = false;
  CHECK(check(req(kCmdWriteZeroes, 0, 512, kCmdFlagFastZero), info) == kEinval);
}

TEST_CASE("NBD_CMD_CACHE only when advertised, within the export, also read-only", "[nbd]") {
  auto info = device();
  CHECK(check(req(kCmdCache, 0, 4096), info) == kEinval);  // not advertised: unknown
  info.supports_cache = true;
  CHECK((transmission_flags(info, false) & kFlagSendCache) != 0);
  CHECK(check(req(kCmdCache, 0, 4096), info) == 0);
  CHECK(check(req(kCmdCache, 1 << 20, 512), info) == kEinval);
  CHECK(check(req(kCmdCache, 1, 512), info) == kEinval);
  info.read_only = true;
  CHECK(check(req(kCmdCache, 0, 4096), info) == 0);
  blockdev::IoOp op{};
  CHECK(to_io_op(kCmdCache, op));
  CHECK(op == blockdev::IoOp::cache);
}

TEST_CASE("validation explains itself", "[nbd]") {
  const auto v = validate(req(kCmdRead, 1, 512), device(), false);
  CHECK_FALSE(v);
  CHECK_FALSE(v.reason.empty());
  CHECK(validate(req(kCmdRead, 0, 512), device(), false));
}

TEST_CASE("commands map to device operations", "[nbd]") {
  blockdev::IoOp op{};
  CHECK((to_io_op(kCmdRead, op) && op == blockdev::IoOp::read));
  CHECK((to_io_op(kCmdWrite, op) && op == blockdev::IoOp::write));
  CHECK((to_io_op(kCmdFlush, op) && op == blockdev::IoOp::flush));
  CHECK((to_io_op(kCmdTrim, op) && op == blockdev::IoOp::trim));
  CHECK((to_io_op(kCmdWriteZeroes, op) && op == blockdev::IoOp::write_zeroes));
  CHECK_FALSE(to_io_op(kCmdDisc, op));
}

TEST_CASE("BLOCK_STATUS is valid only with base:allocation selected", "[nbd]") {
  auto bs = [](const Request& r, bool structured, bool context) {
    return validate(r, device(), structured, context).error;
  };
  CHECK(bs(req(kCmdBlockStatus, 0, 512), true, true) == 0);
  CHECK(bs(req(kCmdBlockStatus, 0, 512), true, false) == kEinval);
  CHECK(bs(req(kCmdBlockStatus, 0, 512), false, true) == kEinval);  // no context without SR
  SECTION("REQ_ONE (and FUA once advertised) are its flags") {
    CHECK(bs(req(kCmdBlockStatus, 0, 512, kCmdFlagReqOne), true, true) == 0);
    CHECK(bs(req(kCmdBlockStatus, 0, 512, kCmdFlagFua), true, true) == 0);
    CHECK(bs(req(kCmdBlockStatus, 0, 512, kCmdFlagDf), true, true) == kEinval);
    CHECK(bs(req(kCmdBlockStatus, 0, 512, kCmdFlagNoHole), true, true) == kEinval);
  }
  SECTION("bounds, alignment and length 0 are EINVAL; no maximum length applies") {
    CHECK(bs(req(kCmdBlockStatus, (1 << 20) - 512, 1024), true, true) == kEinval);
    CHECK(bs(req(kCmdBlockStatus, 1 << 20, 512), true, true) == kEinval);
    CHECK(bs(req(kCmdBlockStatus, 256, 512), true, true) == kEinval);
    CHECK(bs(req(kCmdBlockStatus, 0, 0), true, true) == kEinval);
    CHECK(bs(req(kCmdBlockStatus, 0, 1 << 20), true, true) == 0);  // > max_transfer_bytes
  }
  SECTION("a read-only export answers it") {
    auto info = device();
    info.read_only = true;
    CHECK(validate(req(kCmdBlockStatus, 0, 512), info, true, true).error == 0);
  }
  blockdev::IoOp op{};
  CHECK((to_io_op(kCmdBlockStatus, op) && op == blockdev::IoOp::block_status));
}
