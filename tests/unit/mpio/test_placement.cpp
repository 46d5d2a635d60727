#include <catch2/catch.hpp>

#include <mpio/placement.hpp>
#include <optional>
#include <vector>

// Designators as VPD 0x83 carries them (SPC-4 §7.8.6): association 1 is the target port, the
// identifier in bytes 2-3 of a relative target port (type 4) or target port group (type 5).

using mpio::Grouping;
using mpio::PathState;
using mpio::Placement;
using mpio::PlacementFacts;
using scsi::AluaState;
using Groups = std::optional<std::vector<scsi::TargetPortGroup>>;

namespace {

scsi::Designator port_designator(uint8_t type, uint16_t id, uint8_t association = 1) {
  return {.code_set = 1,
          .association = association,
          .type = type,
          .value = {std::byte{0}, std::byte{0}, std::byte(id >> 8), std::byte(id & 0xff)}};
}

scsi::TargetPortGroup group(uint16_t id, AluaState state, std::vector<uint16_t> ports) {
  return {.state = state, .group_id = id, .relative_target_port_ids = std::move(ports)};
}

// Two port groups as tgtd or LIO report them: 1 optimized with ports 1 and 2, 2 standby with 3.
Groups two_groups() {
  return std::vector{group(1, AluaState::active_optimized, {1, 2}),
                     group(2, AluaState::standby, {3})};
}

PlacementFacts alua_path(const std::vector<scsi::Designator>& designators) {
  return {.grouping = Grouping::group_by_prio, .tpgs = 1, .designators = designators};
}

}  // namespace

TEST_CASE("a path is found in the port group its target port group designator names",
          "[mpio][placement]") {
  const std::vector designators{port_designator(scsi::designator_type::target_port_group, 2),
                                port_designator(scsi::designator_type::relative_target_port, 1)};
  // The group id decides: relative port 1 would be in group 1.
  const Placement p = mpio::place_path(alua_path(designators), two_groups());
  CHECK(p.alua == AluaState::standby);
  CHECK(p.port_group == 2);
  CHECK(p.priority == 1);
  CHECK(p.group == 1);
  CHECK(p.state == PathState::ghost);
}

TEST_CASE("without a port group designator a path is found by its relative target port",
          "[mpio][placement]") {
  const std::vector designators{port_designator(scsi::designator_type::relative_target_port, 2)};
  const Placement p = mpio::place_path(alua_path(designators), two_groups());
  CHECK(p.alua == AluaState::active_optimized);
  CHECK(p.priority == 50);
  CHECK(p.group == 50);
  CHECK(p.state == PathState::active);
}

TEST_CASE("a non-optimized port group carries I/O at priority 10", "[mpio][placement]") {
  const std::vector designators{port_designator(scsi::designator_type::target_port_group, 7)};
  const Groups groups = std::vector{group(7, AluaState::active_non_optimized, {})};
  const Placement p = mpio::place_path(alua_path(designators), groups);
  CHECK(p.priority == 10);
  CHECK(p.group == 10);
  CHECK(p.state == PathState::active);
}

TEST_CASE("an unavailable port group is a ghost at priority 0", "[mpio][placement]") {
  const std::vector designators{port_designator(scsi::designator_type::target_port_group, 7)};
  const Groups groups = std::vector{group(7, AluaState::unavailable, {})};
  const Placement p = mpio::place_path(alua_path(designators), groups);
  CHECK(p.priority == 0);
  CHECK(p.state == PathState::ghost);
}

TEST_CASE("a path in no reported group keeps one group at priority 1 with no ALUA state",
          "[mpio][placement]") {
  const std::vector designators{port_designator(scsi::designator_type::relative_target_port, 9)};
  const Placement p = mpio::place_path(alua_path(designators), two_groups());
  CHECK(p.group == 1);
  CHECK(p.priority == 1);
  CHECK_FALSE(p.alua);
  CHECK(p.state == PathState::active);
  // No designators at all: nothing to match either.
  CHECK(mpio::place_path(alua_path({}), two_groups()).priority == 1);
}

