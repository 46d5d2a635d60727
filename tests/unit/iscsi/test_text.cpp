#include <catch2/catch.hpp>

#include <common/bytes.hpp>
#include <common/hex.hpp>
#include <iscsi/errors.hpp>
#include <iscsi/text.hpp>

#include <string>

using namespace iscsi;
using common::from_hex;
using common::to_hex;

namespace {

std::vector<std::byte> bytes_of(std::string_view s) {
  auto b = common::as_bytes(s);
  return {b.begin(), b.end()};
}

}  // namespace

TEST_CASE("text: pairs are parsed from NUL-terminated key=value bytes", "[iscsi][text]") {
  // "HeaderDigest=None\0MaxBurstLength=0x40000\0"
  const auto segment = from_hex(
      "486561646572446967657374 3d 4e6f6e65 00"
      "4d61784275727374 4c656e677468 3d 3078343030303000");
  std::vector<TextPair> pairs;
  REQUIRE_FALSE(parse_text(segment, pairs));
  REQUIRE(pairs.size() == 2);
  CHECK(pairs[0] == TextPair{"HeaderDigest", "None"});
  CHECK(pairs[1] == TextPair{"MaxBurstLength", "0x40000"});
}

TEST_CASE("text: value keeps everything after the first '='; empty values are values",
          "[iscsi][text]") {
  std::vector<TextPair> pairs;
  REQUIRE_FALSE(parse_text(bytes_of(std::string("X-a=b=c\0TargetAlias=\0", 21)), pairs));
  REQUIRE(pairs.size() == 2);
  CHECK(pairs[0] == TextPair{"X-a", "b=c"});
  CHECK(pairs[1] == TextPair{"TargetAlias", ""});
}

TEST_CASE("text: trailing NUL padding is skipped, an empty segment has no pairs", "[iscsi][text]") {
  std::vector<TextPair> pairs;
  REQUIRE_FALSE(parse_text(bytes_of(std::string("A=1\0\0\0\0", 8)), pairs));
  CHECK(pairs == std::vector<TextPair>{{"A", "1"}});
  pairs.clear();
  CHECK_FALSE(parse_text({}, pairs));
  CHECK(pairs.empty());
}

TEST_CASE("text: malformed segments are rejected with a detail", "[iscsi][text]") {
  struct Case {
    std::string text;
    errc expected;
  };
  const Case cases[] = {
      {std::string("A=1", 3), errc::text_malformed},       // §6.1: final NUL required
      {std::string("A=1\0B=2", 7), errc::text_malformed},  // last pair unterminated
      {std::string("NoEquals\0", 9), errc::text_malformed},
      {std::string("=value\0", 7), errc::text_malformed},      // empty key
      {std::string("A=1\0\0B=2\0", 9), errc::text_malformed},  // empty pair mid-segment
      {std::string(64, 'K') + "=v" + std::string(1, '\0'), errc::text_key_too_long},
      {"K=" + std::string(256, 'v') + std::string(1, '\0'), errc::text_value_too_long},
      {"CHAP_C=0x" + std::string(8192, 'a') + std::string(1, '\0'), errc::text_value_too_long},
      {"L=a," + std::string(256, 'v') + std::string(1, '\0'), errc::text_value_too_long},
  };
  for (const auto& c : cases) {
    std::vector<TextPair> pairs;
    std::string detail;
    INFO(c.text.substr(0, 40));
    CHECK(parse_text(bytes_of(c.text), pairs, detail) == make_error_code(c.expected));
    CHECK_FALSE(detail.empty());
  }
}

TEST_CASE("text: length limits are inclusive", "[iscsi][text]") {
  std::vector<TextPair> pairs;
  // 63-byte key, 255-byte value, a list whose elements are each 255 bytes, and a long CHAP_C.
  const std::string text = std::string(63, 'K') + "=" + std::string(255, 'v') +
                           std::string(1, '\0') + "L=" + std::string(255, 'a') + "," +
                           std::string(255, 'b') + std::string(1, '\0') + "CHAP_C=0x" +
                           std::string(2048, 'f') + std::string(1, '\0');
  REQUIRE_FALSE(parse_text(bytes_of(text), pairs));
  REQUIRE(pairs.size() == 3);
  CHECK(pairs[2].value.size() == 2050);
}

