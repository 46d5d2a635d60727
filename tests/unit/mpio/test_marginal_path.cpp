#include <catch2/catch.hpp>

#include <mpio/marginal_path.hpp>
#include <mpio/path_lifecycle.hpp>
#include <string>

using namespace mpio;
using Kind = Event::Kind;
using S = LifeState;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

// A made-up clock: the policy and the life cycle only see the time points they are given.
struct FakeClock {
  MarginalPath::Clock::time_point now{};
  void advance(milliseconds by) { now += by; }
};

// san_path_err_threshold 2, san_path_err_forget_rate 5 (polling intervals of 1 s: a failure
// is forgotten per 5 s up), san_path_err_recovery_time 10 s.
constexpr MarginalPathPolicy kPolicy{
    .san_path_err_threshold = 2, .san_path_err_forget_rate = 5, .san_path_err_recovery_time = 10};
constexpr milliseconds kPolling{1000};

// The path comes up, stays up `up_for`, and fails: `times` times in a row.
void flap(MarginalPath& m, FakeClock& clock, int times, milliseconds up_for) {
  for (int i = 0; i < times; ++i) {
    m.up(clock.now);
    clock.advance(up_for);
    m.failed(clock.now);
  }
}

}  // namespace

TEST_CASE("marginal path: off unless all three keys are set", "[mpio][marginal]") {
  FakeClock clock;
  for (auto policy : {MarginalPathPolicy{}, MarginalPathPolicy{2, 5, 0},
                      MarginalPathPolicy{2, 0, 10}, MarginalPathPolicy{0, 5, 10}}) {
    MarginalPath m(policy, kPolling);
    flap(m, clock, 10, milliseconds(100));
    CHECK_FALSE(m.marginal());
    CHECK_FALSE(m.hold(clock.now));
    CHECK(m.failures(clock.now) == 0);
  }
}

TEST_CASE("marginal path: held out once failures exceed the threshold", "[mpio][marginal]") {
  FakeClock clock;
  MarginalPath m(kPolicy, kPolling);
  // Two quick failures are within the threshold ("greater than", as multipath.conf says).
  for (int i = 0; i < 2; ++i) {
    flap(m, clock, 1, seconds(2));
    CHECK_FALSE(m.marginal());
    clock.advance(seconds(2));
    CHECK_FALSE(m.hold(clock.now));
  }
  CHECK(m.failures(clock.now) == 2);
  // The third: marginal. Its next good return is held for the recovery time from then.
  flap(m, clock, 1, seconds(2));
  CHECK(m.marginal());
  clock.advance(seconds(3));
  CHECK(m.hold(clock.now));
  CHECK(m.time_left(clock.now) == seconds(10));
  clock.advance(seconds(4));
  CHECK(m.hold(clock.now));
  CHECK(m.time_left(clock.now) == seconds(6));
  clock.advance(seconds(6));
  CHECK_FALSE(m.hold(clock.now));  // stayed good 10 s: reinstated with a clean count
  CHECK_FALSE(m.marginal());
  CHECK(m.failures(clock.now) == 0);
  CHECK(m.time_left(clock.now) == milliseconds(0));
}

TEST_CASE("marginal path: a failure during the hold starts it over from the next return",
          "[mpio][marginal]") {
  FakeClock clock;
  MarginalPath m(kPolicy, kPolling);
  flap(m, clock, 3, seconds(1));
  REQUIRE(m.marginal());
  clock.advance(seconds(1));
  CHECK(m.hold(clock.now));
  clock.advance(seconds(8));  // 2 s left
  m.failed(clock.now);        // the link flapped again
  CHECK(m.marginal());
  CHECK(m.time_left(clock.now) == milliseconds(0));  // not held while it is down
  CHECK(m.failures(clock.now) == 3);                 // not counted again while marginal
  clock.advance(seconds(5));
  CHECK(m.hold(clock.now));
  CHECK(m.time_left(clock.now) == seconds(10));
  clock.advance(seconds(10));
  CHECK_FALSE(m.hold(clock.now));
}

TEST_CASE("marginal path: time up forgets one failure per forget_rate polling intervals",
          "[mpio][marginal]") {
  FakeClock clock;
  MarginalPath m(kPolicy, kPolling);
  flap(m, clock, 2, seconds(1));
  CHECK(m.failures(clock.now) == 2);
  // Time down forgets nothing. Time up counts from the first failure on (1 s so far).
  clock.advance(seconds(60));
  CHECK(m.failures(clock.now) == 2);
  m.up(clock.now);
  clock.advance(milliseconds(3999));
  CHECK(m.failures(clock.now) == 2);
  clock.advance(milliseconds(1));
  CHECK(m.failures(clock.now) == 1);
  // A failure now counts against one left: two, not marginal.
  clock.advance(seconds(1));
  m.failed(clock.now);
  CHECK(m.failures(clock.now) == 2);
  CHECK_FALSE(m.marginal());
  // Progress towards the next forgetting carries over the failure: 1 s up already counted.
  m.up(clock.now);
  clock.advance(seconds(4));
  CHECK(m.failures(clock.now) == 1);
  clock.advance(seconds(5));
  CHECK(m.failures(clock.now) == 0);
  // Failures rarer than the forget period never add up.
  for (int i = 0; i < 10; ++i) {
    m.failed(clock.now);
    m.up(clock.now);
    clock.advance(seconds(6));
  }
  CHECK_FALSE(m.marginal());
}

