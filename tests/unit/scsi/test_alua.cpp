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

TEST_CASE("SET TARGET PORT GROUPS parameter list", "[scsi]") {
  // SPC-4 Table 222: four reserved bytes, then per group (Table 223) byte 0 bits 3-0 the
  // ASYMMETRIC ACCESS STATE, byte 1 reserved, bytes 2-3 TARGET PORT GROUP.
  const scsi::TargetPortGroupSetting one[] = {{AluaState::active_optimized, 2}};
  CHECK(scsi::encode_set_target_port_groups(one) == hex("00000000 00 00 0002"));
  const scsi::TargetPortGroupSetting two[] = {{AluaState::active_optimized, 0x0102},
                                              {AluaState::standby, 0xfffe}};
  CHECK(scsi::encode_set_target_port_groups(two) == hex("00000000 00 00 0102 02 00 fffe"));
  CHECK(scsi::encode_set_target_port_groups({}) == hex("00000000"));
}

TEST_CASE("INQUIRY TPGS: implicit and explicit ALUA", "[scsi]") {
  CHECK_FALSE(scsi::implicit_alua(0));
  CHECK_FALSE(scsi::explicit_alua(0));
  CHECK(scsi::implicit_alua(1));
  CHECK_FALSE(scsi::explicit_alua(1));
  CHECK_FALSE(scsi::implicit_alua(2));
  CHECK(scsi::explicit_alua(2));
  CHECK(scsi::implicit_alua(3));
  CHECK(scsi::explicit_alua(3));
}

TEST_CASE("ALUA state in NOT READY sense", "[scsi]") {
  // Fixed format (SPC-4 §4.5.3): key byte 2, ASC byte 12, ASCQ byte 13.
  const auto state_of = [](const char* sense_hex) {
    auto sense = scsi::decode_sense(hex(sense_hex));
    REQUIRE(sense);
    return scsi::alua_state_in_sense(*sense);
  };
  CHECK(state_of("70 00 02 00000000 0a 00000000 04 0a 00 000000") == AluaState::transitioning);
  CHECK(state_of("70 00 02 00000000 0a 00000000 04 0b 00 000000") == AluaState::standby);
  CHECK(state_of("70 00 02 00000000 0a 00000000 04 0c 00 000000") == AluaState::unavailable);
  // Descriptor format (SPC-4 §4.5.2): key, ASC, ASCQ in bytes 1-3.
  CHECK(state_of("72 02 04 0b 00 00 00 00") == AluaState::standby);
  // Other NOT READY causes and the same ASC/ASCQ under another key say nothing of ALUA.
  CHECK_FALSE(state_of("70 00 02 00000000 0a 00000000 04 01 00 000000"));
  CHECK_FALSE(state_of("70 00 02 00000000 0a 00000000 3a 00 00 000000"));
  CHECK_FALSE(state_of("70 00 06 00000000 0a 00000000 04 0b 00 000000"));
}
