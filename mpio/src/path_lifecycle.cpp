#include "mpio/path_lifecycle.hpp"

#include <algorithm>

namespace mpio {

using Kind = Event::Kind;
using S = LifeState;

std::string_view path_state_name(PathState state) {
  switch (state) {
    case PathState::connecting:
      return "connecting";
    case PathState::active:
      return "active";
    case PathState::ghost:
      return "ghost";
    case PathState::failed:
      return "failed";
    case PathState::refused:
      return "refused";
    case PathState::marginal:
      return "marginal";
  }
  return "unknown";
}

std::string_view life_state_name(LifeState state) {
  switch (state) {
    case S::connecting:
      return "connecting";
    case S::identifying:
      return "identifying";
    case S::active:
      return "active";
    case S::ghost:
      return "ghost";
    case S::failed_waiting:
      return "failed_waiting";
    case S::failed_proving:
      return "failed_proving";
    case S::reconnecting:
      return "reconnecting";
    case S::rejoining:
      return "rejoining";
    case S::probe_cut_short:
      return "probe_cut_short";
    case S::probe_waiting:
      return "probe_waiting";
    case S::probe_reconnecting:
      return "probe_reconnecting";
    case S::operator_failed:
      return "operator_failed";
    case S::operator_failed_proving:
      return "operator_failed_proving";
    case S::operator_failed_checking:
      return "operator_failed_checking";
    case S::refused:
      return "refused";
    case S::held_out:
      return "held_out";
  }
  return "unknown";
}

PathState PathLifecycle::status() const {
  switch (state_) {
    case S::connecting:
    case S::identifying:
    case S::probe_cut_short:
      return PathState::connecting;
    case S::active:
      return PathState::active;
    case S::ghost:
      return PathState::ghost;
    case S::refused:
      return PathState::refused;
    case S::held_out:
      return PathState::marginal;
    default:
      return PathState::failed;
  }
}

bool PathLifecycle::operator_failed() const {
  return state_ == S::operator_failed || state_ == S::operator_failed_proving ||
         state_ == S::operator_failed_checking;
}

bool PathLifecycle::reprobe_pending() const {
  return state_ == S::probe_cut_short || state_ == S::probe_waiting ||
         state_ == S::probe_reconnecting;
}

std::chrono::milliseconds PathLifecycle::backoff() const {
  return polling_interval_ * (1u << std::min(failures_, 3u));
}

// A path fails. Its session ends with it, unless the target answered (Event::answered): then
// the connection is sound and carries the other LUs' commands, so this LU only lets go of it
// and its next login joins that session again; the LU's own answer decides again there (its
// identity check). Closing it would make every LU on the path log in again for one LU's fault.
Actions PathLifecycle::fail(const Event& event) {
  auto a = stop_work(event.detail, event.at);
  if (event.answered && a.close_session) {
    a.close_session = false;
    a.release_session = true;
  }
  return a;
}

// A path at work (or on its way to it) fails: it stops carrying I/O now and tries again after
// a polling interval. A path already failed has nothing more to stop.
Actions PathLifecycle::stop_work(const std::string& reason,
                                 std::chrono::steady_clock::time_point at) {
  Actions a;
  switch (state_) {
    case S::active:
    case S::ghost:
    case S::held_out:
      // A path at work went bad: one failure towards multipath.marginal_path.
      marginal_.failed(at);
      [[fallthrough]];
    case S::connecting:
    case S::identifying:
    case S::probe_cut_short:
      state_ = state_ == S::probe_cut_short ? S::probe_waiting : S::failed_waiting;
      a.last_error = reason;
      a.emit = reason;
      a.reconsider_groups = "failed";
      a.close_session = true;
      a.reconnect_after = backoff();
      return a;
    case S::reconnecting:
    case S::rejoining:
      return lost_attempt(reason, S::failed_waiting);
    case S::probe_reconnecting:
      return lost_attempt(reason, S::probe_waiting);
    case S::operator_failed_checking:
      return lost_attempt(reason, S::operator_failed);
    default:
      return a;
  }
}

// An attempt to come back failed: it counts towards the backoff, and no event is emitted (the
// path was failed all along).
Actions PathLifecycle::lost_attempt(const std::string& reason, LifeState next) {
  Actions a;
  state_ = next;
  ++failures_;
  a.last_error = reason;
  a.close_session = true;
  if (next != S::operator_failed) a.reconnect_after = backoff();
  return a;
}

Actions PathLifecycle::login_done(const Event& event) {
  Actions a;
  switch (state_) {
    case S::connecting:
      state_ = S::identifying;
      if (event.identified)
        a.check_identity = true;
      else
        a.continue_open = true;
      return a;
    case S::reconnecting:
    case S::probe_reconnecting:
    case S::operator_failed_checking: {
      // The new session with this path's ISID ended the old one and every task it still had
      // (RFC 7143 §6.3.5): its held writes are proven dead.
      failures_ = 0;
      a.reissue_held_writes = "session reinstated on its own path";
      const bool reprobe = state_ == S::probe_reconnecting;
      if (state_ != S::operator_failed_checking)
        state_ = !event.identified && reprobe ? S::identifying : S::rejoining;
      if (event.identified)
        a.check_identity = true;
      else if (reprobe)
        a.continue_open = true;
      return a;
    }
    default:
      return a;
  }
}

Actions PathLifecycle::alua_read(const Event& event) {
  Actions a;
  const S placed = event.carries_io ? S::active : S::ghost;
  switch (state_) {
    case S::identifying:
    case S::rejoining:
      // Good again after failing too often: not reinstated on this return (marginal_path.hpp).
      if (state_ == S::rejoining && marginal_.hold(event.at))
        return held_out(event, event.carries_io);
      state_ = placed;
      marginal_.up(event.at);
      a.place = true;
      a.emit = event.carries_io ? "path is up" : "path is up, ALUA standby: carries no I/O";
      a.reconsider_groups = "is back";
      a.reissue_waiting = true;
      return a;
    case S::operator_failed_checking:
      // Failed by the operator while the check ran: it stays failed until reinstated.
      state_ = S::operator_failed;
      return a;
    default:
      return a;
  }
}

// The periodic re-read (SPC-4 §5.16.2.6: the target may move its port groups by itself). Only
// a path at work takes it: a path that failed meanwhile shows its identity again first. A
// held-out path keeps its placement current for the end of its hold.
Actions PathLifecycle::alua_reread(const Event& event) {
  Actions a;
  const S placed = event.carries_io ? S::active : S::ghost;
  switch (state_) {
    case S::held_out:
      a.place = true;
      held_carries_io_ = event.carries_io;
      return a;
    case S::active:
    case S::ghost:
      a.place = true;
      if (placed == state_ && !event.priority_changed) return a;
      state_ = placed;
      a.emit = event.detail;
      a.reconsider_groups = "ALUA state change";
      a.reissue_waiting = placed == S::active;
      return a;
    default:
      return a;
  }
}

// Logged in, identified and placed, but kept from carrying I/O until the hold is over. Its
// session stays up, so a failure during the hold is seen (and starts the hold over).
Actions PathLifecycle::held_out(const Event& event, bool carries_io) {
  Actions a;
  state_ = S::held_out;
  held_carries_io_ = carries_io;
  a.place = true;
  a.hold_for = marginal_.time_left(event.at);
  a.emit =
      "path is up but marginal (failed more than san_path_err_threshold times within the "
      "window): held out for " +
      std::to_string(marginal_.recovery_time().count()) + " s";
  return a;
}

Actions PathLifecycle::reinstate_held(const std::string& why,
                                      std::chrono::steady_clock::time_point at) {
  Actions a;
  state_ = held_carries_io_ ? S::active : S::ghost;
  marginal_.up(at);
  a.emit = why;
  a.reconsider_groups = "is back";
  a.reissue_waiting = true;
  return a;
}

Actions PathLifecycle::operator_fail() {
  Actions a;
  switch (state_) {
    case S::refused:
    case S::operator_failed:
    case S::operator_failed_proving:
    case S::operator_failed_checking:
      return a;
    case S::connecting:
    case S::identifying:
    case S::reconnecting:
    case S::rejoining:
    case S::probe_reconnecting:
      state_ = S::operator_failed_checking;
      break;
    case S::failed_proving:
      state_ = S::operator_failed_proving;
      break;
    default:
      state_ = S::operator_failed;
      break;
  }
  // Like `multipathd fail path`, this only stops new I/O: a session stays logged in and its
  // commands in flight complete normally.
  a.last_error = "failed by the operator";
  a.emit = *a.last_error;
  a.reconsider_groups = "failed by the operator";
  a.cancel_reconnect = true;
  return a;
}

Actions PathLifecycle::on(const Event& event) {
  Actions a;
  switch (event.kind) {
    case Kind::login_done:
      return login_done(event);

    case Kind::login_failed:
      switch (state_) {
        case S::connecting:
          // The first login: the open goes on without the path, which tries again later.
          state_ = S::failed_waiting;
          a.last_error = event.detail;
          a.reconnect_after = backoff();
          a.continue_open = true;
          return a;
        case S::failed_waiting:
          // The first login ended after the path had failed (its route went away meanwhile).
          a.last_error = event.detail;
          a.reconnect_after = backoff();
          a.continue_open = true;
          return a;
        case S::reconnecting: {
          auto lost = lost_attempt(event.detail, S::failed_waiting);
          lost.close_session = false;  // it never logged in
          return lost;
        }
        case S::probe_reconnecting: {
          // The second chance of an interrupted probe failed: the open decides without it.
          auto lost = lost_attempt(event.detail, S::failed_waiting);
          lost.continue_open = true;
          lost.close_session = false;
          return lost;
        }
        case S::operator_failed_checking: {
          auto lost = lost_attempt(event.detail, S::operator_failed);
          lost.close_session = false;
          return lost;
        }
        default:
          return a;
      }

    case Kind::identity_same:
      if (state_ == S::identifying || state_ == S::rejoining ||
          state_ == S::operator_failed_checking)
        a.read_alua = true;
      return a;

    case Kind::identity_other:
      if (state_ == S::refused) return a;
      // Whatever else it was doing: it is never logged in again.
      state_ = S::refused;
      a.last_error = event.detail;
      a.emit = event.detail;
      // An answer about this LU: the session stays for the other LUs that share it.
      a.release_session = true;
      a.cancel_reconnect = true;
      return a;

    case Kind::identity_unanswered:
      if (state_ != S::identifying && state_ != S::rejoining &&
          state_ != S::operator_failed_checking)
        return a;
      return fail(event);

    case Kind::identity_failed:
    case Kind::alua_failed:
    case Kind::connection_lost:
      return fail(event);

    case Kind::alua_read:
      return alua_read(event);

    case Kind::alua_reread:
      return alua_reread(event);

    case Kind::probe_done:
      if (state_ != S::identifying) return a;
      state_ = event.carries_io ? S::active : S::ghost;
      marginal_.up(event.at);
      a.place = true;
      a.reconsider_groups = "first path";
      return a;

    case Kind::probe_interrupted:
      // The path went away under the probe: it has failed, or its failure is on the way. Its
      // next login probes again.
      if (state_ == S::identifying) state_ = S::probe_cut_short;
      if (state_ == S::failed_waiting) state_ = S::probe_waiting;
      if (state_ == S::reconnecting) state_ = S::probe_reconnecting;
      return a;

    case Kind::device_identified:
      if (state_ == S::identifying || state_ == S::rejoining) a.check_identity = true;
      return a;

    case Kind::route_lost:
      // A pulled cable leaves an established TCP connection silent, not broken. An attempt to
      // come back that is under way fails by itself.
      if (state_ == S::active || state_ == S::ghost || state_ == S::connecting ||
          state_ == S::identifying || state_ == S::probe_cut_short || state_ == S::held_out)
        return fail(event);
      return a;

    case Kind::route_back:
      // Try at once, not at the next polling interval, and as if for the first time.
      if (state_ == S::failed_waiting || state_ == S::probe_waiting ||
          state_ == S::failed_proving) {
        failures_ = 0;
        a.reconnect_after = std::chrono::milliseconds(0);
      }
      return a;

    case Kind::reconnect_due:
      switch (state_) {
        case S::failed_waiting:
          state_ = S::reconnecting;
          a.login = true;
          return a;
        case S::probe_waiting:
          state_ = S::probe_reconnecting;
          a.login = true;
          return a;
        case S::failed_proving:
          // A login with this ISID through another path is under way; logging in with it here
          // now would have the two sessions reinstate each other.
          a.reconnect_after = backoff();
          return a;
        default:
          return a;
      }

    case Kind::writes_held:
      // While its own login is in flight, that login is the proof.
      if (state_ == S::failed_waiting || state_ == S::operator_failed) a.prove_held_writes = true;
      return a;

    case Kind::proof_started:
      if (state_ == S::failed_waiting) state_ = S::failed_proving;
      if (state_ == S::operator_failed) state_ = S::operator_failed_proving;
      return a;

    case Kind::proof_done:
      if (state_ == S::failed_proving) state_ = S::failed_waiting;
      if (state_ == S::operator_failed_proving) state_ = S::operator_failed;
      if (event.proven) a.reissue_held_writes = event.detail;
      return a;

    case Kind::operator_fail:
      return operator_fail();

    case Kind::operator_reinstate:
      if (state_ == S::held_out) {
        marginal_.release();
        return reinstate_held(
            "path is up: reinstated by the operator before its marginal hold "
            "was over",
            event.at);
      }
      if (!operator_failed()) return a;
      failures_ = 0;
      // The operator's word overrides the marginal path accounting.
      marginal_.release();
      if (event.logged_in) {
        // Still logged in: the identity check puts it back to work.
        state_ = S::rejoining;
        a.check_identity = true;
      } else if (state_ == S::operator_failed_proving) {
        state_ = S::failed_proving;
        a.reconnect_after = backoff();
      } else {
        state_ = S::reconnecting;
        a.login = true;
      }
      return a;

    case Kind::closing:
      a.cancel_reconnect = true;
      return a;

    case Kind::hold_over:
      if (state_ != S::held_out) return a;
      if (marginal_.hold(event.at)) {
        a.hold_for = marginal_.time_left(event.at);
        return a;
      }
      return reinstate_held("path is up: stayed good for san_path_err_recovery_time, reinstated",
                            event.at);

    case Kind::only_path:
      // multipathd reinstates a delayed path early when the map has no other: a marginal path
      // is better than none.
      if (state_ != S::held_out) return a;
      marginal_.release();
      return reinstate_held(
          "path is up: marginal, but reinstated early as no other path "
          "carries I/O",
          event.at);
  }
  return a;
}

}  // namespace mpio
