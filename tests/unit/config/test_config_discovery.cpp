// Path entries that name a SendTargets portal (`discover:`) and target.discovery_auth.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "config/config.hpp"
#include "config_test_support.hpp"

using Catch::Matchers::Contains;
using config::Auth;
using config::config_errc;
using config_test::error_at;
using config_test::load;

namespace {

// The issue's two-NIC file in its discovery form; line 5 is the first path entry.
constexpr std::string_view two_nics = R"(target:
  iqn: iqn.2023-01.com.example:s
  discovery_auth: {method: chap, username: disc, secret: discovery-secret-1}
paths:
  - {discover: "192.168.100.1:3260", source: 192.168.10.10, priority: 2}
  - {discover: "192.168.101.1", source: 192.168.11.10, interface: eth2}
)";

}  // namespace

TEST_CASE("a discover entry takes the place of a portal, with the entry's other keys", "[config]") {
  const auto result = load(two_nics);
  INFO(result.error_report());
  REQUIRE(result.ok());
  const auto& paths = result.config().paths;
  REQUIRE(paths.size() == 2);
  REQUIRE(paths[0].discover);
  CHECK(*paths[0].discover == config::Portal{"192.168.100.1", 3260});
  CHECK(paths[0].portal.host.empty());
  CHECK(paths[0].source == "192.168.10.10");
  CHECK(paths[0].priority == 2u);
  REQUIRE(paths[1].discover);
  CHECK(*paths[1].discover == config::Portal{"192.168.101.1", 3260});  // default port
  CHECK(paths[1].interface == "eth2");
  const auto& auth = result.config().target.discovery_auth;
  CHECK(auth.method == Auth::Method::chap);
  CHECK(auth.username == "disc");
  CHECK(auth.secret == "discovery-secret-1");
  CHECK(result.config().target.auth.method == Auth::Method::none);
}

TEST_CASE("without discovery_auth, discovery sessions use no CHAP", "[config]") {
  const auto result =
      load("target: {iqn: 'iqn.2023-01.com.example:s'}\npaths: [{discover: 10.0.0.1}]\n");
  INFO(result.error_report());
  REQUIRE(result.ok());
  CHECK(result.config().target.discovery_auth.method == Auth::Method::none);
}

TEST_CASE("discover and portal in one entry is an error naming file, line and key", "[config]") {
  const auto result = load(
      "target: {iqn: 'iqn.2023-01.com.example:s'}\npaths:\n"
      "  - portal: 10.0.0.1\n    discover: 10.0.0.1\n");
  const auto error = error_at(result, "paths[0].discover");
  CHECK(error.file == "t.yaml");
  CHECK(error.line == 4);
  CHECK(error.code == config_errc::invalid_value);
  CHECK_THAT(error.message, Contains("either 'portal' or 'discover'"));
  CHECK_THAT(result.error_report(), Contains("t.yaml:4:5: paths[0].discover:"));
}

TEST_CASE("an entry with neither portal nor discover names both", "[config]") {
  const auto result = load(
      "target: {iqn: 'iqn.2023-01.com.example:s'}\npaths:\n  - portal: 10.0.0.1\n"
      "  - source: 10.0.0.2\n");
  const auto error = error_at(result, "paths[1].portal");
  CHECK(error.line == 4);
  CHECK(error.code == config_errc::missing_key);
  CHECK_THAT(error.message, Contains("missing required key 'portal' (or 'discover')"));
}