TEST_CASE("a REPORT TARGET PORT GROUPS that failed gives priority 0, as multipath-tools does",
          "[mpio][placement]") {
  const std::vector designators{port_designator(scsi::designator_type::target_port_group, 1)};
  const Placement p = mpio::place_path(alua_path(designators), std::nullopt);
  CHECK(p.group == 1);
  CHECK(p.priority == 0);
  CHECK_FALSE(p.alua);
  CHECK(p.state == PathState::active);
}

TEST_CASE("designators of the LU or the target device, or too short, name no port",
          "[mpio][placement]") {
  auto short_one = port_designator(scsi::designator_type::target_port_group, 2);
  short_one.value.resize(3);
  const std::vector designators{port_designator(scsi::designator_type::target_port_group, 2, 0),
                                port_designator(scsi::designator_type::relative_target_port, 3, 2),
                                short_one};
  const auto ids = mpio::target_port_ids(designators);
  CHECK_FALSE(ids.port_group);
  CHECK_FALSE(ids.relative_port);
  CHECK_FALSE(mpio::place_path(alua_path(designators), two_groups()).alua);
}

TEST_CASE("the last designator of each type names the port", "[mpio][placement]") {
  const std::vector designators{port_designator(scsi::designator_type::target_port_group, 1),
                                port_designator(scsi::designator_type::target_port_group, 0x0102),
                                port_designator(scsi::designator_type::relative_target_port, 5)};
  const auto ids = mpio::target_port_ids(designators);
  CHECK(ids.port_group == 0x0102);
  CHECK(ids.relative_port == 5);
}

TEST_CASE("multibus puts every path in one group whatever the target says", "[mpio][placement]") {
  const std::vector designators{port_designator(scsi::designator_type::target_port_group, 2)};
  PlacementFacts facts = alua_path(designators);
  facts.grouping = Grouping::multibus;
  const Placement p = mpio::place_path(facts, two_groups());
  CHECK(p.group == 0);
  CHECK(p.priority == 1);
  CHECK_FALSE(p.alua);
  CHECK(p.state == PathState::active);
  CHECK_FALSE(mpio::needs_port_groups(Grouping::multibus, 1));
}

TEST_CASE("failover gives each path its own group at its configured priority",
          "[mpio][placement]") {
  const PlacementFacts facts{.grouping = Grouping::failover,
                             .path_index = 3,
                             .configured_priority = 20,
                             .tpgs = 1,
                             .designators = {}};
  const Placement p = mpio::place_path(facts, std::nullopt);
  CHECK(p.group == 3);
  CHECK(p.priority == 20);
  CHECK(p.state == PathState::active);
  CHECK_FALSE(mpio::needs_port_groups(Grouping::failover, 1));
}

TEST_CASE("group_by_prio on a target without ALUA gives every path priority 1",
          "[mpio][placement]") {
  const PlacementFacts facts{.grouping = Grouping::group_by_prio, .tpgs = 0, .designators = {}};
  const Placement p = mpio::place_path(facts, std::nullopt);
  CHECK(p.group == 1);
  CHECK(p.priority == 1);
  CHECK_FALSE(mpio::needs_port_groups(Grouping::group_by_prio, 0));
  CHECK(mpio::needs_port_groups(Grouping::group_by_prio, 1));
}

TEST_CASE("a placement is offered to the path as an event with its ALUA state and priority",
          "[mpio][placement]") {
  const Placement standby{
      .group = 1, .priority = 1, .alua = AluaState::standby, .state = PathState::ghost};
  const auto reread = mpio::placement_event(mpio::Event::Kind::alua_reread, standby, 50);
  CHECK(reread.kind == mpio::Event::Kind::alua_reread);
  CHECK(reread.detail == "ALUA state standby, prio 1");
  CHECK_FALSE(reread.carries_io);
  CHECK(reread.priority_changed);
  const Placement no_alua{
      .group = 0, .priority = 1, .alua = std::nullopt, .state = PathState::active};
  const auto probed = mpio::placement_event(mpio::Event::Kind::probe_done, no_alua, 1);
  CHECK(probed.detail == "ALUA state unknown, prio 1");
  CHECK(probed.carries_io);
  CHECK_FALSE(probed.priority_changed);
}

