#include <catch2/catch.hpp>

#include <mpio/path_lifecycle.hpp>
#include <string>
#include <vector>

using namespace mpio;
using Kind = Event::Kind;
using S = LifeState;
using std::chrono::milliseconds;

namespace {

// The actions in the order the device performs them, as one line a table row can state.
std::string describe(const Actions& a) {
  std::string out;
  auto add = [&](const std::string& word) { out += (out.empty() ? "" : " ") + word; };
  if (a.last_error) add("error");
  if (a.place) add("place");
  if (a.emit) add("emit");
  if (a.reconsider_groups) add("reconsider");
  if (a.close_session) add("close");
  if (a.release_session) add("release");
  if (a.cancel_reconnect) add("cancel");
  if (a.reconnect_after) add("reconnect+" + std::to_string(a.reconnect_after->count()));
  if (a.login) add("login");
  if (a.reissue_held_writes) add("reissue-held");
  if (a.check_identity) add("check-identity");
  if (a.read_alua) add("read-alua");
  if (a.prove_held_writes) add("prove");
  if (a.reissue_waiting) add("reissue-waiting");
  if (a.continue_open) add("open");
  return out.empty() ? "-" : out;
}

Event ev(Kind kind, std::string detail = {}) {
  return Event{.kind = kind, .detail = std::move(detail)};
}
Event login_done(bool identified) {
  return Event{.kind = Kind::login_done, .detail = {}, .identified = identified};
}
Event alua(bool carries_io, bool priority_changed = false) {
  return Event{.kind = Kind::alua_read,
               .detail = "ALUA state changed",
               .carries_io = carries_io,
               .priority_changed = priority_changed};
}
Event reread(bool carries_io, bool priority_changed = false) {
  return Event{.kind = Kind::alua_reread,
               .detail = "ALUA state changed",
               .carries_io = carries_io,
               .priority_changed = priority_changed};
}
Event probe_done(bool carries_io) {
  return Event{.kind = Kind::probe_done, .detail = {}, .carries_io = carries_io};
}
Event proof_done(bool proven) {
  return Event{.kind = Kind::proof_done, .detail = "proof", .proven = proven};
}
Event reinstate(bool logged_in) {
  return Event{.kind = Kind::operator_reinstate, .detail = {}, .logged_in = logged_in};
}

struct Step {
  Event event;
  LifeState after;
  PathState shown;
  std::string actions;
};

void replay(PathLifecycle& life, const std::vector<Step>& steps) {
  for (size_t i = 0; i < steps.size(); ++i) {
    const auto& step = steps[i];
    INFO("step " << i + 1 << " in " << life_state_name(life.state()));
    const auto actions = life.on(step.event);
    CHECK(life_state_name(life.state()) == life_state_name(step.after));
    CHECK(path_state_name(life.status()) == path_state_name(step.shown));
    CHECK(describe(actions) == step.actions);
  }
}

// A path that opened the device and carries I/O, polling_interval 1 s.
PathLifecycle active_path() {
  PathLifecycle life(milliseconds(1000));
  life.on(login_done(false));
  life.on(probe_done(true));
  REQUIRE(life.state() == S::active);
  return life;
}

constexpr auto connecting = PathState::connecting;
constexpr auto active = PathState::active;
constexpr auto ghost = PathState::ghost;
constexpr auto failed = PathState::failed;
constexpr auto refused = PathState::refused;

}  // namespace

TEST_CASE("a path logs in, is probed and carries I/O", "[mpio][lifecycle]") {
  PathLifecycle life(milliseconds(1000));
  CHECK(life.status() == connecting);
  replay(life, {
                   {login_done(false), S::identifying, connecting, "open"},
                   {probe_done(true), S::active, active, "place reconsider"},
               });
}