TEST_CASE("bad discover values and unknown keys in a discover entry", "[config]") {
  SECTION("port 0") {
    const auto error = error_at(
        load("target: {iqn: 'iqn.2023-01.com.example:s'}\npaths: [{discover: '10.0.0.1:0'}]\n"),
        "paths[0].discover");
    CHECK(error.line == 2);
    CHECK_THAT(error.message, Contains("invalid portal '10.0.0.1:0'"));
  }
  SECTION("a typo is suggested") {
    const auto error = error_at(
        load(
            "target: {iqn: 'iqn.2023-01.com.example:s'}\npaths: [{discover: h, sorce: 1.2.3.4}]\n"),
        "paths[0].sorce");
    CHECK(error.line == 2);
    CHECK(error.code == config_errc::unknown_key);
    CHECK_THAT(error.message, Contains("did you mean 'source'?"));
  }
  SECTION("an IPv6 source for an IPv4 discovery portal") {
    const auto error = error_at(load("target: {iqn: 'iqn.2023-01.com.example:s'}\n"
                                     "paths: [{discover: 10.0.0.1, source: 'fd00::2'}]\n"),
                                "paths[0].source");
    CHECK_THAT(error.message, Contains("IPv6 address but the portal is IPv4"));
  }
  SECTION("the same discovery portal and source twice") {
    const auto error =
        error_at(load("target: {iqn: 'iqn.2023-01.com.example:s'}\n"
                      "paths: [{discover: 10.0.0.1, source: 10.0.0.2}, {discover: '10.0.0.1:3260', "
                      "source: 10.0.0.2}]\n"),
                 "paths[1]");
    CHECK_THAT(error.message, Contains("same discovery portal and source as paths[0]"));
  }
  SECTION("the same discovery portal from two sources is two entries") {
    const auto result = load(
        "target: {iqn: 'iqn.2023-01.com.example:s'}\n"
        "paths: [{discover: 10.0.0.1, source: 10.0.0.2}, {discover: 10.0.0.1, source: "
        "10.0.1.2}]\n");
    INFO(result.error_report());
    CHECK(result.ok());
  }
}

TEST_CASE("discovery_auth has the keys and checks of target.auth", "[config]") {
  SECTION("chap without a secret") {
    const auto error = error_at(load("target:\n  iqn: iqn.2023-01.com.example:s\n"
                                     "  discovery_auth: {method: chap, username: u}\n"
                                     "paths: [{discover: h}]\n"),
                                "target.discovery_auth.secret");
    CHECK(error.line == 3);
    CHECK_THAT(error.message, Contains("'secret' or 'secret_file'"));
  }
  SECTION("an unknown key") {
    const auto error = error_at(load("target:\n  iqn: iqn.2023-01.com.example:s\n"
                                     "  discovery_auth: {method: chap, username: u, secret: s, "
                                     "password: x}\n"
                                     "paths: [{discover: h}]\n"),
                                "target.discovery_auth.password");
    CHECK(error.line == 3);
    CHECK(error.code == config_errc::unknown_key);
  }
  SECTION("mutual with the initiator's own secret") {
    const auto error =
        error_at(load("target:\n  iqn: iqn.2023-01.com.example:s\n"
                      "  discovery_auth:\n    method: chap\n    username: u\n    secret: same-1\n"
                      "    mutual: {username: t, secret: same-1}\n"
                      "paths: [{discover: h}]\n"),
                 "target.discovery_auth.mutual.secret");
    CHECK(error.line == 7);
    CHECK_THAT(error.message, Contains("RFC 7143"));
  }
  SECTION("secret_file is read") {
    const auto file =
        std::filesystem::temp_directory_path() / ("discovery-secret-" + std::to_string(::getpid()));
    {
      std::ofstream out(file);
      out << "from-the-file-1\n";
    }
    std::filesystem::permissions(
        file, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    const auto result = load(
        "target:\n  iqn: iqn.2023-01.com.example:s\n"
        "  discovery_auth: {method: chap, username: u, secret_file: '" +
        file.string() + "'}\npaths: [{discover: h}]\n");
    std::filesystem::remove(file);
    INFO(result.error_report());
    REQUIRE(result.ok());
    CHECK(result.config().target.discovery_auth.secret == "from-the-file-1");
    CHECK(result.warnings().empty());
  }
}

TEST_CASE("redacted() prints discover entries and hides the discovery secret", "[config]") {
  const auto result = load(two_nics);
  REQUIRE(result.ok());
  const std::string printed = config::redacted(result.config());
  INFO(printed);
  CHECK(printed.find("discovery-secret-1") == std::string::npos);
  CHECK(printed.find("discover: 192.168.100.1:3260") != std::string::npos);
  CHECK(printed.find("portal:") == std::string::npos);
  // Apart from the secret, it reads back as the same paths.
  const auto again = load(printed);
  INFO(again.error_report());
  REQUIRE(again.ok());
  REQUIRE(again.config().paths.size() == 2);
  CHECK(again.config().paths[1].discover == result.config().paths[1].discover);
  CHECK(again.config().paths[1].interface == "eth2");
}
