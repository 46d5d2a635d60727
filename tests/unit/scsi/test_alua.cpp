#include <catch2/catch.hpp>

#include <scsi/alua.hpp>

#include "scsi_test_support.hpp"

using scsi::AluaState;
using scsi_test::for_each_truncation;
using scsi_test::hex;

namespace {

// SPC-4 Tables 208/209: RETURN DATA LENGTH 28, then
//  group 1: PREF, active/optimized, T_SUP|U_SUP|S_SUP|AN_SUP|AO_SUP, status 02h (implicit
//           change), 2 ports (relative target port 1 and 2);
//  group 2: standby, 1 port (3).
// clang-format off
const char* const two_groups =
    "0000001c"
    "80 8f 0001 00 02 00 02  0000 0001  0000 0002"
    "02 8f 0002 00 00 00 01  0000 0003";
// clang-format on

}  // namespace

TEST_CASE("REPORT TARGET PORT GROUPS data", "[scsi]") {
  auto data = hex(two_groups);
  REQUIRE(data.size() == 32);
  CHECK(scsi::report_target_port_groups_total_length(data) == size_t{32});
  auto groups = scsi::parse_report_target_port_groups(data);
  REQUIRE(groups);
  REQUIRE(groups->size() == 2);

  const auto& g1 = (*groups)[0];
  CHECK(g1.pref);
  CHECK(g1.state == AluaState::active_optimized);
  CHECK(g1.supported_states == 0x8F);
  CHECK(g1.group_id == 1);
  CHECK(g1.status_code == 2);
  CHECK(g1.relative_target_port_ids == std::vector<uint16_t>{1, 2});

  const auto& g2 = (*groups)[1];
  CHECK_FALSE(g2.pref);
  CHECK(g2.state == AluaState::standby);
  CHECK(g2.group_id == 2);
  CHECK(g2.relative_target_port_ids == std::vector<uint16_t>{3});
}

TEST_CASE("REPORT TARGET PORT GROUPS: every state, no ports", "[scsi]") {
  // clang-format off
  auto groups = scsi::parse_report_target_port_groups(hex(
      "00000028"
      "01 00 0010 00 00 00 00"
      "03 00 0011 00 00 00 00"
      "04 00 0012 00 00 00 00"
      "0e 00 0013 00 00 00 00"
      "8f 00 ffff 00 00 00 00"));
  // clang-format on
  REQUIRE(groups);
  REQUIRE(groups->size() == 5);
  CHECK((*groups)[0].state == AluaState::active_non_optimized);
  CHECK((*groups)[1].state == AluaState::unavailable);
  CHECK((*groups)[2].state == AluaState::lba_dependent);
  CHECK((*groups)[3].state == AluaState::offline);
  CHECK((*groups)[4].state == AluaState::transitioning);
  CHECK((*groups)[4].pref);
  CHECK((*groups)[4].group_id == 0xFFFF);
  CHECK((*groups)[4].relative_target_port_ids.empty());
  CHECK(scsi::alua_state_name(AluaState::transitioning) == "transitioning");
  CHECK(scsi::alua_state_name(AluaState::active_non_optimized) == "active/non-optimized");
}

TEST_CASE("REPORT TARGET PORT GROUPS: malformed", "[scsi]") {
  // TARGET PORT COUNT 2 but only one port descriptor inside RETURN DATA LENGTH.
  CHECK_FALSE(
      scsi::parse_report_target_port_groups(hex("0000000c 80 00 0001 00 00 00 02 0000 0001")));
  // A partial descriptor header.
  CHECK_FALSE(scsi::parse_report_target_port_groups(hex("00000004 80 00 0001")));
  // No groups at all is well-formed.
  auto none = scsi::parse_report_target_port_groups(hex("00000000"));
  REQUIRE(none);
  CHECK(none->empty());
}

TEST_CASE("REPORT TARGET PORT GROUPS at every truncation", "[scsi]") {
  auto data = hex(two_groups);
  for_each_truncation(data, [&](auto part, size_t n) {
    CHECK(scsi::parse_report_target_port_groups(part).has_value() == (n == data.size()));
    CHECK(scsi::report_target_port_groups_total_length(part).has_value() == (n >= 4));
  });
}
