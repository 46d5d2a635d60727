#include "mpio/path_group.hpp"

#include <algorithm>

namespace mpio {

std::string_view grouping_name(Grouping grouping) {
  switch (grouping) {
    case Grouping::failover:
      return "failover";
    case Grouping::multibus:
      return "multibus";
    case Grouping::group_by_prio:
      return "group_by_prio";
  }
  return "unknown";
}

uint32_t alua_priority(scsi::AluaState state) {
  switch (state) {
    case scsi::AluaState::active_optimized:
      return 50;
    case scsi::AluaState::active_non_optimized:
      return 10;
    case scsi::AluaState::standby:
      return 1;
    default:
      return 0;
  }
}

bool alua_carries_io(scsi::AluaState state) {
  return state == scsi::AluaState::active_optimized ||
         state == scsi::AluaState::active_non_optimized || state == scsi::AluaState::transitioning;
}

std::optional<uint32_t> best_group(std::span<const GroupMember> members) {
  const GroupMember* best = nullptr;
  for (const auto& m : members) {
    if (!m.active) continue;
    if (best == nullptr || m.priority > best->priority ||
        (m.priority == best->priority && m.group < best->group))
      best = &m;
  }
  if (best == nullptr) return std::nullopt;
  return best->group;
}

GroupDecision decide_group(std::span<const GroupMember> members, std::optional<uint32_t> current,
                           const Failback& failback) {
  const auto best = best_group(members);
  if (!best || best == current) return {};
  const bool current_alive =
      current && std::any_of(members.begin(), members.end(),
                             [&](const GroupMember& m) { return m.active && m.group == *current; });
  if (!current_alive) return {GroupDecision::Action::switch_now, 0};
  switch (failback.mode) {
    case Failback::Mode::immediate:
      return {GroupDecision::Action::switch_now, 0};
    case Failback::Mode::manual:
      return {};
    case Failback::Mode::delayed:
      return {GroupDecision::Action::switch_later, failback.seconds};
  }
  return {};
}

}  // namespace mpio
