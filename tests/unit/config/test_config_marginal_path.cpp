// multipath.marginal_path: multipath.conf's san_path_err_* keys, all three or none.
#include <catch2/catch.hpp>

#include "config/config.hpp"
#include "config_test_support.hpp"

using Catch::Matchers::Contains;
using config::config_errc;
using config_test::error_at;
using config_test::load;

namespace {

// A valid file whose multipath.marginal_path block starts on line 5.
std::string with_marginal_path(std::string_view body) {
  return "target: {iqn: 'iqn.2023-01.com.example:s'}\npaths: [{portal: h}, {portal: i}]\n"
         "multipath:\n  marginal_path:\n" +
         std::string(body);
}

}  // namespace

TEST_CASE("multipath.marginal_path is off when absent", "[config][marginal]") {
  const auto result = load("target: {iqn: 'iqn.2023-01.com.example:s'}\npaths: [{portal: h}]\n");
  REQUIRE(result.ok());
  CHECK_FALSE(result.config().multipath.marginal_path);
}

TEST_CASE("multipath.marginal_path takes the three san_path_err keys", "[config][marginal]") {
  const auto result =
      load(with_marginal_path("    san_path_err_threshold: 2\n"
                              "    san_path_err_forget_rate: 5\n"
                              "    san_path_err_recovery_time: 30\n"));
  INFO(result.error_report());
  REQUIRE(result.ok());
  const auto& policy = result.config().multipath.marginal_path;
  REQUIRE(policy);
  CHECK(policy->san_path_err_threshold == 2u);
  CHECK(policy->san_path_err_forget_rate == 5u);
  CHECK(policy->san_path_err_recovery_time == 30u);
  CHECK(policy->enabled());
}

TEST_CASE("multipath.marginal_path names a missing key, with file and line", "[config][marginal]") {
  const auto result =
      load(with_marginal_path("    san_path_err_threshold: 2\n"
                              "    san_path_err_recovery_time: 30\n"));
  const auto e = error_at(result, "multipath.marginal_path.san_path_err_forget_rate");
  CHECK(e.code == config_errc::missing_key);
  CHECK(e.file == "t.yaml");
  CHECK(e.line == 4);  // the marginal_path key
  CHECK_THAT(e.message, Contains("san_path_err_forget_rate"));
  CHECK_THAT(e.to_string(), Contains("t.yaml:4:"));
}

TEST_CASE("multipath.marginal_path refuses values out of range, with file, line and key",
          "[config][marginal]") {
  const char* keys[] = {"san_path_err_threshold", "san_path_err_forget_rate",
                        "san_path_err_recovery_time"};
  for (int bad_key = 0; bad_key < 3; ++bad_key) {
    for (const char* bad : {"0", "-1", "no", "1.5", "99999999"}) {
      std::string body;
      for (int k = 0; k < 3; ++k)
        body += std::string("    ") + keys[k] + ": " + (k == bad_key ? bad : "3") + "\n";
      INFO(keys[bad_key] << ": " << bad);
      const auto e = error_at(load(with_marginal_path(body)),
                              std::string("multipath.marginal_path.") + keys[bad_key]);
      CHECK(e.code == config_errc::invalid_value);
      CHECK(e.file == "t.yaml");
      CHECK(e.line == 5 + bad_key);
      CHECK_THAT(e.message, Contains("expected an integer from 1 to"));
    }
  }
}

TEST_CASE("multipath.marginal_path: the other family is an unknown key", "[config][marginal]") {
  const auto result =
      load(with_marginal_path("    marginal_path_err_sample_time: 120\n"
                              "    san_path_err_threshold: 2\n"
                              "    san_path_err_forget_rate: 5\n"
                              "    san_path_err_recovery_time: 30\n"));
  const auto e = error_at(result, "multipath.marginal_path.marginal_path_err_sample_time");
  CHECK(e.code == config_errc::unknown_key);
  CHECK(e.line == 5);
}

TEST_CASE("multipath.marginal_path wants a mapping", "[config][marginal]") {
  const auto e = error_at(load("target: {iqn: 'iqn.2023-01.com.example:s'}\npaths: [{portal: h}]\n"
                               "multipath: {marginal_path: 3}\n"),
                          "multipath.marginal_path");
  CHECK(e.line == 3);
}