TEST_CASE("a path that logs in after the probe shows its identity before carrying I/O",
          "[mpio][lifecycle]") {
  PathLifecycle life(milliseconds(1000));
  replay(life, {
                   {login_done(true), S::identifying, connecting, "check-identity"},
                   {ev(Kind::identity_same), S::identifying, connecting, "read-alua"},
                   {alua(false), S::ghost, ghost, "place emit reconsider reissue-waiting"},
               });
  // One that logged in while the probe ran is checked once the device is identified.
  PathLifecycle early(milliseconds(1000));
  replay(early, {
                    {login_done(false), S::identifying, connecting, "open"},
                    {ev(Kind::device_identified), S::identifying, connecting, "check-identity"},
                });
}

TEST_CASE("link down and back: the route's return reconnects at once, failures forgotten",
          "[mpio][lifecycle]") {
  auto life = active_path();
  replay(life, {
                   {ev(Kind::route_lost, "no route to the portal: link down"), S::failed_waiting,
                    failed, "error emit reconsider close reconnect+1000"},
                   // Already failed: a second loss of route or of the connection changes nothing.
                   {ev(Kind::route_lost), S::failed_waiting, failed, "-"},
                   {ev(Kind::connection_lost), S::failed_waiting, failed, "-"},
                   {ev(Kind::reconnect_due), S::reconnecting, failed, "login"},
                   {ev(Kind::login_failed, "no route"), S::failed_waiting, failed,
                    "error reconnect+2000"},
                   {ev(Kind::route_back), S::failed_waiting, failed, "reconnect+0"},
                   {ev(Kind::reconnect_due), S::reconnecting, failed, "login"},
                   // An attempt under way is not disturbed by a route event.
                   {ev(Kind::route_back), S::reconnecting, failed, "-"},
                   // Logged in again, the path stays failed until its identity check passes.
                   {login_done(true), S::rejoining, failed, "reissue-held check-identity"},
                   {ev(Kind::identity_same), S::rejoining, failed, "read-alua"},
                   {alua(true), S::active, active, "place emit reconsider reissue-waiting"},
               });
  CHECK(life.failures() == 0);
}

TEST_CASE("black hole: a NOP-Out timeout fails the path and attempts back off to 8 intervals",
          "[mpio][lifecycle]") {
  auto life = active_path();
  replay(life,
         {
             {ev(Kind::connection_lost, "NOP-Out timeout"), S::failed_waiting, failed,
              "error emit reconsider close reconnect+1000"},
             {ev(Kind::reconnect_due), S::reconnecting, failed, "login"},
             {ev(Kind::login_failed, "login timeout"), S::failed_waiting, failed,
              "error reconnect+2000"},
             {ev(Kind::reconnect_due), S::reconnecting, failed, "login"},
             {ev(Kind::login_failed), S::failed_waiting, failed, "error reconnect+4000"},
             {ev(Kind::reconnect_due), S::reconnecting, failed, "login"},
             {ev(Kind::login_failed), S::failed_waiting, failed, "error reconnect+8000"},
             {ev(Kind::reconnect_due), S::reconnecting, failed, "login"},
             {ev(Kind::login_failed), S::failed_waiting, failed, "error reconnect+8000"},
             {ev(Kind::reconnect_due), S::reconnecting, failed, "login"},
             // The login passes but the target, still busy with the old session, never answers
             // the identity check: the attempt fails after the login timeout, counted.
             {login_done(true), S::rejoining, failed, "reissue-held check-identity"},
             {ev(Kind::identity_unanswered, "identity check unanswered"), S::failed_waiting, failed,
              "error close reconnect+2000"},
             {ev(Kind::reconnect_due), S::reconnecting, failed, "login"},
             {login_done(true), S::rejoining, failed, "reissue-held check-identity"},
             {ev(Kind::identity_same), S::rejoining, failed, "read-alua"},
             {alua(true), S::active, active, "place emit reconsider reissue-waiting"},
         });
}

