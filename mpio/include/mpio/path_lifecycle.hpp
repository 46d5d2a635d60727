// The life cycle of one path (one I_T nexus) as a state machine, with multipathd's meaning:
// a path logs in, shows its identity, is placed by its ALUA state, fails, waits, logs in again
// and shows its identity again before it carries I/O. Pure policy: the device feeds it what
// happened (an Event) and performs what it returns (Actions). No I/O, no clock, no logging.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "mpio/marginal_path.hpp"

namespace mpio {

// What status output shows (multipath -ll's vocabulary). active: carries I/O when its group is
// in use. ghost: logged in and identified, but its target port group is in ALUA standby: kept
// ready, carries nothing. refused: presents another device; never carries I/O. marginal: logged
// in and identified, but held out after failing too often (multipath.marginal_path), as
// multipathd holds a shaky path "delayed".
enum class PathState { connecting, active, ghost, failed, refused, marginal };
std::string_view path_state_name(PathState state);

// Every state a path can be in. Several project onto one PathState for status output (after
// the arrow), as multipath -ll shows a path "faulty" from the moment it fails until its
// checker passes again.
enum class LifeState {
  // First login in flight, while the device opens. -> connecting
  connecting,
  // Logged in; the device's probe or the path's identity check is to come. -> connecting
  identifying,
  // Carries I/O when its group is in use. -> active
  active,
  // Logged in and identified, its port group in ALUA standby: kept ready. -> ghost
  ghost,
  // Failed; the reconnect timer runs (backoff). -> failed
  failed_waiting,
  // Failed; a proof of its held writes (a login with its ISID through another path, or a
  // LOGICAL UNIT RESET) is in flight, so its own login waits. -> failed
  failed_proving,
  // Failed; its own login is in flight. -> failed
  reconnecting,
  // Failed; logged in again, its identity check is to come or running. -> failed
  rejoining,
  // Open: its probe was cut short by the path going away (a logout the target asked for, a
  // dropped connection), whose failure is still to be reported. -> connecting
  probe_cut_short,
  // Open: the same path failed; the reconnect timer runs and its next login probes again.
  // -> failed
  probe_waiting,
  // Open: that login is in flight. -> failed
  probe_reconnecting,
  // multipathd fail path: carries nothing and is not reconnected; a session it has stays
  // logged in. -> failed
  operator_failed,
  // The same, with a proof of its held writes in flight. -> failed
  operator_failed_proving,
  // Failed by the operator while a login or an identity check was under way: that attempt
  // runs to its end but places nothing. -> failed
  operator_failed_checking,
  // Presents another device: never carries I/O, never logged in again. -> refused
  refused,
  // Logged in and identified after failing more often than multipath.marginal_path allows:
  // carries nothing until its recovery time runs out (marginal_path.hpp). -> marginal
  held_out,
};
std::string_view life_state_name(LifeState state);

// What happened to the path. Reasons travel in `detail` (for the event text and last_error).
struct Event {
  enum class Kind {
    login_done,           // `identified`: the device was identified (open is over)
    login_failed,         // login refused, portal unreachable, login timeout
    identity_same,        // the path shows the device (VPD 0x83 / 0x80)
    identity_other,       // the path shows another device
    identity_failed,      // the identity check got an error
    identity_unanswered,  // no answer within the login timeout
    alua_read,            // `carries_io`: the ALUA state was read after the identity check
    alua_reread,          // `carries_io`, `priority_changed`, `detail`: the periodic re-read
    alua_failed,          // REPORT TARGET PORT GROUPS failed with the path
    probe_done,           // open: the probe of this path identified the device (`carries_io`)
    probe_interrupted,    // open: the path went away during the probe
    device_identified,    // open: another path's probe identified the device
    connection_lost,      // NOP-Out timeout, dropped connection, transport error, path error
    route_lost,
    route_back,
    reconnect_due,  // the reconnect timer fired
    writes_held,    // writes whose attempt here may be alive (or their retry is due)
    proof_started,  // a proof of those writes is in flight (login with its ISID, LU reset)
    proof_done,     // `proven`: the proof came back; `detail`: how it was proven
    operator_fail,
    operator_reinstate,  // `logged_in`: its session is still logged in
    closing,
    hold_over,  // the timer of a held-out path ran out (Actions::hold_for)
    only_path,  // no other path carries I/O: a held-out path is reinstated early
  };
  Kind kind;
  std::string detail{};
  bool identified = false;
  bool carries_io = false;
  bool priority_changed = false;
  bool proven = false;
  bool logged_in = false;
  // connection_lost, identity_failed: the target answered with a SCSI status about this LU
  // (LOGICAL UNIT NOT SUPPORTED after the LU was deleted, a port-level path error), so the
  // connection itself works. The session carries the other LUs' commands too (SessionPool):
  // this LU lets go of it rather than closing it under them.
  bool answered = false;
  // When it happened. Only the marginal path accounting reads it: the life cycle has no clock.
  std::chrono::steady_clock::time_point at{};
};

// What the device does, in this order: record last_error, place the path by the ALUA read,
// emit the event, reconsider the groups, close or release the session, cancel or arm the reconnect
// timer, log in, re-issue held writes, check identity, read ALUA, prove held writes, re-issue
// requests waiting for a path, continue the open.
struct Actions {
  std::optional<std::string> last_error;
  bool place = false;  // take the ALUA read's group, priority and state
  std::optional<std::string> emit;
  std::optional<std::string> reconsider_groups;  // why, to follow the path's name
  bool close_session = false;  // abortive: no queued data may reach the target later
  // Only this LU stops using the session (the pool's last user logs it out): the failure was
  // an answer about this LU, or the path shows another device, and the connection is sound.
  bool release_session = false;
  bool cancel_reconnect = false;
  std::optional<std::chrono::milliseconds> reconnect_after;
  bool login = false;  // its own ISID, TSIH 0: session reinstatement (RFC 7143 §6.3.5)
  std::optional<std::string> reissue_held_writes;  // how they were proven dead
  bool check_identity = false;
  bool read_alua = false;
  bool prove_held_writes = false;
  bool reissue_waiting = false;  // requests held for a usable path
  bool continue_open = false;    // LunDevice::open decides on the next path to probe
  // Held out as marginal: arm the path's timer for Event::Kind::hold_over after this long.
  std::optional<std::chrono::milliseconds> hold_for;
};

class PathLifecycle {
 public:
  explicit PathLifecycle(std::chrono::milliseconds polling_interval,
                         MarginalPathPolicy marginal = {})
      : polling_interval_(polling_interval), marginal_(marginal, polling_interval) {}

