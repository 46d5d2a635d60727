#include <catch2/catch.hpp>

#include <iscsi/discovery.hpp>

using namespace iscsi;

TEST_CASE("TargetAddress forms of RFC 7143 §13.8", "[iscsi][discovery]") {
  TargetPortal p;
  REQUIRE(parse_target_address("198.18.1.1:3261,2", p));
  CHECK(p.host == "198.18.1.1");
  CHECK(p.port == 3261);
  CHECK(p.portal_group_tag == 2);
  REQUIRE(parse_target_address("[fd00::1]:3260,1", p));
  CHECK(p.host == "fd00::1");
  REQUIRE(parse_target_address("storage.example", p));
  CHECK(p.port == 3260);
  CHECK_FALSE(parse_target_address("host:99999,1", p));
  CHECK_FALSE(parse_target_address("[fd00::1", p));
  CHECK_FALSE(parse_target_address(":3260", p));
  CHECK_FALSE(parse_target_address("host:0", p));
}

TEST_CASE("SendTargets pairs group portals under their target", "[iscsi][discovery]") {
  size_t skipped = 0;
  auto targets = parse_send_targets({{"TargetAddress", "10.0.0.9:3260,1"},
                                     {"TargetName", "iqn.2023-01.com.example:a"},
                                     {"TargetAddress", "198.18.1.1:3260,1"},
                                     {"TargetAddress", "198.18.2.1:3260,1"},
                                     {"TargetName", "iqn.2023-01.com.example:b"},
                                     {"TargetAddress", "bad:port"}},
                                    &skipped);
  REQUIRE(targets.size() == 2);
  CHECK(targets[0].portals.size() == 2);
  CHECK(targets[0].portals[1].host == "198.18.2.1");
  CHECK(targets[1].portals.empty());
  CHECK(skipped == 2);
}

TEST_CASE("TargetAddress: bracketed IPv6 and host names with and without port or tag",
          "[iscsi][discovery]") {
  TargetPortal p;
  REQUIRE(parse_target_address("[fd00:2::1],3", p));  // no port: 3260 (§13.8)
  CHECK(p.host == "fd00:2::1");
  CHECK(p.port == 3260);
  CHECK(p.portal_group_tag == 3);
  REQUIRE(parse_target_address("[fd00:2::1]", p));
  CHECK(p.host == "fd00:2::1");
  CHECK(p.portal_group_tag == 1);
  REQUIRE(parse_target_address("san-a.example.com:3262,5", p));
  CHECK(p.host == "san-a.example.com");
  CHECK(p.port == 3262);
  CHECK(p.portal_group_tag == 5);
  // A bare IPv6 literal (some targets omit the brackets) cannot carry a port: all of it is host.
  REQUIRE(parse_target_address("fd00:2::1,1", p));
  CHECK(p.host == "fd00:2::1");
  CHECK(p.port == 3260);
  CHECK_FALSE(parse_target_address("[]:3260,1", p));
  CHECK_FALSE(parse_target_address("[fd00::1]3260", p));
  CHECK_FALSE(parse_target_address("host:,1", p));
  CHECK_FALSE(parse_target_address("host:3260,", p));
  CHECK_FALSE(parse_target_address("host:3260,70000", p));
}