TEST_CASE("target restart: refused logins back off, then the path comes back",
          "[mpio][lifecycle]") {
  auto life = active_path();
  replay(life, {
                   {ev(Kind::connection_lost, "connection reset"), S::failed_waiting, failed,
                    "error emit reconsider close reconnect+1000"},
                   {ev(Kind::reconnect_due), S::reconnecting, failed, "login"},
                   {ev(Kind::login_failed, "target error"), S::failed_waiting, failed,
                    "error reconnect+2000"},
                   {ev(Kind::reconnect_due), S::reconnecting, failed, "login"},
                   {ev(Kind::login_failed, "target error"), S::failed_waiting, failed,
                    "error reconnect+4000"},
                   {ev(Kind::reconnect_due), S::reconnecting, failed, "login"},
                   {login_done(true), S::rejoining, failed, "reissue-held check-identity"},
                   // The identity check's error (the LU not ready yet) is another failed attempt.
                   {ev(Kind::identity_failed, "not ready"), S::failed_waiting, failed,
                    "error close reconnect+2000"},
                   {ev(Kind::reconnect_due), S::reconnecting, failed, "login"},
                   {login_done(true), S::rejoining, failed, "reissue-held check-identity"},
                   {ev(Kind::identity_same), S::rejoining, failed, "read-alua"},
                   {ev(Kind::alua_failed, "ALUA check failed"), S::failed_waiting, failed,
                    "error close reconnect+2000"},
                   {ev(Kind::reconnect_due), S::reconnecting, failed, "login"},
                   {login_done(true), S::rejoining, failed, "reissue-held check-identity"},
                   {ev(Kind::identity_same), S::rejoining, failed, "read-alua"},
                   {alua(true), S::active, active, "place emit reconsider reissue-waiting"},
               });
}

TEST_CASE("a path to another device is refused and never logged in again", "[mpio][lifecycle]") {
  auto life = active_path();
  replay(life, {
                   {ev(Kind::connection_lost), S::failed_waiting, failed,
                    "error emit reconsider close reconnect+1000"},
                   {ev(Kind::reconnect_due), S::reconnecting, failed, "login"},
                   {login_done(true), S::rejoining, failed, "reissue-held check-identity"},
                   {ev(Kind::identity_other, "presents device X, not Y"), S::refused, refused,
                    "error emit release cancel"},
                   {ev(Kind::reconnect_due), S::refused, refused, "-"},
                   {ev(Kind::route_back), S::refused, refused, "-"},
                   {ev(Kind::connection_lost), S::refused, refused, "-"},
                   {ev(Kind::operator_fail), S::refused, refused, "-"},
                   {reinstate(false), S::refused, refused, "-"},
                   {login_done(true), S::refused, refused, "-"},
               });
  // In the open: the probe shows another device than target.wwid.
  PathLifecycle probed(milliseconds(1000));
  replay(probed, {
                     {login_done(false), S::identifying, connecting, "open"},
                     {ev(Kind::identity_other, "presents device X"), S::refused, refused,
                      "error emit release cancel"},
                 });
}

TEST_CASE("an answer about this LU lets go of the shared session instead of closing it",
          "[mpio][lifecycle]") {
  // Issue 21: one LU deleted at the target answers LOGICAL UNIT NOT SUPPORTED (25/00) on a
  // session every LU of the path shares. The path fails for this LU, but the session stays for
  // the others: this LU releases it, joins it again at its reconnect, and its identity check
  // (answered 25/00 again) releases it again, never closing it.
  auto life = active_path();
  const auto answered = [](Kind kind, std::string detail) {
    return Event{.kind = kind, .detail = std::move(detail), .answered = true};
  };
  replay(life, {
                   {answered(Kind::connection_lost, "LOGICAL UNIT NOT SUPPORTED"),
                    S::failed_waiting, failed, "error emit reconsider release reconnect+1000"},
                   {ev(Kind::reconnect_due), S::reconnecting, failed, "login"},
                   {login_done(true), S::rejoining, failed, "reissue-held check-identity"},
                   {answered(Kind::identity_failed, "identity check failed: 25/00"),
                    S::failed_waiting, failed, "error release reconnect+2000"},
                   {ev(Kind::reconnect_due), S::reconnecting, failed, "login"},
                   {login_done(true), S::rejoining, failed, "reissue-held check-identity"},
                   // The LU is back: the path carries I/O again, on the session it never closed.
                   {ev(Kind::identity_same), S::rejoining, failed, "read-alua"},
                   {alua(true), S::active, active, "place emit reconsider reissue-waiting"},
               });
  // A transport failure is about the connection: it closes, for every LU (each fails over).
  auto lost = active_path();
  replay(lost, {
                   {ev(Kind::connection_lost, "connection reset"), S::failed_waiting, failed,
                    "error emit reconsider close reconnect+1000"},
               });
  auto unanswered = active_path();
  replay(unanswered, {
                         {ev(Kind::connection_lost), S::failed_waiting, failed,
                          "error emit reconsider close reconnect+1000"},
                         {ev(Kind::reconnect_due), S::reconnecting, failed, "login"},
                         {login_done(true), S::rejoining, failed, "reissue-held check-identity"},
                         {ev(Kind::identity_failed, "identity check failed: command timeout"),
                          S::failed_waiting, failed, "error close reconnect+2000"},
                     });
  // Being answered changes only how the session is let go: a path already failed does nothing.
  replay(unanswered, {
                         {answered(Kind::connection_lost, "25/00"), S::failed_waiting, failed, "-"},
                     });
}

