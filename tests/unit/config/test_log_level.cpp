// log.level: what the attach logs, as `--log-level` names the levels; reload applies it.
#include <catch2/catch.hpp>

#include <string>

#include "config/config.hpp"
#include "config_test_support.hpp"

using config_test::error_at;
using config_test::load;

namespace {

config::Result with_log(const std::string& value) {
  return load(
      "target: {iqn: 'iqn.2023-01.com.example:s', lun: 1}\n"
      "paths: [{portal: 127.0.0.1}]\n"
      "log: {level: " +
      value + "}\n");
}

}  // namespace

TEST_CASE("log.level is info by default", "[config]") {
  const auto result = load(
      "target: {iqn: 'iqn.2023-01.com.example:s'}\n"
      "paths: [{portal: 127.0.0.1}]\n");
  REQUIRE(result.ok());
  CHECK(result.config().log.level == "info");
}

TEST_CASE("log.level takes spdlog's level names", "[config]") {
  for (const char* level : {"trace", "debug", "info", "warn", "error", "critical", "off"}) {
    INFO(level);
    const auto result = with_log(level);
    REQUIRE(result.ok());
    CHECK(result.config().log.level == level);
  }
}

TEST_CASE("an unknown log.level is an error naming the key", "[config]") {
  const auto error = error_at(with_log("verbose"), "log.level");
  CHECK(error.code == config::config_errc::invalid_value);
  CHECK_THAT(error.message, Catch::Contains("verbose"));
  CHECK(error.line == 3);
}

TEST_CASE("redacted() prints log.level so that it reads back the same", "[config]") {
  const auto result = with_log("debug");
  REQUIRE(result.ok());
  const auto again = config::load_string(config::redacted(result.config()), "printed.yaml");
  INFO(again.error_report());
  REQUIRE(again.ok());
  CHECK(again.config().log.level == "debug");
}
