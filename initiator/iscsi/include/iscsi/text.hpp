// iSCSI text key=value data (RFC 7143 §6.1): the data segment of Login and Text PDUs, and the
// value encodings the keys use (numbers, booleans, lists, binary strings).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace iscsi {

struct TextPair {
  std::string key, value;
  bool operator==(const TextPair&) const = default;
};

// §6.1 limits. A simple value (each element of a list, when the value is a list) is at most 255
// bytes; the binary CHAP values may carry up to 1024 bytes (§12.1.3), which hex-encodes to
// just over 2 KiB, so the keys in `is_long_value_key` get 8192 bytes (SPDK's limit too).
inline constexpr size_t max_key_length = 63;
inline constexpr size_t max_simple_value_length = 255;
inline constexpr size_t max_long_value_length = 8192;
bool is_long_value_key(std::string_view key);

// Parse one logical text data segment (the concatenation of a C-bit sequence, §6.1).
// Every pair must end with a NUL: §6.1 says "Every key=value pair, including the last or only
// pair in a LTDS, MUST be followed by one null delimiter", so a missing final NUL is
// errc::text_malformed rather than silently accepted (it usually means a truncated segment or
// a C-bit sequence cut short). NUL bytes after the last pair (padding) are skipped; an empty
// pair anywhere else is malformed. Errors: text_malformed (no '=', empty key, empty pair,
// unterminated pair), text_key_too_long, text_value_too_long. On error `out` holds the pairs
// parsed before the bad one and `detail` names the offending key (never its value).
std::error_code parse_text(std::span<const std::byte> segment, std::vector<TextPair>& out,
                           std::string& detail);
std::error_code parse_text(std::span<const std::byte> segment, std::vector<TextPair>& out);

// Append "key=value\0".
void append_text(std::vector<std::byte>& out, std::string_view key, std::string_view value);
std::vector<std::byte> encode_text(const std::vector<TextPair>& pairs);

// First pair with this key, or nullptr.
const TextPair* find_key(const std::vector<TextPair>& pairs, std::string_view key);

// ---- value encodings (§6.1)

// numerical-value: a decimal-constant or a hex-constant ("0x"/"0X" then hex digits), always
// below 2^64. Overflow, signs, blanks, empty digit strings and base64 are rejected. Leading
// zeros in decimals are accepted: the RFC grammar does not produce them, but they are not
// ambiguous (there is no octal) and a lenient reader costs nothing here.
std::optional<uint64_t> parse_numerical_value(std::string_view value);

// boolean-value: exactly "Yes" or "No" (values are case sensitive, §6.1).
std::optional<bool> parse_boolean_value(std::string_view value);
constexpr std::string_view boolean_value(bool b) {
  return b ? "Yes" : "No";
}

// list-of-values: comma-separated; an empty value yields one empty element.
std::vector<std::string_view> split_list(std::string_view value);

// binary-value: a hex-constant ("0x"; an odd number of digits has an implied leading zero
// nibble, so "0x123" is the two bytes 01 23) or a base64-constant ("0b"/"0B", RFC 4648
// alphabet; '=' padding optional but only at the end). At least one byte.
std::optional<std::vector<std::byte>> decode_binary_value(std::string_view value);
// Encodes as a lowercase hex-constant, the form every target decodes.
std::string encode_binary_value(std::span<const std::byte> bytes);

// The reserved answer constants of §6.2.
inline constexpr std::string_view value_not_understood = "NotUnderstood";
inline constexpr std::string_view value_irrelevant = "Irrelevant";
inline constexpr std::string_view value_reject = "Reject";
inline constexpr std::string_view value_none = "None";

}  // namespace iscsi
