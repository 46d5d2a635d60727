// Where a path that has shown the right device belongs (multipath.conf path_grouping_policy and
// the alua prioritizer): its group, the group's priority, its ALUA state, and whether it carries
// I/O or is kept ready as a ghost. Pure policy: the device sends REPORT TARGET PORT GROUPS
// itself and passes the parsed answer; no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <scsi/alua.hpp>
#include <scsi/inquiry.hpp>

#include "mpio/path_group.hpp"
#include "mpio/path_lifecycle.hpp"

namespace mpio {

struct Placement {
  uint32_t group = 0;
  uint32_t priority = 0;
  std::optional<scsi::AluaState> alua{};
  std::optional<uint16_t> port_group{};  // its target port group, with `alua`
  PathState state = PathState::active;   // active (carries I/O) or ghost
};

// The target port a path reaches the LU through, from its VPD 0x83 designators with
// association 1 (target port, SPC-4 §7.8.6): the target port group (§7.8.6.7) and relative
// target port (§7.8.6.6) identifiers, bytes 2-3 of each. The last of each type counts.
struct TargetPortIds {
  std::optional<uint16_t> port_group;
  std::optional<uint16_t> relative_port;
};
TargetPortIds target_port_ids(std::span<const scsi::Designator> designators);

// Whether placing a path needs the target's ALUA states (REPORT TARGET PORT GROUPS, SPC-4
// §6.36): only group_by_prio on a target with ALUA (INQUIRY TPGS != 0, SPC-4 §6.4.2). The same
// condition makes the periodic ALUA re-read worth doing.
bool needs_port_groups(Grouping grouping, uint8_t tpgs);

struct PlacementFacts {
  Grouping grouping = Grouping::multibus;
  size_t path_index = 0;                          // failover: every path is a group of its own
  uint32_t configured_priority = 0;               // failover: LunPath::priority
  uint8_t tpgs = 0;                               // INQUIRY TPGS of the LU
  std::span<const scsi::Designator> designators;  // the path's VPD 0x83
};

// The placement of one path. multibus: one group, priority 1. failover: the path's own group
// with its configured priority. group_by_prio without ALUA: one group, priority 1. With ALUA,
// `groups` is the parsed REPORT TARGET PORT GROUPS answer (nullopt when the LU refused it or the
// data was malformed: priority 0, as multipath-tools gives when its prioritizer fails); the
// path's group is found by its target port group id, else by its relative target port id, and
// gives the ALUA state and alua_priority() (which is also the group id); no match leaves one
// group at priority 1 with no ALUA state.
Placement place_path(const PlacementFacts& facts,
                     const std::optional<std::vector<scsi::TargetPortGroup>>& groups);

// The life-cycle event that offers a placement to a path (`kind`: probe_done, alua_read or
// alua_reread; the life cycle says whether the path takes it): whether it carries I/O, whether
// its priority differs from `current_priority` (the groups are reconsidered), and the text the
// event shows ("ALUA state standby, prio 1").
Event placement_event(Event::Kind kind, const Placement& placement, uint32_t current_priority);

// Explicit ALUA (INQUIRY TPGS 10b or 11b, SPC-4 §5.16.2.3): the application client moves the
// target port groups with SET TARGET PORT GROUPS (§6.39). When no path can carry I/O but some
// wait as ghosts, one of their groups is made active/optimized, as Linux's ALUA device handler
// does when dm-multipath turns to a group of ghost paths (scsi_dh_alua: STPG on activation).
struct ActivationCandidate {
  PathState state = PathState::connecting;
  bool ready = false;  // logged in: the command can go through it
  std::optional<scsi::AluaState> alua{};
  std::optional<uint16_t> port_group{};
};
struct Activation {
  size_t via = 0;  // the path SET TARGET PORT GROUPS goes through, in its own group
  uint16_t port_group = 0;
};
// nullopt when a path is active (nothing to activate), or when no ghost that is logged in
// knows its group and is in a state the command may leave (standby, then unavailable; offline
// is left by the target alone, §5.16.2.4.6). Among those, standby first, then the first path.
// Whether the target takes the command at all is its INQUIRY TPGS (scsi::explicit_alua()),
// asked through that path at the time: an array's access type may change while attached.
std::optional<Activation> choose_activation(std::span<const ActivationCandidate> paths);

// Whether the target's own report (REPORT TARGET PORT GROUPS, read through the chosen ghost just
// before activating) puts a logged-in path's group in a state that carries I/O: then the
// placements are behind the target (an implicit transition just made another group active),
// and the states are read again rather than changed.
bool reachable_group_active(std::span<const ActivationCandidate> paths,
                            std::span<const scsi::TargetPortGroup> groups);

}  // namespace mpio
