// REPORT TARGET PORT GROUPS parameter data (SPC-4 §6.36.2), length-only format.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

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

}  // namespace scsi
