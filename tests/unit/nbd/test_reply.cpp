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