TEST_CASE("failover and failback: every change of a path's use reconsiders the groups",
          "[mpio][lifecycle]") {
  auto life = active_path();
  replay(life, {
                   // SPC-4 §5.16.2.6: the target moves the port group to standby by itself.
                   {reread(false, true), S::ghost, ghost, "place emit reconsider"},
                   {reread(false), S::ghost, ghost, "place"},
                   {reread(true, true), S::active, active, "place emit reconsider reissue-waiting"},
                   // Same state, another priority (non-optimized to optimized): another group.
                   {reread(true, true), S::active, active, "place emit reconsider reissue-waiting"},
                   {reread(true), S::active, active, "place"},
                   {ev(Kind::connection_lost), S::failed_waiting, failed,
                    "error emit reconsider close reconnect+1000"},
                   // A re-read that ends after the path failed places nothing.
                   {reread(true, true), S::failed_waiting, failed, "-"},
               });
}

TEST_CASE("the operator's fail path keeps the session and stops reconnecting",
          "[mpio][lifecycle]") {
  auto life = active_path();
  replay(life,
         {
             {ev(Kind::operator_fail), S::operator_failed, failed, "error emit reconsider cancel"},
             {ev(Kind::operator_fail), S::operator_failed, failed, "-"},
             {ev(Kind::connection_lost), S::operator_failed, failed, "-"},
             {ev(Kind::route_back), S::operator_failed, failed, "-"},
             {ev(Kind::reconnect_due), S::operator_failed, failed, "-"},
             // Still logged in: the identity check puts it back to work.
             {reinstate(true), S::rejoining, failed, "check-identity"},
             {ev(Kind::identity_same), S::rejoining, failed, "read-alua"},
             {alua(true), S::active, active, "place emit reconsider reissue-waiting"},
         });
  CHECK_FALSE(life.operator_failed());
  // Reinstated after its session went away: it logs in again.
  replay(life,
         {
             {ev(Kind::operator_fail), S::operator_failed, failed, "error emit reconsider cancel"},
             {reinstate(false), S::reconnecting, failed, "login"},
             {login_done(true), S::rejoining, failed, "reissue-held check-identity"},
         });
}

