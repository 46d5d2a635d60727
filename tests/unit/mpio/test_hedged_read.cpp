#include <catch2/catch.hpp>

#include <mpio/hedged_read.hpp>

using namespace mpio;
using namespace std::chrono_literals;
using Action = RaceStep::Action;

TEST_CASE("a path's recent latency is RFC 6298's smoothed mean", "[mpio][hedge]") {
  PathLatency path;
  CHECK_FALSE(path.recent().has_value());
  path.observe(8ms);  // the first sample is the mean
  CHECK(path.recent() == std::chrono::nanoseconds(8ms));
  path.observe(16ms);  // 8 + (16 - 8) / 8
  CHECK(path.recent() == std::chrono::nanoseconds(9ms));
  // One outlier moves it by an eighth of the difference, not to the outlier ...
  for (int i = 0; i < 200; ++i) path.observe(8ms);
  path.observe(408ms);
  CHECK(*path.recent() > 50ms);
  CHECK(*path.recent() < 60ms);
  // ... and normal answers bring it back within a few dozen commands.
  for (int i = 0; i < 40; ++i) path.observe(8ms);
  CHECK(*path.recent() < 9ms);
}

TEST_CASE("the hedge threshold is the factor times the recent latency, at least the floor",
          "[mpio][hedge]") {
  HedgedReadPolicy policy{.enabled = true, .floor_ms = 100, .latency_factor = 3};
  PathLatency path;
  CHECK(hedge_after(policy, path) == 100ms);  // nothing answered yet: the floor
  path.observe(20ms);                         // x3 = 60 ms < floor
  CHECK(hedge_after(policy, path) == 100ms);
  PathLatency slow;
  slow.observe(150ms);  // x3 = 450 ms
  CHECK(hedge_after(policy, slow) == 450ms);
}

TEST_CASE("a client read outstanding past its threshold is hedged once, when another path is up",
          "[mpio][hedge]") {
  const HedgedReadPolicy policy;
  HedgeCandidate read{
      .client_read = true, .outstanding = 50ms, .threshold = 100ms, .other_path_usable = true};
  CHECK(decide_hedge(policy, read) == HedgeDecision::wait);
  read.outstanding = 100ms;
  CHECK(decide_hedge(policy, read) == HedgeDecision::send);
  // No other path (a single path, or the other one failed): wait, one may come back.
  read.other_path_usable = false;
  CHECK(decide_hedge(policy, read) == HedgeDecision::wait);
  read.other_path_usable = true;
  read.already_hedged = true;
  CHECK(decide_hedge(policy, read) == HedgeDecision::never);
}

TEST_CASE("writes, probes, parameter data and the off switch are never hedged", "[mpio][hedge]") {
  HedgeCandidate read{
      .client_read = true, .outstanding = 10s, .threshold = 100ms, .other_path_usable = true};
  HedgedReadPolicy off;
  off.enabled = false;
  CHECK(decide_hedge(off, read) == HedgeDecision::never);
  HedgeCandidate write = read;  // a WRITE, UNMAP, GET LBA STATUS: not a client read
  write.client_read = false;
  CHECK(decide_hedge(HedgedReadPolicy{}, write) == HedgeDecision::never);
  HedgeCandidate probe = read;
  probe.pinned = true;
  CHECK(decide_hedge(HedgedReadPolicy{}, probe) == HedgeDecision::never);
}

TEST_CASE("black hole: the hedge answers first, the first attempt is detached and later dropped",
          "[mpio][hedge]") {
  ReadRace race;
  race.hedge_sent();
  // The hedge's data comes while the first attempt is still out on the silent path.
  const auto won = race.done(Attempt::hedge, true);
  CHECK(won == RaceStep{.action = Action::win, .detach_first = true, .abort_loser = false});
  CHECK(race.winner() == Attempt::hedge);
  CHECK(race.over());
  // The NOP-Out timeout fails the silent path seconds later: its attempt is only forgotten.
  CHECK(race.done(Attempt::first, false).action == Action::discard);
  CHECK_FALSE(race.outstanding(Attempt::first));
}

TEST_CASE("a slow first attempt that answers first wins; the hedge is dropped whatever it brings",
          "[mpio][hedge]") {
  ReadRace race;
  race.hedge_sent();
  const auto won = race.done(Attempt::first, true);
  CHECK(won.action == Action::win);
  CHECK_FALSE(won.detach_first);  // the winner's data is already in the client's buffer
  CHECK_FALSE(won.abort_loser);   // the hedge finishes into its own buffer
  CHECK(race.done(Attempt::hedge, true).action == Action::discard);
}

TEST_CASE("a good answer wins over an earlier failure of the other attempt", "[mpio][hedge]") {
  SECTION("the first fails (its path dropped), the hedge answers") {
    ReadRace race;
    race.hedge_sent();
    CHECK(race.done(Attempt::first, false).action == Action::wait_for_other);
    const auto won = race.done(Attempt::hedge, true);
    CHECK(won.action == Action::win);
    CHECK_FALSE(won.detach_first);  // the first is no longer on its session
  }
  SECTION("the hedge fails (CHECK CONDITION), the first answers") {
    ReadRace race;
    race.hedge_sent();
    CHECK(race.done(Attempt::hedge, false).action == Action::wait_for_other);
    CHECK(race.done(Attempt::first, true).action == Action::win);
  }
}

TEST_CASE("both attempts failing fall back to the failure rules of an unhedged read",
          "[mpio][hedge]") {
  SECTION("the first fails last: its own decision applies") {
    ReadRace race;
    race.hedge_sent();
    CHECK(race.done(Attempt::hedge, false).action == Action::wait_for_other);
    CHECK(race.done(Attempt::first, false).action == Action::carry_out);
  }
  SECTION("the hedge fails last: the read is sent again") {
    ReadRace race;
    race.hedge_sent();
    CHECK(race.done(Attempt::first, false).action == Action::wait_for_other);
    CHECK(race.done(Attempt::hedge, false).action == Action::reissue_first);
  }
  SECTION("no hedge was sent: the first attempt's outcome is the read's") {
    ReadRace race;
    CHECK(race.done(Attempt::first, false).action == Action::carry_out);
    ReadRace good;
    CHECK(good.done(Attempt::first, true).action == Action::win);
  }
}
