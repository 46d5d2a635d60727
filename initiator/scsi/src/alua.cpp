#include "scsi/alua.hpp"

#include <common/bytes.hpp>

namespace scsi {

std::string_view alua_state_name(AluaState state) {
  switch (state) {
    case AluaState::active_optimized:
      return "active/optimized";
    case AluaState::active_non_optimized:
      return "active/non-optimized";
    case AluaState::standby:
      return "standby";
    case AluaState::unavailable:
      return "unavailable";
    case AluaState::lba_dependent:
      return "lba-dependent";
    case AluaState::offline:
      return "offline";
    case AluaState::transitioning:
      return "transitioning";
  }
  return "reserved";
}

std::optional<size_t> report_target_port_groups_total_length(std::span<const std::byte> data) {
  if (data.size() < 4) return std::nullopt;
  return size_t{4} + common::load_be32(data, 0);
}

std::optional<std::vector<TargetPortGroup>> parse_report_target_port_groups(
    std::span<const std::byte> data) {
  auto total = report_target_port_groups_total_length(data);
  if (!total || data.size() < *total) return std::nullopt;
  const auto list = data.subspan(4, *total - 4);
  std::vector<TargetPortGroup> groups;
  size_t off = 0;
  while (off < list.size()) {
    // SPC-4 Table 209: 8-byte target port group descriptor, then TARGET PORT COUNT 4-byte
    // target port descriptors (bytes 2-3: RELATIVE TARGET PORT IDENTIFIER).
    if (off + 8 > list.size()) return std::nullopt;
    const size_t port_count = common::load_u8(list, off + 7);
    if (off + 8 + 4 * port_count > list.size()) return std::nullopt;
    TargetPortGroup g;
    g.pref = (common::load_u8(list, off) & 0x80) != 0;
    g.state = static_cast<AluaState>(common::load_u8(list, off) & 0x0F);
    g.supported_states = common::load_u8(list, off + 1);
    g.group_id = common::load_be16(list, off + 2);
    g.status_code = common::load_u8(list, off + 5);
    for (size_t i = 0; i < port_count; ++i) {
      g.relative_target_port_ids.push_back(common::load_be16(list, off + 8 + 4 * i + 2));
    }
    groups.push_back(std::move(g));
    off += 8 + 4 * port_count;
  }
  return groups;
}

std::optional<AluaState> alua_state_in_sense(const Sense& sense) {
  if (sense.key != SenseKey::not_ready || sense.asc != 0x04) return std::nullopt;
  switch (sense.ascq) {
    case 0x0A:
      return AluaState::transitioning;
    case 0x0B:
      return AluaState::standby;
    case 0x0C:
      return AluaState::unavailable;
    default:
      return std::nullopt;
  }
}

std::vector<std::byte> encode_set_target_port_groups(
    std::span<const TargetPortGroupSetting> groups) {
  std::vector<std::byte> data(4 + 4 * groups.size());
  size_t off = 4;
  for (const auto& g : groups) {
    common::store_u8(data, off, static_cast<uint8_t>(g.state) & 0x0F);
    common::store_be16(data, off + 2, g.group_id);
    off += 4;
  }
  return data;
}

}  // namespace scsi