  Actions on(const Event& event);

  LifeState state() const { return state_; }
  PathState status() const;  // what multipath -ll would show
  unsigned failures() const { return failures_; }
  bool operator_failed() const;
  // Open: the path's probe was cut short and its next login probes again.
  bool reprobe_pending() const;
  // iscsi-mpio reload: the backoff of the next reconnect follows the new interval.
  void set_polling_interval(std::chrono::milliseconds interval) { polling_interval_ = interval; }
  // multipath.conf polling_interval × 2^min(failed attempts, 3).
  std::chrono::milliseconds backoff() const;
  // Its failures towards multipath.marginal_path and its hold.
  const MarginalPath& marginal() const { return marginal_; }

 private:
  Actions fail(const Event& event);
  Actions stop_work(const std::string& reason, std::chrono::steady_clock::time_point at);
  Actions lost_attempt(const std::string& reason, LifeState next);
  Actions login_done(const Event& event);
  Actions alua_read(const Event& event);
  Actions alua_reread(const Event& event);
  Actions operator_fail();
  Actions held_out(const Event& event, bool carries_io);
  Actions reinstate_held(const std::string& why, std::chrono::steady_clock::time_point at);

  std::chrono::milliseconds polling_interval_;
  LifeState state_ = LifeState::connecting;
  unsigned failures_ = 0;  // failed attempts to come back since the last login
  MarginalPath marginal_;
  bool held_carries_io_ = false;  // held_out: active (else ghost) once the hold is over
};

}  // namespace mpio
