// multipath.hedged_reads: when a read stuck on one path is sent again on another.
#include <catch2/catch.hpp>

#include "config/config.hpp"
#include "config_test_support.hpp"

using Catch::Matchers::Contains;
using config::config_errc;
using config_test::error_at;
using config_test::load;

namespace {

// A valid file whose multipath.hedged_reads block starts on line 5.
std::string with_hedged_reads(std::string_view body) {
  return "target: {iqn: 'iqn.2023-01.com.example:s'}\npaths: [{portal: h}, {portal: i}]\n"
         "multipath:\n  hedged_reads:\n" +
         std::string(body);
}

}  // namespace

TEST_CASE("multipath.hedged_reads is on by default, 100 ms floor, factor 3", "[config][hedge]") {
  const auto result = load("target: {iqn: 'iqn.2023-01.com.example:s'}\npaths: [{portal: h}]\n");
  REQUIRE(result.ok());
  const auto& policy = result.config().multipath.hedged_reads;
  CHECK(policy.enabled);
  CHECK(policy.floor_ms == 100u);
  CHECK(policy.latency_factor == 3u);
}

TEST_CASE("multipath.hedged_reads takes each key on its own", "[config][hedge]") {
  const auto off = load(with_hedged_reads("    enabled: false\n"));
  INFO(off.error_report());
  REQUIRE(off.ok());
  CHECK_FALSE(off.config().multipath.hedged_reads.enabled);
  CHECK(off.config().multipath.hedged_reads.floor_ms == 100u);  // the others keep defaults
  const auto tuned = load(with_hedged_reads("    floor_ms: 250\n    latency_factor: 8\n"));
  INFO(tuned.error_report());
  REQUIRE(tuned.ok());
  CHECK(tuned.config().multipath.hedged_reads ==
        mpio::HedgedReadPolicy{.enabled = true, .floor_ms = 250, .latency_factor = 8});
}

TEST_CASE("multipath.hedged_reads refuses bad values, with file, line and key", "[config][hedge]") {
  struct Bad {
    const char* key;
    const char* value;
    const char* message;
  };
  for (const Bad& bad : {Bad{"floor_ms", "5", "expected an integer from 10 to 10000"},
                         Bad{"floor_ms", "20000", "expected an integer from 10 to 10000"},
                         Bad{"floor_ms", "fast", "expected an integer from 10 to 10000"},
                         Bad{"latency_factor", "0", "expected an integer from 1 to 100"},
                         Bad{"latency_factor", "2.5", "expected an integer from 1 to 100"},
                         Bad{"enabled", "maybe", "expected"}}) {
    INFO(bad.key << ": " << bad.value);
    const auto e = error_at(load(with_hedged_reads("    # line 5\n    " + std::string(bad.key) +
                                                   ": " + bad.value + "\n")),
                            std::string("multipath.hedged_reads.") + bad.key);
    CHECK(e.code == config_errc::invalid_value);
    CHECK(e.file == "t.yaml");
    CHECK(e.line == 6);
    CHECK_THAT(e.message, Contains(bad.message));
    CHECK_THAT(e.to_string(), Contains("t.yaml:6:"));
  }
}

TEST_CASE("multipath.hedged_reads names an unknown key and wants a mapping", "[config][hedge]") {
  const auto e =
      error_at(load(with_hedged_reads("    floor: 100\n")), "multipath.hedged_reads.floor");
  CHECK(e.code == config_errc::unknown_key);
  CHECK(e.line == 5);
  const auto m = error_at(load("target: {iqn: 'iqn.2023-01.com.example:s'}\npaths: [{portal: h}]\n"
                               "multipath: {hedged_reads: yes}\n"),
                          "multipath.hedged_reads");
  CHECK(m.line == 3);
}
