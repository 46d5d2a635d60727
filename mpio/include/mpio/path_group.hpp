// Path grouping with dm-multipath's meaning (multipath.conf path_grouping_policy, prio,
// failback). Pure policy: the device says which group each path is in and whether it is up;
// these functions say which group carries I/O. No I/O, no clock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include <scsi/alua.hpp>

namespace mpio {

enum class Grouping { failover, multibus, group_by_prio };
std::string_view grouping_name(Grouping grouping);

// multipath.conf failback.
struct Failback {
  enum class Mode { immediate, manual, delayed };
  Mode mode = Mode::immediate;
  uint32_t seconds = 0;  // Mode::delayed
  friend bool operator==(const Failback&, const Failback&) = default;
};

struct GroupMember {
  uint32_t group = 0;     // paths with the same group id share I/O
  uint32_t priority = 0;  // of the group; higher is used first
  bool active = false;    // logged in, identified, and allowed to carry I/O
};

// Priority of a path by its target port group's ALUA state (SPC-4 §5.16.2.4), the values
// multipath-tools' alua prioritizer gives: active/optimized 50, active/non-optimized 10,
// standby 1, anything else (unavailable, offline, transitioning, LBA dependent) 0.
uint32_t alua_priority(scsi::AluaState state);
// Whether a path in this ALUA state may carry I/O: the two active states (SPC-4
// §5.16.2.4.2/3), and transitioning (§5.16.2.4.7), whose commands are answered 04/0A and
// retried until the port reaches its new state (Linux's ALUA handler requeues them); at
// priority 0 its group carries I/O only while no other group can. Standby, unavailable and
// offline paths are "ghosts": logged in, kept ready, carrying nothing.
bool alua_carries_io(scsi::AluaState state);

// The group that should carry I/O: the highest priority among groups with an active member;
// ties go to the lowest group id. nullopt when no member is active.
std::optional<uint32_t> best_group(std::span<const GroupMember> members);

// What to do when `best` (from best_group) differs from the group in use.
struct GroupDecision {
  enum class Action { keep, switch_now, switch_later };
  Action action = Action::keep;
  uint32_t delay_seconds = 0;  // switch_later: if `best` is still best after this long
};
// `current` is the group in use (nullopt before the first choice). A group that has lost its
// last active member is always left at once; a better group that came back is taken at once,
// after `failback.seconds`, or never (manual) by the failback policy.
GroupDecision decide_group(std::span<const GroupMember> members, std::optional<uint32_t> current,
                           const Failback& failback);

}  // namespace mpio
