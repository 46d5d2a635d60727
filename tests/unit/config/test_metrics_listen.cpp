// metrics.listen: HOST:PORT of the Prometheus endpoint, the port required.
#include <catch2/catch.hpp>

#include <string>

#include "config/config.hpp"
#include "config_test_support.hpp"
#include "loaded_config.hpp"

using config_test::error_at;
using config_test::load;

namespace {

config::Result with_metrics(const std::string& value) {
  return load(
      "target: {iqn: 'iqn.2023-01.com.example:s', lun: 1}\n"
      "paths: [{portal: 127.0.0.1}]\n"
      "metrics: {listen: '" +
      value + "'}\n");
}

}  // namespace

TEST_CASE("metrics.listen is absent by default", "[config]") {
  const auto result = load(
      "target: {iqn: 'iqn.2023-01.com.example:s'}\n"
      "paths: [{portal: 127.0.0.1}]\n");
  REQUIRE(result.ok());
  CHECK_FALSE(result.config().metrics.listen);
}

TEST_CASE("metrics.listen takes host:port and [IPv6]:port", "[config]") {
  const auto v4 = with_metrics("127.0.0.1:9469");
  INFO(v4.error_report());
  REQUIRE(v4.ok());
  REQUIRE(v4.config().metrics.listen);
  CHECK(v4.config().metrics.listen->host == "127.0.0.1");
  CHECK(v4.config().metrics.listen->port == 9469);

  const auto v6 = with_metrics("[::1]:9100");
  REQUIRE(v6.ok());
  CHECK(v6.config().metrics.listen->host == "::1");
  CHECK(v6.config().metrics.listen->port == 9100);
}

TEST_CASE("metrics.listen without a port, or with a bad one, is an error", "[config]") {
  for (const char* bad :
       {"127.0.0.1", "[::1]", "localhost", "127.0.0.1:0", "127.0.0.1:70000", "127.0.0.1:", "::1"}) {
    INFO(bad);
    const auto error = error_at(with_metrics(bad), "metrics.listen");
    CHECK(error.code == config::config_errc::invalid_value);
  }
  CHECK_THAT(error_at(with_metrics("127.0.0.1"), "metrics.listen").message,
             Catch::Contains("needs a port"));
}

TEST_CASE("redacted() prints metrics.listen so that it reads back the same", "[config]") {
  const auto result = with_metrics("[::1]:9469");
  REQUIRE(result.ok());
  const std::string printed = config::redacted(result.config());
  CHECK_THAT(printed, Catch::Contains("[::1]:9469"));
  const config::Config again = test_support::loaded_config(printed);
  REQUIRE(again.metrics.listen);
  CHECK(again.metrics.listen->port == 9469);
}
