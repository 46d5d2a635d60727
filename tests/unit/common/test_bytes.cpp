#include <catch2/catch.hpp>

#include <common/bytes.hpp>
#include <common/hex.hpp>

TEST_CASE("big-endian loads and stores round-trip", "[common]") {
  std::vector<std::byte> buf(15);
  common::store_be16(buf, 0, 0x0102);
  common::store_be24(buf, 2, 0x030405);
  common::store_be32(buf, 5, 0x06070809);
  common::store_u8(buf, 9, 0x0a);
  CHECK(common::to_hex(buf) == "0102030405060708090a0000000000");
  common::store_be64(buf, 7, 0x1122334455667788ull);
  CHECK(common::load_be64(buf, 7) == 0x1122334455667788ull);
  CHECK(common::load_be24(buf, 2) == 0x030405);
  CHECK(common::load_be16(buf, 0) == 0x0102);
}

TEST_CASE("hex parsing ignores layout whitespace and rejects junk", "[common]") {
  CHECK(common::to_hex(common::from_hex("de ad\nbe ef")) == "deadbeef");
  CHECK_FALSE(common::try_from_hex("abc").has_value());
  CHECK_FALSE(common::try_from_hex("zz").has_value());
}
