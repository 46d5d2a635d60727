#include <catch2/catch.hpp>

#include <mpio/path_group.hpp>
#include <vector>

using namespace mpio;
using Action = GroupDecision::Action;

TEST_CASE("ALUA states map to multipath-tools' alua priorities", "[mpio][group]") {
  CHECK(alua_priority(scsi::AluaState::active_optimized) == 50);
  CHECK(alua_priority(scsi::AluaState::active_non_optimized) == 10);
  CHECK(alua_priority(scsi::AluaState::standby) == 1);
  CHECK(alua_priority(scsi::AluaState::unavailable) == 0);
  CHECK(alua_priority(scsi::AluaState::transitioning) == 0);
  CHECK(alua_carries_io(scsi::AluaState::active_non_optimized));
  CHECK_FALSE(alua_carries_io(scsi::AluaState::standby));
  CHECK(alua_carries_io(scsi::AluaState::transitioning));  // retried until it ends
  CHECK_FALSE(alua_carries_io(scsi::AluaState::unavailable));
}

TEST_CASE("the best group is the highest priority with an active member", "[mpio][group]") {
  // failover: one group per path, priorities 10 (path 0) and 5 (path 1).
  std::vector<GroupMember> paths{{0, 10, true}, {1, 5, true}};
  CHECK(best_group(paths) == 0u);
  paths[0].active = false;
  CHECK(best_group(paths) == 1u);
  paths[1].active = false;
  CHECK_FALSE(best_group(paths).has_value());
  // Equal priorities (failover without priority: keys): the earlier group wins.
  std::vector<GroupMember> equal{{1, 0, true}, {0, 0, true}};
  CHECK(best_group(equal) == 0u);
  // group_by_prio: optimized paths share group 50 and are taken over non-optimized ones.
  std::vector<GroupMember> alua{{10, 10, true}, {50, 50, false}, {50, 50, true}};
  CHECK(best_group(alua) == 50u);
}

TEST_CASE("a group that lost its last active path is left at once whatever failback says",
          "[mpio][group]") {
  std::vector<GroupMember> paths{{0, 10, false}, {1, 5, true}};
  for (auto mode : {Failback::Mode::immediate, Failback::Mode::manual, Failback::Mode::delayed}) {
    auto d = decide_group(paths, 0u, {mode, 30});
    CHECK(d.action == Action::switch_now);
  }
  // The very first choice also happens at once.
  CHECK(decide_group(paths, std::nullopt, {Failback::Mode::manual, 0}).action ==
        Action::switch_now);
}

TEST_CASE("a better group that came back is taken by the failback policy", "[mpio][group]") {
  // Path 0 (priority 10) is back while path 1 (priority 5) carries I/O.
  std::vector<GroupMember> paths{{0, 10, true}, {1, 5, true}};
  CHECK(decide_group(paths, 1u, {Failback::Mode::immediate, 0}).action == Action::switch_now);
  CHECK(decide_group(paths, 1u, {Failback::Mode::manual, 0}).action == Action::keep);
  auto later = decide_group(paths, 1u, {Failback::Mode::delayed, 7});
  CHECK(later.action == Action::switch_later);
  CHECK(later.delay_seconds == 7);
  // Nothing to do when the group in use is the best one.
  CHECK(decide_group(paths, 0u, {Failback::Mode::immediate, 0}).action == Action::keep);
}

TEST_CASE("multibus is one group: a path coming or going never switches groups", "[mpio][group]") {
  std::vector<GroupMember> paths{{0, 1, true}, {0, 1, false}};
  CHECK(decide_group(paths, 0u, {Failback::Mode::immediate, 0}).action == Action::keep);
  paths[1].active = true;
  paths[0].active = false;
  CHECK(decide_group(paths, 0u, {Failback::Mode::immediate, 0}).action == Action::keep);
}
