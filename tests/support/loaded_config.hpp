#pragma once
// A configuration the test means to be valid: loaded from its YAML text, or the test fails
// showing the loader's errors.

#include <catch2/catch.hpp>

#include <string_view>

#include <config/config.hpp>

namespace test_support {

inline config::Config loaded_config(std::string_view yaml) {
  auto result = config::load_string(yaml, "t.yaml");
  INFO("yaml:\n" << yaml << "\nerrors:\n" << result.error_report());
  REQUIRE(result.ok());
  return result.config();
}

}  // namespace test_support
