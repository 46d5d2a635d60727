#include "iscsi/text.hpp"

#include <algorithm>

#include "common/bytes.hpp"
#include "iscsi/errors.hpp"

namespace iscsi {

bool is_long_value_key(std::string_view key) {
  return key == "CHAP_C" || key == "CHAP_R";
}

namespace {

// Longest element of a list value; a plain value is a one-element list. Commas cannot appear
// inside any simple value (§6.1 text-value excludes them), so this is exact.
size_t longest_element(std::string_view value) {
  size_t longest = 0;
  for (auto element : split_list(value)) longest = std::max(longest, element.size());
  return longest;
}

}  // namespace

std::error_code parse_text(std::span<const std::byte> segment, std::vector<TextPair>& out,
                           std::string& detail) {
  const std::string_view text = common::as_chars(segment);
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t end = text.find('\0', pos);
    if (end == pos) {
      // An empty pair: allowed only as trailing padding.
      if (text.find_first_not_of('\0', pos) == std::string_view::npos) return {};
      detail = "empty key=value pair after byte " + std::to_string(pos);
      return errc::text_malformed;
    }
    if (end == std::string_view::npos) {
      detail = "key=value pair at byte " + std::to_string(pos) + " is not NUL-terminated";
      return errc::text_malformed;
    }
    const std::string_view pair = text.substr(pos, end - pos);
    const size_t eq = pair.find('=');
    if (eq == std::string_view::npos) {
      detail = "pair without '=' at byte " + std::to_string(pos);
      return errc::text_malformed;
    }
    if (eq == 0) {
      detail = "pair with an empty key at byte " + std::to_string(pos);
      return errc::text_malformed;
    }
    const std::string_view key = pair.substr(0, eq);
    const std::string_view value = pair.substr(eq + 1);
    if (key.size() > max_key_length) {
      detail = "key of " + std::to_string(key.size()) + " bytes at byte " + std::to_string(pos);
      return errc::text_key_too_long;
    }
    const bool too_long = is_long_value_key(key)
                              ? value.size() > max_long_value_length
                              : value.size() > max_long_value_length ||
                                    longest_element(value) > max_simple_value_length;
    if (too_long) {
      detail = std::string(key) + " value of " + std::to_string(value.size()) + " bytes";
      return errc::text_value_too_long;
    }
    out.push_back({std::string(key), std::string(value)});
    pos = end + 1;
  }
  return {};
}

std::error_code parse_text(std::span<const std::byte> segment, std::vector<TextPair>& out) {
  std::string detail;
  return parse_text(segment, out, detail);
}

void append_text(std::vector<std::byte>& out, std::string_view key, std::string_view value) {
  auto put = [&](std::string_view s) {
    for (char c : s) out.push_back(static_cast<std::byte>(c));
  };
  put(key);
  out.push_back(std::byte{'='});
  put(value);
  out.push_back(std::byte{0});
}

std::vector<std::byte> encode_text(const std::vector<TextPair>& pairs) {
  std::vector<std::byte> out;
  for (const auto& p : pairs) append_text(out, p.key, p.value);
  return out;
}

const TextPair* find_key(const std::vector<TextPair>& pairs, std::string_view key) {
  for (const auto& p : pairs)
    if (p.key == key) return &p;
  return nullptr;
}

namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int base64_digit(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

bool has_prefix(std::string_view value, char lower) {
  return value.size() >= 2 && value[0] == '0' &&
         (value[1] == lower || value[1] == static_cast<char>(lower - 'a' + 'A'));
}

}  // namespace

std::optional<uint64_t> parse_numerical_value(std::string_view value) {
  if (value.empty()) return std::nullopt;
  uint64_t result = 0;
  if (has_prefix(value, 'x')) {
    const std::string_view digits = value.substr(2);
    if (digits.empty()) return std::nullopt;
    for (char c : digits) {
      const int d = hex_digit(c);
      if (d < 0) return std::nullopt;
      if (result >> 60) return std::nullopt;  // a 17th significant digit
      result = (result << 4) | static_cast<uint64_t>(d);
    }
    return result;
  }
  for (char c : value) {
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (result > (UINT64_MAX - d) / 10) return std::nullopt;
    result = result * 10 + d;
  }
  return result;
}

std::optional<bool> parse_boolean_value(std::string_view value) {
  if (value == "Yes") return true;
  if (value == "No") return false;
  return std::nullopt;
}

std::vector<std::string_view> split_list(std::string_view value) {
  std::vector<std::string_view> items;
  size_t pos = 0;
  while (true) {
    const size_t comma = value.find(',', pos);
    if (comma == std::string_view::npos) {
      items.push_back(value.substr(pos));
      return items;
    }
    items.push_back(value.substr(pos, comma - pos));
    pos = comma + 1;
  }
}

std::optional<std::vector<std::byte>> decode_binary_value(std::string_view value) {
  std::vector<std::byte> out;
  if (has_prefix(value, 'x')) {
    const std::string_view digits = value.substr(2);
    if (digits.empty()) return std::nullopt;
    size_t i = 0;
    if (digits.size() % 2 == 1) {
      const int d = hex_digit(digits[0]);
      if (d < 0) return std::nullopt;
      out.push_back(static_cast<std::byte>(d));
      i = 1;
    }
    for (; i < digits.size(); i += 2) {
      const int hi = hex_digit(digits[i]);
      const int lo = hex_digit(digits[i + 1]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out.push_back(static_cast<std::byte>((hi << 4) | lo));
    }
    return out;
  }
  if (has_prefix(value, 'b')) {
    std::string_view digits = value.substr(2);
    size_t padding = 0;
    while (!digits.empty() && digits.back() == '=' && padding < 2) {
      digits.remove_suffix(1);
      ++padding;
    }
    // With padding the encoded length must be a multiple of 4; one leftover character can
    // never encode a whole byte.
    if (digits.empty() || digits.size() % 4 == 1) return std::nullopt;
    if (padding != 0 && (digits.size() + padding) % 4 != 0) return std::nullopt;
    uint32_t acc = 0;
    int bits = 0;
    for (char c : digits) {
      const int d = base64_digit(c);
      if (d < 0) return std::nullopt;
      acc = (acc << 6) | static_cast<uint32_t>(d);
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        out.push_back(static_cast<std::byte>((acc >> bits) & 0xff));
      }
    }
    return out;
  }
  return std::nullopt;
}

std::string encode_binary_value(std::span<const std::byte> bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s = "0x";
  s.reserve(2 + bytes.size() * 2);
  for (auto b : bytes) {
    s.push_back(digits[std::to_integer<unsigned>(b) >> 4]);
    s.push_back(digits[std::to_integer<unsigned>(b) & 0xf]);
  }
  return s;
}

}  // namespace iscsi