TEST_CASE("a path failed by the operator during its check stays failed", "[mpio][lifecycle]") {
  auto life = active_path();
  replay(life,
         {
             {ev(Kind::connection_lost), S::failed_waiting, failed,
              "error emit reconsider close reconnect+1000"},
             {ev(Kind::operator_fail), S::operator_failed, failed, "error emit reconsider cancel"},
             {reinstate(false), S::reconnecting, failed, "login"},
             {ev(Kind::operator_fail), S::operator_failed_checking, failed,
              "error emit reconsider cancel"},
             // The login under way proves the held writes dead, and the check still runs.
             {login_done(true), S::operator_failed_checking, failed, "reissue-held check-identity"},
             {ev(Kind::identity_same), S::operator_failed_checking, failed, "read-alua"},
             {alua(true), S::operator_failed, failed, "-"},
         });
  // Its attempt failing closes the session and schedules nothing.
  auto other = active_path();
  other.on(ev(Kind::connection_lost));
  other.on(ev(Kind::reconnect_due));
  other.on(login_done(true));
  replay(other, {
                    {ev(Kind::operator_fail), S::operator_failed_checking, failed,
                     "error emit reconsider cancel"},
                    {ev(Kind::identity_failed, "x"), S::operator_failed, failed, "error close"},
                    {reinstate(false), S::reconnecting, failed, "login"},
                });
}

TEST_CASE("writes held on a failed path are proven dead before they are re-issued",
          "[mpio][lifecycle]") {
  auto life = active_path();
  replay(life, {
                   {ev(Kind::connection_lost), S::failed_waiting, failed,
                    "error emit reconsider close reconnect+1000"},
                   {ev(Kind::writes_held), S::failed_waiting, failed, "prove"},
                   {ev(Kind::proof_started), S::failed_proving, failed, "-"},
                   // One proof at a time, and no login with the same ISID meanwhile (the two
                   // sessions would reinstate each other, RFC 7143 §6.3.5).
                   {ev(Kind::writes_held), S::failed_proving, failed, "-"},
                   {ev(Kind::reconnect_due), S::failed_proving, failed, "reconnect+1000"},
                   {ev(Kind::route_back), S::failed_proving, failed, "reconnect+0"},
                   {ev(Kind::reconnect_due), S::failed_proving, failed, "reconnect+1000"},
                   {proof_done(true), S::failed_waiting, failed, "reissue-held"},
                   {ev(Kind::reconnect_due), S::reconnecting, failed, "login"},
                   // While its own login is in flight, that login is the proof.
                   {ev(Kind::writes_held), S::reconnecting, failed, "-"},
                   {ev(Kind::login_failed), S::failed_waiting, failed, "error reconnect+2000"},
                   // A failed proof keeps the writes held; the retry comes as writes_held again.
                   {ev(Kind::writes_held), S::failed_waiting, failed, "prove"},
                   {ev(Kind::proof_started), S::failed_proving, failed, "-"},
                   {proof_done(false), S::failed_waiting, failed, "-"},
               });
  // A path failed by the operator proves its writes too, and reinstating it waits for the proof.
  auto op = active_path();
  replay(op,
         {
             {ev(Kind::operator_fail), S::operator_failed, failed, "error emit reconsider cancel"},
             {ev(Kind::writes_held), S::operator_failed, failed, "prove"},
             {ev(Kind::proof_started), S::operator_failed_proving, failed, "-"},
             {reinstate(false), S::failed_proving, failed, "reconnect+1000"},
             {proof_done(true), S::failed_waiting, failed, "reissue-held"},
         });
}

TEST_CASE("a probe cut short by the path going away is tried again on its next login",
          "[mpio][lifecycle]") {
  PathLifecycle life(milliseconds(1000));
  replay(life, {
                   {login_done(false), S::identifying, connecting, "open"},
                   {ev(Kind::connection_lost, "logout requested"), S::failed_waiting, failed,
                    "error emit reconsider close reconnect+1000"},
                   {ev(Kind::probe_interrupted), S::probe_waiting, failed, "-"},
                   {ev(Kind::reconnect_due), S::probe_reconnecting, failed, "login"},
                   {login_done(false), S::identifying, connecting, "reissue-held open"},
                   {ev(Kind::connection_lost), S::failed_waiting, failed,
                    "error emit reconsider close reconnect+1000"},
                   {ev(Kind::probe_interrupted), S::probe_waiting, failed, "-"},
                   {ev(Kind::route_back), S::probe_waiting, failed, "reconnect+0"},
                   {ev(Kind::reconnect_due), S::probe_reconnecting, failed, "login"},
                   // The second chance failed: the open decides without this path.
                   {ev(Kind::login_failed, "refused"), S::failed_waiting, failed,
                    "error reconnect+2000 open"},
               });
  CHECK_FALSE(life.reprobe_pending());
  // The probe may end before the path's failure is reported (a logout the target asked for).
  PathLifecycle early(milliseconds(200));
  replay(early, {
                    {login_done(false), S::identifying, connecting, "open"},
                    {ev(Kind::probe_interrupted), S::probe_cut_short, connecting, "-"},
                    {ev(Kind::device_identified), S::probe_cut_short, connecting, "-"},
                    {ev(Kind::connection_lost, "logout requested"), S::probe_waiting, failed,
                     "error emit reconsider close reconnect+200"},
                    {ev(Kind::reconnect_due), S::probe_reconnecting, failed, "login"},
                    {login_done(false), S::identifying, connecting, "reissue-held open"},
                });
}

