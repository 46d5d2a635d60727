// Hex helpers for tests and diagnostics. Whitespace in the input is ignored so byte vectors in
// tests can be laid out like the RFC's figures.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace common {

inline std::optional<std::vector<std::byte>> try_from_hex(std::string_view hex) {
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::vector<std::byte> out;
  int high = -1;
  for (char c : hex) {
    if (c == ' ' || c == '\n' || c == '\t' || c == '\r') continue;
    int n = nibble(c);
    if (n < 0) return std::nullopt;
    if (high < 0) {
      high = n;
    } else {
      out.push_back(static_cast<std::byte>((high << 4) | n));
      high = -1;
    }
  }
  if (high >= 0) return std::nullopt;
  return out;
}

// For literals in tests: malformed hex is a bug in the test, so it yields an empty vector that
// the test's own size checks will catch.
inline std::vector<std::byte> from_hex(std::string_view hex) {
  return try_from_hex(hex).value_or(std::vector<std::byte>{});
}

inline std::string to_hex(std::span<const std::byte> b) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s;
  s.reserve(b.size() * 2);
  for (auto x : b) {
    s.push_back(digits[std::to_integer<unsigned>(x) >> 4]);
    s.push_back(digits[std::to_integer<unsigned>(x) & 0xf]);
  }
  return s;
}

}  // namespace common
