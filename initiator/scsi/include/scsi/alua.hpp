// ALUA (SPC-4 §5.16): REPORT TARGET PORT GROUPS parameter data (§6.36.2, length-only format),
// SET TARGET PORT GROUPS parameter data (§6.39), and what INQUIRY's TPGS field and a NOT READY
// sense say about a target port's asymmetric access state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "scsi/sense.hpp"

namespace scsi {

// SPC-4 Table 210, ASYMMETRIC ACCESS STATE.
enum class AluaState : uint8_t {
  active_optimized = 0x0,
  active_non_optimized = 0x1,
  standby = 0x2,
  unavailable = 0x3,
  lba_dependent = 0x4,
  offline = 0xE,
  transitioning = 0xF,
};

std::string_view alua_state_name(AluaState state);

struct TargetPortGroup {
  bool pref = false;  // the group the target prefers to be used
  AluaState state = AluaState::active_optimized;
  uint8_t supported_states = 0;  // byte 1: T_SUP O_SUP - LBD_SUP U_SUP S_SUP AN_SUP AO_SUP
  uint16_t group_id = 0;
  uint8_t status_code = 0;  // 1: changed by SET TARGET PORT GROUPS, 2: implicitly
  std::vector<uint16_t> relative_target_port_ids;
};

// RETURN DATA LENGTH + 4, the allocation length that fetches every descriptor; nullopt if fewer
// than 4 bytes.
std::optional<size_t> report_target_port_groups_total_length(std::span<const std::byte> data);

// nullopt if the data is shorter than it declares or a descriptor runs past the declared end.
std::optional<std::vector<TargetPortGroup>> parse_report_target_port_groups(
    std::span<const std::byte> data);

// INQUIRY TPGS (SPC-4 §6.6.2, Table 146): 01b implicit ALUA only, 10b explicit only (the
// application client changes the states with SET TARGET PORT GROUPS), 11b both.
inline bool implicit_alua(uint8_t tpgs) {
  return (tpgs & 0x1) != 0;
}
inline bool explicit_alua(uint8_t tpgs) {
  return (tpgs & 0x2) != 0;
}

// The state a NOT READY answer reports for the target port it came through (SPC-4 §5.16.2.4,
// Annex D): 04/0A ASYMMETRIC ACCESS STATE TRANSITION, 04/0B TARGET PORT IN STANDBY STATE, 04/0C
// TARGET PORT IN UNAVAILABLE STATE. nullopt for any other sense.
std::optional<AluaState> alua_state_in_sense(const Sense& sense);

// One descriptor of SET TARGET PORT GROUPS (SPC-4 Table 223): the state asked for one target
// port group.
struct TargetPortGroupSetting {
  AluaState state = AluaState::active_optimized;
  uint16_t group_id = 0;
};

// SET TARGET PORT GROUPS parameter list (SPC-4 Table 222): four reserved bytes, then a 4-byte
// descriptor per group (byte 0 bits 3-0 ASYMMETRIC ACCESS STATE, bytes 2-3 TARGET PORT GROUP).
// Its size is the CDB's PARAMETER LIST LENGTH (scsi::set_target_port_groups()).
std::vector<std::byte> encode_set_target_port_groups(
    std::span<const TargetPortGroupSetting> groups);

}  // namespace scsi
