// What a completed SCSI command means for the multipath layer: hand it back, send it again, hold
// it until its first attempt is proven dead, or retry it. Pure policy: the device passes the
// finished task and what it knows of the command; the answer is one decision the glue carries
// out. No I/O, no clock.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <system_error>

#include <iscsi/session.hpp>
#include <scsi/alua.hpp>

namespace mpio {

// The outcome of one SCSI command as one error code: empty for success, the iSCSI category for
// a command that did not complete (or a read that came back short), the SCSI category for a
// status other than GOOD or CONDITION MET. `detail` gets the human-readable reason.
std::error_code outcome_of(const iscsi::ScsiTask& task, std::string& detail);

// A transport error means the command's fate at the target is unknown, except for a target
// failure response and a Reject, which are answers.
bool lost_with_path(const std::error_code& ec);

// The target answered with a SCSI status (the scsi category): the connection carried the
// command both ways, so what went wrong is about the LU, not the session. A path failed for
// such an answer lets go of a session the other LUs share instead of closing it
// (Event::answered); CommandDecision::answered says the same of a completed command.
bool answered_by_target(const std::error_code& ec);

// The target never received the command (it waited for the CmdSN window, or the path began a
// logout), or confirmed its end (ABORT TASK / LOGICAL UNIT RESET answered, RFC 7143 §11.6.1):
// no copy of it can be alive anywhere, so any path may take it now, writes included.
bool certainly_dead(const std::error_code& ec);

// SPC-4 Annex D 2A/09 CAPACITY DATA HAS CHANGED as a unit attention: the LU was resized.
bool capacity_changed(const iscsi::ScsiTask& task);

// SPC-4 Annex D 3F/0E REPORTED LUNS DATA HAS CHANGED as a unit attention: LUNs were added to or
// removed from the target (SAM-5 §5.14: every I_T nexus gets it, on its next command).
bool reported_luns_changed(const iscsi::ScsiTask& task);

// The backoff before retry number `retry` (1 for the first) of a command the LU answered with
// BUSY or TASK SET FULL (SAM-5 §5.3): 10 ms doubling to 1 s, so the retries do not add to the
// load that caused them.
std::chrono::milliseconds busy_backoff(int retry);

// Retries of a command answered ALUA transitioning (04/0A) before its path counts as failed:
// with busy_backoff() between them, about a minute, the default transition timeout of Linux's
// ALUA device handler (scsi_dh_alua ALUA_FAILOVER_TIMEOUT) for a target that names none.
inline constexpr int alua_transition_retries = 60;

// What the device knows of a command beside its task.
struct CommandContext {
  bool pinned = false;    // a probe of one path: runs there or nowhere, never fails over
  bool mutating = false;  // a write, UNMAP or WRITE SAME: a lost copy must be proven dead
  int retries = 0;        // same-path retries so far
  int max_retries = 0;    // LunConfig::max_retries
  // Retries after ALUA transitioning so far: a budget of their own (alua_transition_retries),
  // so that the unit attention a finished transition leaves (2A/06) still has its retries.
  int transition_retries = 0;
  // Paths are placed by their target port group's ALUA state (group_by_prio on a target with
  // TPGS != 0): a port that answers standby or unavailable is a ghost, not a failed path.
  bool alua_placed = false;
};

struct CommandDecision {
  enum class Action {
    complete,  // hand the outcome to the command's owner: success or the client's error
    reissue,   // send it again now on whichever path is usable
    hold,      // a write lost with its path: held on it until its session is proven gone
    retry,     // again after `delay` (zero: now), with `retries` as its new count
  };
  Action action = Action::complete;
  std::chrono::milliseconds delay{0};  // retry
  int retries = 0;                     // retry: the command's retry count from now on
  int transition_retries = 0;          // the same for transitioning retries
  // Side facts, carried out before the action in this order.
  bool clear_transport_error = false;  // reissue of a certainly dead command: a clean attempt
  bool count_path_error = false;       // the path's error counter
  // The target answered: counts toward the path's commands and latency. With fail_path, the
  // failure is an answer about this LU (LOGICAL UNIT NOT SUPPORTED for a LU deleted at the
  // target, an ALUA transition that never ends), not of the connection: the path fails for this
  // LU only, and a session other LUs share stays up (Event::answered).
  bool answered = false;
  bool fail_path = false;        // the path fails, for `reason`
  bool reread_capacity = false;  // 2A/09: read the capacity again
  bool luns_changed = false;     // 3F/0E: whoever follows the target's LUNs scans again
  // alua_placed: the answer named this port's ALUA state (04/0A, 04/0B, 04/0C). Standby and
  // unavailable make the path a ghost at once; every one has the port groups read again.
  std::optional<scsi::AluaState> alua_state;
  std::string reason;  // fail_path: why
};

// The one decision for a completed command. In order:
// - certainly dead and not pinned: re-issue anywhere, clean; an abort the target confirmed after
//   a command timeout says the path is slow or stuck and counts as its error;
// - lost with its path (transport error): the path fails and its error counts; a probe
//   completes with the error, a write is held for proof (RFC 7143 §6.3.5), a read is re-issued
//   at once (a late copy changes nothing);
// - else the target answered, and scsi::classify() says what its status and sense mean:
//   an ALUA state in the sense (SPC-4 §5.16.2.4) is about the target port, not the LU: under
//   alua_placed a standby or unavailable answer re-issues anywhere and names the state (the
//   path becomes a ghost, never failed for it); transitioning retries after busy_backoff()
//   within alua_transition_retries (the port answers again once the transition ends), then
//   counts as a path error;
//   path_error (ALUA standby or unavailable without alua_placed, ...) fails the path and
//   re-issues anywhere, even a write, since the target finished this copy; retry_same_path
//   (UNIT ATTENTION, BUSY, TASK SET FULL) retries within max_retries, after busy_backoff() for
//   BUSY and TASK SET FULL, a
//   2A/09 unit attention re-reads the capacity and a 3F/0E one says the LUN inventory changed;
//   anything else (MEDIUM ERROR, ILLEGAL REQUEST,
//   ...) completes: a target error never causes failover. A probe is never re-issued elsewhere
//   and never fails its path on an answer: only its same-path retries apply.
CommandDecision decide_completion(const iscsi::ScsiTask& task, const CommandContext& context);

}  // namespace mpio
