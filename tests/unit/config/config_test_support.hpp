#pragma once
// Helpers shared by the [config] tests.

#include <catch2/catch.hpp>

#include <filesystem>
#include <string>
#include <string_view>

#include "config/config.hpp"

namespace config_test {

inline config::Result load(std::string_view yaml) {
  return config::load_string(yaml, "t.yaml");
}

// The one error reported for `key_path`; fails the test when there is not exactly one.
inline config::ConfigError error_at(const config::Result& result, std::string_view key_path) {
  INFO("errors:\n" << result.error_report());
  REQUIRE_FALSE(result.ok());
  const config::ConfigError* found = nullptr;
  int count = 0;
  for (const auto& error : result.errors()) {
    if (error.key_path == key_path) {
      found = &error;
      ++count;
    }
  }
  INFO("key path " << key_path);
  REQUIRE(count == 1);
  return *found;
}

// The configuration module's sources (example.yaml, README.md). The build passes the source
// tree's absolute path: __FILE__ may be relative to the build directory (compiler launchers
// such as ccache rewrite paths), and ctest runs the test from elsewhere.
inline std::filesystem::path config_source_dir() {
  return std::filesystem::path(IM_SOURCE_DIR) / "config";
}

}  // namespace config_test