TEST_CASE("a first login that fails leaves the open to the other paths", "[mpio][lifecycle]") {
  PathLifecycle life(milliseconds(500));
  replay(life, {
                   {ev(Kind::login_failed, "unreachable"), S::failed_waiting, failed,
                    "error reconnect+500 open"},
                   // Its login ending after the route went away changes nothing more.
                   {ev(Kind::login_failed, "unreachable"), S::failed_waiting, failed,
                    "error reconnect+500 open"},
                   {ev(Kind::reconnect_due), S::reconnecting, failed, "login"},
                   // Logged in before the device is identified: waits, failed, for the probe.
                   {login_done(false), S::rejoining, failed, "reissue-held"},
                   {ev(Kind::device_identified), S::rejoining, failed, "check-identity"},
               });
}

TEST_CASE("closing cancels the reconnect timer", "[mpio][lifecycle]") {
  auto life = active_path();
  life.on(ev(Kind::connection_lost));
  CHECK(describe(life.on(ev(Kind::closing))) == "cancel");
}

TEST_CASE("status shows a path coming back as failed until its check passes", "[mpio][lifecycle]") {
  // Every state, reached by a short history, and what status output shows for it.
  struct Row {
    std::vector<Event> history;
    LifeState state;
    PathState shown;
  };
  const Event lost = ev(Kind::connection_lost);
  const Event due = ev(Kind::reconnect_due);
  const std::vector<Row> rows{
      {{}, S::connecting, connecting},
      {{login_done(false)}, S::identifying, connecting},
      {{login_done(false), ev(Kind::probe_interrupted)}, S::probe_cut_short, connecting},
      {{login_done(false), probe_done(true)}, S::active, active},
      {{login_done(false), probe_done(false)}, S::ghost, ghost},
      {{login_done(false), probe_done(true), lost}, S::failed_waiting, failed},
      {{login_done(false), probe_done(true), lost, ev(Kind::proof_started)},
       S::failed_proving,
       failed},
      {{login_done(false), probe_done(true), lost, due}, S::reconnecting, failed},
      {{login_done(false), probe_done(true), lost, due, login_done(true)}, S::rejoining, failed},
      {{login_done(false), lost, ev(Kind::probe_interrupted)}, S::probe_waiting, failed},
      {{login_done(false), lost, ev(Kind::probe_interrupted), due}, S::probe_reconnecting, failed},
      {{login_done(false), probe_done(true), ev(Kind::operator_fail)}, S::operator_failed, failed},
      {{login_done(false), probe_done(true), ev(Kind::operator_fail), ev(Kind::proof_started)},
       S::operator_failed_proving,
       failed},
      {{login_done(true), ev(Kind::operator_fail)}, S::operator_failed_checking, failed},
      {{login_done(true), ev(Kind::identity_other)}, S::refused, refused},
  };
  for (const auto& row : rows) {
    PathLifecycle life(milliseconds(1000));
    for (const auto& event : row.history) life.on(event);
    INFO(life_state_name(row.state));
    CHECK(life.state() == row.state);
    CHECK(life.status() == row.shown);
    CHECK(life_state_name(life.state()) != "unknown");
  }
}