TEST_CASE("marginal path: released early, then counted afresh", "[mpio][marginal]") {
  FakeClock clock;
  MarginalPath m(kPolicy, kPolling);
  flap(m, clock, 3, milliseconds(0));
  REQUIRE(m.hold(clock.now));
  m.release();
  CHECK_FALSE(m.marginal());
  CHECK(m.failures(clock.now) == 0);
  CHECK_FALSE(m.hold(clock.now));
}

namespace {

// A path at work under kPolicy: logged in, probed, carrying I/O.
PathLifecycle active_marginal_path(FakeClock& clock) {
  PathLifecycle life(kPolling, kPolicy);
  life.on(Event{.kind = Kind::login_done, .at = clock.now});
  life.on(Event{.kind = Kind::probe_done, .carries_io = true, .at = clock.now});
  REQUIRE(life.state() == S::active);
  return life;
}

// The link drops (NOP-Out timeout, route lost), comes back, and the path logs in again and shows
// the same device: what it answers after the ALUA read.
Actions flap_and_rejoin(PathLifecycle& life, FakeClock& clock, milliseconds up_for) {
  clock.advance(up_for);
  life.on(Event{.kind = Kind::connection_lost, .detail = "NOP-Out timeout", .at = clock.now});
  clock.advance(milliseconds(1000));
  life.on(Event{.kind = Kind::reconnect_due, .at = clock.now});
  life.on(Event{.kind = Kind::login_done, .identified = true, .at = clock.now});
  life.on(Event{.kind = Kind::identity_same, .at = clock.now});
  return life.on(Event{.kind = Kind::alua_read, .carries_io = true, .at = clock.now});
}

// Three quick flaps under kPolicy: the path is back, but held out.
PathLifecycle held_out_path(FakeClock& clock) {
  auto life = active_marginal_path(clock);
  for (int i = 0; i < 3; ++i) flap_and_rejoin(life, clock, milliseconds(500));
  REQUIRE(life.state() == S::held_out);
  return life;
}

}  // namespace

TEST_CASE("life cycle: a flapping path is held out as marginal, then reinstated",
          "[mpio][marginal][lifecycle]") {
  FakeClock clock;
  auto life = active_marginal_path(clock);
  // Failures 1 and 2: back at work on the next good login, as without the setting.
  for (int i = 0; i < 2; ++i) {
    const auto a = flap_and_rejoin(life, clock, milliseconds(2000));
    CHECK(life.state() == S::active);
    CHECK(a.reissue_waiting);
    CHECK_FALSE(a.hold_for);
  }
  // Failure 3: logged in and identified, but held out; the device arms the hold's timer.
  auto a = flap_and_rejoin(life, clock, milliseconds(2000));
  CHECK(life.state() == S::held_out);
  CHECK(life.status() == PathState::marginal);
  CHECK(path_state_name(life.status()) == "marginal");
  CHECK(a.place);
  CHECK_FALSE(a.reissue_waiting);
  CHECK_FALSE(a.reconsider_groups);
  REQUIRE(a.hold_for);
  CHECK(*a.hold_for == seconds(10));
  REQUIRE(a.emit);
  CHECK(a.emit->find("marginal") != std::string::npos);
  CHECK(life.marginal().time_left(clock.now) == seconds(10));

  // It flaps during the hold: failed, and held again for the full time on its next return.
  clock.advance(seconds(4));
  a = life.on(Event{.kind = Kind::route_lost, .detail = "no route", .at = clock.now});
  CHECK(life.state() == S::failed_waiting);
  CHECK(a.close_session);
  CHECK(a.reconnect_after);
  // The old hold's timer may still fire: a failed path ignores it.
  CHECK(life.on(Event{.kind = Kind::hold_over, .at = clock.now + seconds(6)}).emit == std::nullopt);
  clock.advance(seconds(1));
  life.on(Event{.kind = Kind::route_back, .at = clock.now});
  life.on(Event{.kind = Kind::reconnect_due, .at = clock.now});
  life.on(Event{.kind = Kind::login_done, .identified = true, .at = clock.now});
  life.on(Event{.kind = Kind::identity_same, .at = clock.now});
  a = life.on(Event{.kind = Kind::alua_read, .carries_io = true, .at = clock.now});
  CHECK(life.state() == S::held_out);
  REQUIRE(a.hold_for);
  CHECK(*a.hold_for == seconds(10));

  // Its timer fires: the hold is over, the path carries I/O again with a clean count.
  clock.advance(seconds(10));
  a = life.on(Event{.kind = Kind::hold_over, .at = clock.now});
  CHECK(life.state() == S::active);
  CHECK(a.reissue_waiting);
  CHECK(a.reconsider_groups);
  CHECK(life.marginal().failures(clock.now) == 0);
  CHECK_FALSE(life.marginal().marginal());
  // One more failure is just a failure again.
  a = flap_and_rejoin(life, clock, milliseconds(2000));
  CHECK(life.state() == S::active);
}