TEST_CASE("text: append_text and encode_text produce the wire form", "[iscsi][text]") {
  std::vector<std::byte> out;
  append_text(out, "InitiatorName", "iqn.2024-01.test:i");
  CHECK(to_hex(out) == to_hex(bytes_of(std::string("InitiatorName=iqn.2024-01.test:i\0", 33))));
  const std::vector<TextPair> pairs{{"A", "1"}, {"B", ""}};
  const auto encoded = encode_text(pairs);
  CHECK(to_hex(encoded) == "413d3100423d00");
  std::vector<TextPair> back;
  REQUIRE_FALSE(parse_text(encoded, back));
  CHECK(back == pairs);
  CHECK(find_key(back, "B") == &back[1]);
  CHECK(find_key(back, "C") == nullptr);
}

TEST_CASE("text: numerical values in decimal and hex, overflow rejected", "[iscsi][text]") {
  CHECK(parse_numerical_value("0") == 0u);
  CHECK(parse_numerical_value("8192") == 8192u);
  CHECK(parse_numerical_value("0x2000") == 8192u);
  CHECK(parse_numerical_value("0X2000") == 8192u);
  CHECK(parse_numerical_value("0xFFFFFFFFFFFFFFFF") == UINT64_MAX);
  CHECK(parse_numerical_value("0x0000000000000000001") == 1u);  // leading zeros do not overflow
  CHECK(parse_numerical_value("18446744073709551615") == UINT64_MAX);
  CHECK_FALSE(parse_numerical_value("18446744073709551616"));
  CHECK_FALSE(parse_numerical_value("0x10000000000000000"));
  for (std::string_view bad : {"", "-1", "+1", " 1", "1 ", "0x", "0xg", "12a", "0b AAAA", "1.5"})
    CHECK_FALSE(parse_numerical_value(bad));
}

TEST_CASE("text: booleans are exactly Yes or No, lists split on commas", "[iscsi][text]") {
  CHECK(parse_boolean_value("Yes") == true);
  CHECK(parse_boolean_value("No") == false);
  CHECK_FALSE(parse_boolean_value("yes"));
  CHECK_FALSE(parse_boolean_value("1"));
  CHECK(boolean_value(true) == "Yes");
  CHECK(split_list("CRC32C,None") == std::vector<std::string_view>{"CRC32C", "None"});
  CHECK(split_list("None") == std::vector<std::string_view>{"None"});
  CHECK(split_list("") == std::vector<std::string_view>{""});
  CHECK(split_list("a,,b") == std::vector<std::string_view>{"a", "", "b"});
}

TEST_CASE("text: binary values decode from hex and base64", "[iscsi][text]") {
  CHECK(to_hex(decode_binary_value("0x00ff10").value()) == "00ff10");
  CHECK(to_hex(decode_binary_value("0XABcd").value()) == "abcd");
  CHECK(to_hex(decode_binary_value("0x123").value()) == "0123");  // implied leading nibble
  CHECK(to_hex(decode_binary_value("0bAAEC").value()) == "000102");
  CHECK(to_hex(decode_binary_value("0BAAE=").value()) == "0001");
  CHECK(to_hex(decode_binary_value("0bAAE").value()) == "0001");  // padding optional
  CHECK(to_hex(decode_binary_value("0b/w==").value()) == "ff");
  CHECK(to_hex(decode_binary_value("0b+/+/").value()) == "fbffbf");
  for (std::string_view bad :
       {"", "0x", "0b", "0xzz", "0b*AAA", "0bA", "0bA===", "0bAA=A", "1234", "0bAAE=="})
    CHECK_FALSE(decode_binary_value(bad));
  const auto bytes = from_hex("00 01 fe ff");
  CHECK(encode_binary_value(bytes) == "0x0001feff");
  CHECK(decode_binary_value(encode_binary_value(bytes)).value() == bytes);
}
