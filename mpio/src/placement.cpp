#include "mpio/placement.hpp"

#include <algorithm>

namespace mpio {

TargetPortIds target_port_ids(std::span<const scsi::Designator> designators) {
  TargetPortIds ids;
  for (const auto& d : designators) {
    if (d.association != 1 || d.value.size() < 4) continue;
    const uint16_t id = static_cast<uint16_t>(std::to_integer<uint16_t>(d.value[2]) << 8 |
                                              std::to_integer<uint16_t>(d.value[3]));
    if (d.type == scsi::designator_type::target_port_group) ids.port_group = id;
    if (d.type == scsi::designator_type::relative_target_port) ids.relative_port = id;
  }
  return ids;
}

bool needs_port_groups(Grouping grouping, uint8_t tpgs) {
  return grouping == Grouping::group_by_prio && tpgs != 0;
}

Placement place_path(const PlacementFacts& facts,
                     const std::optional<std::vector<scsi::TargetPortGroup>>& groups) {
  Placement placement;
  switch (facts.grouping) {
    case Grouping::multibus:
      placement.priority = 1;
      return placement;
    case Grouping::failover:
      placement.group = static_cast<uint32_t>(facts.path_index);
      placement.priority = facts.configured_priority;
      return placement;
    case Grouping::group_by_prio:
      break;
  }
  // A target without ALUA gives every path one priority.
  placement.group = 1;
  placement.priority = 1;
  if (!needs_port_groups(facts.grouping, facts.tpgs)) return placement;
  if (!groups) {
    placement.priority = 0;  // as multipath-tools does when the prioritizer fails
    return placement;
  }
  const TargetPortIds ids = target_port_ids(facts.designators);
  for (const auto& g : *groups) {
    // ALUA states belong to target port groups (SPC-4 §5.16.2.1); a path's group is named
    // directly, or found through the relative target port it reaches the LU by.
    const bool ours =
        ids.port_group
            ? g.group_id == *ids.port_group
            : ids.relative_port &&
                  std::find(g.relative_target_port_ids.begin(), g.relative_target_port_ids.end(),
                            *ids.relative_port) != g.relative_target_port_ids.end();
    if (!ours) continue;
    placement.alua = g.state;
    placement.port_group = g.group_id;
    placement.priority = alua_priority(g.state);
    placement.group = placement.priority;
    if (!alua_carries_io(g.state)) placement.state = PathState::ghost;
    break;
  }
  return placement;
}

Event placement_event(Event::Kind kind, const Placement& placement, uint32_t current_priority) {
  return Event{
      .kind = kind,
      .detail = "ALUA state " +
                std::string(placement.alua ? scsi::alua_state_name(*placement.alua) : "unknown") +
                ", prio " + std::to_string(placement.priority),
      .carries_io = placement.state == PathState::active,
      .priority_changed = placement.priority != current_priority};
}

std::optional<Activation> choose_activation(std::span<const ActivationCandidate> paths) {
  std::optional<Activation> chosen;
  bool chosen_standby = false;
  for (size_t i = 0; i < paths.size(); ++i) {
    const auto& p = paths[i];
    if (p.state == PathState::active) return std::nullopt;
    if (p.state != PathState::ghost || !p.ready || !p.port_group || !p.alua) continue;
    const bool standby = *p.alua == scsi::AluaState::standby;
    if (!standby && *p.alua != scsi::AluaState::unavailable) continue;
    if (chosen && (chosen_standby || !standby)) continue;
    chosen = Activation{.via = i, .port_group = *p.port_group};
    chosen_standby = standby;
  }
  return chosen;
}

bool reachable_group_active(std::span<const ActivationCandidate> paths,
                            std::span<const scsi::TargetPortGroup> groups) {
  for (const auto& p : paths) {
    if (!p.ready || !p.port_group) continue;
    for (const auto& g : groups)
      if (g.group_id == *p.port_group && alua_carries_io(g.state)) return true;
  }
  return false;
}

}  // namespace mpio