TEST_CASE("life cycle: a held-out standby path returns as a ghost, after a re-read",
          "[mpio][marginal][lifecycle]") {
  FakeClock clock;
  auto life = held_out_path(clock);
  // The periodic ALUA re-read keeps a held path's placement current; it stays held.
  auto a =
      life.on(Event{.kind = Kind::alua_reread, .carries_io = false, .at = clock.now + seconds(1)});
  CHECK(a.place);
  CHECK(life.state() == S::held_out);
  clock.advance(seconds(10));
  life.on(Event{.kind = Kind::hold_over, .at = clock.now});
  CHECK(life.state() == S::ghost);
}

TEST_CASE("life cycle: a held-out path is reinstated early when no other path carries I/O",
          "[mpio][marginal][lifecycle]") {
  FakeClock clock;
  auto life = held_out_path(clock);
  clock.advance(seconds(1));
  const auto a = life.on(Event{.kind = Kind::only_path, .at = clock.now});
  CHECK(life.state() == S::active);
  CHECK(a.reissue_waiting);
  REQUIRE(a.emit);
  CHECK(a.emit->find("early") != std::string::npos);
  CHECK_FALSE(life.marginal().marginal());
  // A path at work ignores the event.
  CHECK(life.on(Event{.kind = Kind::only_path, .at = clock.now}).emit == std::nullopt);
}

TEST_CASE("life cycle: the operator's reinstate-path overrides the hold",
          "[mpio][marginal][lifecycle]") {
  FakeClock clock;
  auto life = held_out_path(clock);
  life.on(Event{.kind = Kind::operator_fail, .at = clock.now});
  CHECK(life.state() == S::operator_failed);
  life.on(Event{.kind = Kind::operator_reinstate, .logged_in = true, .at = clock.now});
  life.on(Event{.kind = Kind::identity_same, .at = clock.now});
  life.on(Event{.kind = Kind::alua_read, .carries_io = true, .at = clock.now});
  CHECK(life.state() == S::active);
}

TEST_CASE("life cycle: reinstate-path ends a hold at once", "[mpio][marginal][lifecycle]") {
  FakeClock clock;
  auto life = held_out_path(clock);
  const auto a =
      life.on(Event{.kind = Kind::operator_reinstate, .logged_in = true, .at = clock.now});
  CHECK(life.state() == S::active);
  CHECK(a.reissue_waiting);
  CHECK_FALSE(life.marginal().marginal());
}

TEST_CASE("life cycle: without multipath.marginal_path a flapping path always comes back",
          "[mpio][marginal][lifecycle]") {
  FakeClock clock;
  PathLifecycle life(kPolling);
  life.on(Event{.kind = Kind::login_done, .at = clock.now});
  life.on(Event{.kind = Kind::probe_done, .carries_io = true, .at = clock.now});
  for (int i = 0; i < 20; ++i) {
    const auto a = flap_and_rejoin(life, clock, milliseconds(500));
    CHECK(life.state() == S::active);
    CHECK_FALSE(a.hold_for);
  }
}

TEST_CASE("life cycle: failures before the path ever carried I/O are not counted",
          "[mpio][marginal][lifecycle]") {
  FakeClock clock;
  PathLifecycle life(kPolling, kPolicy);
  // Logins that fail, and an identity check lost with the path, are attempts, not failures.
  life.on(Event{.kind = Kind::login_failed, .detail = "refused", .at = clock.now});
  for (int i = 0; i < 5; ++i) {
    life.on(Event{.kind = Kind::reconnect_due, .at = clock.now});
    life.on(Event{.kind = Kind::login_failed, .detail = "unreachable", .at = clock.now});
  }
  life.on(Event{.kind = Kind::reconnect_due, .at = clock.now});
  life.on(Event{.kind = Kind::login_done, .identified = true, .at = clock.now});
  life.on(Event{.kind = Kind::identity_failed, .detail = "dropped", .at = clock.now});
  CHECK(life.marginal().failures(clock.now) == 0);
  life.on(Event{.kind = Kind::reconnect_due, .at = clock.now});
  life.on(Event{.kind = Kind::login_done, .identified = true, .at = clock.now});
  life.on(Event{.kind = Kind::identity_same, .at = clock.now});
  life.on(Event{.kind = Kind::alua_read, .carries_io = true, .at = clock.now});
  CHECK(life.state() == S::active);
}
