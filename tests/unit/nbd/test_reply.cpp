// Reply encoders (proto.md, "Simple reply message", "Structured reply chunk message").
#include <catch2/catch.hpp>

#include <string>

#include "common/hex.hpp"
#include "nbd/reply.hpp"
#include "nbd/wire.hpp"

using common::to_hex;

namespace {
// Hex with spaces between fields, as written in the tests, to the form to_hex() produces.
inline std::string hex(std::string_view spaced) {
  return common::to_hex(common::from_hex(spaced));
}

}  // namespace

TEST_CASE("simple reply: magic, error, cookie", "[nbd]") {
  CHECK(to_hex(nbd::encode_simple_reply(0x0102030405060708, 0)) ==
        hex("67446698 00000000 0102030405060708"));
  CHECK(to_hex(nbd::encode_simple_reply(7, nbd::kEinval)) ==
        hex("67446698 00000016 0000000000000007"));
}

TEST_CASE("structured OFFSET_DATA header counts the offset in the length", "[nbd]") {
  CHECK(to_hex(nbd::encode_offset_data_header(0xabc, 0x1000, 512, true)) ==
        hex("668e33ef 0001 0001 0000000000000abc 00000208 0000000000001000"));
  CHECK(to_hex(nbd::encode_offset_data_header(1, 0, 1, false)) ==
        hex("668e33ef 0000 0001 0000000000000001 00000009 0000000000000000"));
}

TEST_CASE("structured NONE chunk is final and empty", "[nbd]") {
  CHECK(to_hex(nbd::encode_none_chunk(5)) == hex("668e33ef 0001 0000 0000000000000005 00000000"));
}

TEST_CASE("structured ERROR chunk carries error and message", "[nbd]") {
  CHECK(to_hex(nbd::encode_error_chunk(9, nbd::kEio, "bad")) ==
        hex("668e33ef 0001 8001 0000000000000009 00000009 00000005 0003 626164"));
  CHECK(to_hex(nbd::encode_error_chunk(9, nbd::kEinval, "")) ==
        hex("668e33ef 0001 8001 0000000000000009 00000006 00000016 0000"));
}

TEST_CASE("structured ERROR message is cut at the 4096-byte string limit", "[nbd]") {
  const std::string long_message(5000, 'x');
  const auto chunk = nbd::encode_error_chunk(1, nbd::kEio, long_message);
  CHECK(chunk.size() == 20 + 6 + 4096);
  CHECK(to_hex(std::span(chunk).subspan(16, 4)) == "00001006");
  CHECK(to_hex(std::span(chunk).subspan(24, 2)) == "1000");
}

TEST_CASE("chunk header encodes flags and type", "[nbd]") {
  CHECK(to_hex(nbd::encode_chunk_header(2, 0, nbd::kReplyTypeOffsetHole, 12)) ==
        hex("668e33ef 0000 0002 0000000000000002 0000000c"));
}

TEST_CASE("BLOCK_STATUS chunk: context id, then length and flags per descriptor", "[nbd]") {
  const std::vector<nbd::BlockStatusDescriptor> d = {{0x10000, 0}, {0x200, 3}};
  CHECK(to_hex(nbd::encode_block_status_chunk(0x0102030405060708, 1, d)) ==
        hex("668e33ef 0001 0005 0102030405060708 00000014 00000001"
            "00010000 00000000 00000200 00000003"));
}

TEST_CASE("block status descriptors from device extents", "[nbd]") {
  using blockdev::Extent;
  using D = nbd::BlockStatusDescriptor;
  const uint32_t hole_zero = Extent::hole | Extent::zero;
  SECTION("flags map to NBD_STATE_HOLE and NBD_STATE_ZERO") {
    const std::vector<Extent> e = {
        {512, 0}, {1024, Extent::hole}, {512, hole_zero}, {512, Extent::zero}};
    CHECK(nbd::block_status_descriptors(e, 2560, false) ==
          std::vector<D>{{512, 0}, {1024, 1}, {512, 3}, {512, 2}});
  }
  SECTION("cut at the requested length; extents past it dropped") {
    const std::vector<Extent> e = {{1024, 0}, {uint64_t{1} << 40, hole_zero}, {512, 0}};
    CHECK(nbd::block_status_descriptors(e, 4096, false) == std::vector<D>{{1024, 0}, {3072, 3}});
    CHECK(nbd::block_status_descriptors(e, 512, false) == std::vector<D>{{512, 0}});
  }
  SECTION("equal neighbours merge, empty extents are skipped") {
    const std::vector<Extent> e = {{512, 0}, {0, hole_zero}, {512, 0}, {512, hole_zero}};
    CHECK(nbd::block_status_descriptors(e, 1536, false) == std::vector<D>{{1024, 0}, {512, 3}});
  }
  SECTION("REQ_ONE keeps only the first (merged) descriptor") {
    const std::vector<Extent> e = {{512, hole_zero}, {512, hole_zero}, {512, 0}};
    CHECK(nbd::block_status_descriptors(e, 1536, true) == std::vector<D>{{1024, 3}});
  }
  SECTION("nothing reported gives nothing") {
    CHECK(nbd::block_status_descriptors({}, 512, false).empty());
    const std::vector<Extent> e = {{0, 0}};
    CHECK(nbd::block_status_descriptors(e, 512, true).empty());
  }
}