TEST_CASE("a transitioning port group stays in use at priority 0", "[mpio][placement]") {
  // SPC-4 §5.16.2.4.7: its commands are answered 04/0A and retried until the transition ends;
  // any other group that can carry I/O is preferred meanwhile.
  const std::vector designators{port_designator(scsi::designator_type::target_port_group, 7)};
  const Groups groups = std::vector{group(7, AluaState::transitioning, {})};
  const Placement p = mpio::place_path(alua_path(designators), groups);
  CHECK(p.priority == 0);
  CHECK(p.state == PathState::active);
}

TEST_CASE("explicit ALUA: which ghost's group SET TARGET PORT GROUPS activates",
          "[mpio][placement][alua]") {
  using mpio::ActivationCandidate;
  const ActivationCandidate failed{.state = PathState::failed};
  const ActivationCandidate standby{
      .state = PathState::ghost, .ready = true, .alua = AluaState::standby, .port_group = 2};
  const ActivationCandidate unavailable{
      .state = PathState::ghost, .ready = true, .alua = AluaState::unavailable, .port_group = 3};
  const ActivationCandidate active{
      .state = PathState::active, .ready = true, .alua = AluaState::active_optimized};
  const auto choose = [](std::vector<ActivationCandidate> paths) {
    return mpio::choose_activation(paths);
  };

  auto a = choose({failed, standby});
  REQUIRE(a);
  CHECK(a->via == 1);
  CHECK(a->port_group == 2);
  // A path that carries I/O leaves nothing to activate.
  CHECK_FALSE(choose({active, standby}));
  // Standby goes before unavailable, whatever the order; unavailable when alone.
  a = choose({unavailable, failed, standby});
  REQUIRE(a);
  CHECK(a->via == 2);
  a = choose({failed, unavailable});
  REQUIRE(a);
  CHECK(a->port_group == 3);
  // A ghost not logged in, one whose group is unknown, and an offline one are no way there.
  auto not_ready = standby;
  not_ready.ready = false;
  auto unknown = standby;
  unknown.port_group.reset();
  auto offline = standby;
  offline.alua = AluaState::offline;
  CHECK_FALSE(choose({not_ready, unknown, offline, failed}));
}

TEST_CASE("explicit ALUA: a group the target made active itself is not activated again",
          "[mpio][placement][alua]") {
  using mpio::ActivationCandidate;
  // Our placements: A a standby ghost (group 0), C a standby ghost too (group 2), both logged in.
  const ActivationCandidate a{
      .state = PathState::ghost, .ready = true, .alua = AluaState::standby, .port_group = 0};
  auto c = a;
  c.port_group = 2;
  // The target's report says group 2 is active/optimized by now (an implicit transition): the
  // placement of C is behind, nothing is to be activated.
  const std::vector<scsi::TargetPortGroup> swapped{group(0, AluaState::standby, {}),
                                                   group(2, AluaState::active_optimized, {})};
  CHECK(mpio::reachable_group_active(std::vector{a, c}, swapped));
  // C not logged in (its TPG gone): the report's word about its group does not help.
  c.ready = false;
  CHECK_FALSE(mpio::reachable_group_active(std::vector{a, c}, swapped));
  // No group active in the report: activation it is.
  c.ready = true;
  const std::vector<scsi::TargetPortGroup> none{group(0, AluaState::standby, {}),
                                                group(2, AluaState::unavailable, {})};
  CHECK_FALSE(mpio::reachable_group_active(std::vector{a, c}, none));
}
