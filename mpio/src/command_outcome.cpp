#include "mpio/command_outcome.hpp"

#include <algorithm>
#include <utility>

#include <iscsi/errors.hpp>
#include <scsi/error.hpp>
#include <scsi/sense.hpp>
#include <scsi/status.hpp>

namespace mpio {

std::error_code outcome_of(const iscsi::ScsiTask& task, std::string& detail) {
  if (task.transport_error) {
    detail = task.transport_detail;
    return task.transport_error;
  }
  const auto status = static_cast<scsi::Status>(task.status);
  if (status == scsi::Status::good || status == scsi::Status::condition_met) {
    // A read that came back short has not produced the bytes the client asked for.
    if (task.direction == iscsi::DataDirection::read && task.residual_underflow &&
        task.residual_count > 0) {
      detail = "target returned " + std::to_string(task.residual_count) + " bytes fewer than asked";
      return iscsi::errc::protocol_violation;
    }
    return {};
  }
  auto sense = scsi::decode_sense(task.sense);
  auto ec = scsi::make_error(status, sense);
  detail = ec.message();
  return ec;
}

bool lost_with_path(const std::error_code& ec) {
  return ec && ec.category() == iscsi::category() && ec != iscsi::errc::task_aborted &&
         ec != iscsi::errc::reject_received;
}

bool answered_by_target(const std::error_code& ec) {
  return ec && ec.category() == scsi::category();
}

bool certainly_dead(const std::error_code& ec) {
  return ec == iscsi::errc::task_not_sent || ec == iscsi::errc::task_aborted_proven;
}

bool capacity_changed(const iscsi::ScsiTask& task) {
  auto sense = scsi::decode_sense(task.sense);
  return sense && sense->key == scsi::SenseKey::unit_attention && sense->asc == 0x2a &&
         sense->ascq == 0x09;
}

bool reported_luns_changed(const iscsi::ScsiTask& task) {
  auto sense = scsi::decode_sense(task.sense);
  return sense && sense->key == scsi::SenseKey::unit_attention && sense->asc == 0x3f &&
         sense->ascq == 0x0e;
}

std::chrono::milliseconds busy_backoff(int retry) {
  return std::min(std::chrono::milliseconds(10 << std::clamp(retry - 1, 0, 7)),
                  std::chrono::milliseconds(1000));
}

namespace {

std::optional<scsi::AluaState> alua_state_of(const iscsi::ScsiTask& task) {
  const auto sense = scsi::decode_sense(task.sense);
  if (!sense) return std::nullopt;
  return scsi::alua_state_in_sense(*sense);
}

// A unit attention reports a condition and the command may go again at once; BUSY and TASK
// SET FULL say the LU is overloaded, and an ALUA transition takes the target its time: those
// retries wait.
CommandDecision retry(const iscsi::ScsiTask& task, const CommandContext& context,
                      CommandDecision decision) {
  decision.action = CommandDecision::Action::retry;
  decision.retries = context.retries + 1;
  const auto status = static_cast<scsi::Status>(task.status);
  if (status == scsi::Status::busy || status == scsi::Status::task_set_full ||
      alua_state_of(task) == scsi::AluaState::transitioning)
    decision.delay = busy_backoff(decision.retries);
  return decision;
}

}  // namespace

CommandDecision decide_completion(const iscsi::ScsiTask& task, const CommandContext& context) {
  CommandDecision decision;
  decision.transition_retries = context.transition_retries;
  const std::error_code& transport = task.transport_error;
  if (certainly_dead(transport) && !context.pinned) {
    decision.action = CommandDecision::Action::reissue;
    decision.clear_transport_error = true;
    // An abort after a command timeout says the path is slow or stuck: count it.
    decision.count_path_error = transport == iscsi::errc::task_aborted_proven;
    return decision;
  }
  if (lost_with_path(transport)) {
    decision.count_path_error = true;
    decision.fail_path = true;
    decision.reason = task.transport_detail.empty() ? transport.message() : task.transport_detail;
    // A write is held until this path's session is proven gone (RFC 7143 §6.3.5 session
    // reinstatement), so no stale copy can land after a newer write; a read may go again at
    // once: a late copy changes nothing. A probe belongs to its path and ends with it.
    decision.action = context.pinned     ? CommandDecision::Action::complete
                      : context.mutating ? CommandDecision::Action::hold
                                         : CommandDecision::Action::reissue;
    return decision;
  }
  decision.answered = true;
  std::string detail;
  const auto ec = outcome_of(task, detail);
  if (!ec) return decision;
  const bool retry_left = context.retries < context.max_retries;
  const auto disposition =
      scsi::classify(static_cast<scsi::Status>(task.status), scsi::decode_sense(task.sense));
  if (ec.category() == scsi::category() && !context.pinned) {
    if (const auto alua = alua_state_of(task)) {
      if (context.alua_placed) decision.alua_state = alua;
      if (*alua == scsi::AluaState::transitioning) {
        if (context.transition_retries < alua_transition_retries) {
          decision.action = CommandDecision::Action::retry;
          decision.retries = context.retries;
          decision.transition_retries = context.transition_retries + 1;
          decision.delay = busy_backoff(decision.transition_retries);
          return decision;
        }
        // A transition that never ends: the port is as good as unavailable.
        decision.fail_path = true;
        decision.reason = std::move(detail);
        decision.action = CommandDecision::Action::reissue;
        return decision;
      }
      if (context.alua_placed) {
        // Standby or unavailable (SPC-4 §5.16.2.4.4/5): the port is fine and the target finished
        // this copy; another path takes it while this one waits as a ghost.
        decision.action = CommandDecision::Action::reissue;
        return decision;
      }
    }
    switch (disposition) {
      case scsi::Disposition::path_error:
        // The target answered, so this copy is finished: re-issue anywhere, even a write.
        decision.fail_path = true;
        decision.reason = std::move(detail);
        decision.action = CommandDecision::Action::reissue;
        return decision;
      case scsi::Disposition::retry_same_path:
        decision.reread_capacity = capacity_changed(task);
        decision.luns_changed = reported_luns_changed(task);
        if (retry_left) return retry(task, context, std::move(decision));
        break;
      default:
        break;
    }
  } else if (context.pinned && disposition == scsi::Disposition::retry_same_path && retry_left) {
    return retry(task, context, std::move(decision));
  }
  return decision;
}

}  // namespace mpio
