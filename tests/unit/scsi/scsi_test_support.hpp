// Helpers shared by the [scsi] unit tests.
#pragma once

#include <catch2/catch.hpp>

#include <common/hex.hpp>

#include <cstddef>
#include <span>
#include <string_view>
#include <vector>

namespace scsi_test {

// Hex literal -> bytes; a malformed literal fails the test instead of silently yielding nothing.
inline std::vector<std::byte> hex(std::string_view text) {
  auto bytes = common::try_from_hex(text);
  REQUIRE(bytes.has_value());
  return *bytes;
}

// Calls f(prefix) for every prefix of `data`, from empty to all of it, each in its own heap
// buffer of exactly that size so ASan catches any read past the end.
template <typename F>
void for_each_truncation(const std::vector<std::byte>& data, F&& f) {
  for (size_t n = 0; n <= data.size(); ++n) {
    std::vector<std::byte> prefix(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(n));
    INFO("truncated to " << n << " of " << data.size() << " bytes");
    f(std::span<const std::byte>(prefix), n);
  }
}

}  // namespace scsi_test
