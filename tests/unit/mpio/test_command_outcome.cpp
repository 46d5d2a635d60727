#include <catch2/catch.hpp>

#include <chrono>
#include <common/hex.hpp>
#include <cstdio>
#include <iscsi/errors.hpp>
#include <mpio/command_outcome.hpp>
#include <scsi/error.hpp>
#include <string>
#include <vector>

// Sense data is fixed format (SPC-4 §4.5.3): response code 70h, the key in byte 2, ASC and ASCQ
// in bytes 12 and 13.

using Action = mpio::CommandDecision::Action;
using iscsi::errc;
using mpio::CommandContext;
using mpio::CommandDecision;
using std::chrono::milliseconds;

namespace {

constexpr uint8_t good = 0x00, check_condition = 0x02, condition_met = 0x04, busy = 0x08,
                  reservation_conflict = 0x18, task_set_full = 0x28;

std::vector<std::byte> sense(uint8_t key, uint8_t asc, uint8_t ascq) {
  char hex[64];
  std::snprintf(hex, sizeof hex, "70 00 %02x 00 00 00 00 0a 00 00 00 00 %02x %02x 00 00 00 00", key,
                asc, ascq);
  return common::from_hex(hex);
}

iscsi::ScsiTask answered(uint8_t status, std::vector<std::byte> sense_data = {}) {
  iscsi::ScsiTask task;
  task.status = status;
  task.sense = std::move(sense_data);
  return task;
}

iscsi::ScsiTask lost(errc error, std::string detail = {}) {
  iscsi::ScsiTask task;
  task.transport_error = error;
  task.transport_detail = std::move(detail);
  return task;
}

CommandContext read_command(int retries = 0) {
  return {.pinned = false, .mutating = false, .retries = retries, .max_retries = 8};
}
CommandContext write_command(int retries = 0) {
  return {.pinned = false, .mutating = true, .retries = retries, .max_retries = 8};
}
CommandContext probe(int retries = 0) {
  return {.pinned = true, .mutating = false, .retries = retries, .max_retries = 8};
}

}  // namespace

TEST_CASE("a table of completed commands gives one decision each", "[mpio][command_outcome]") {
  struct Row {
    const char* what;
    iscsi::ScsiTask task;
    CommandContext context;
    Action action;
    bool fail_path;
    bool count_path_error;
    bool answered;
  };
  std::vector<Row> rows;
  rows.push_back(
      {"GOOD completes", answered(good), read_command(), Action::complete, false, false, true});
  rows.push_back({"CONDITION MET completes", answered(condition_met), write_command(),
                  Action::complete, false, false, true});
  rows.push_back({"MEDIUM ERROR on a read completes: never failover",
                  answered(check_condition, sense(0x03, 0x11, 0x00)), read_command(),
                  Action::complete, false, false, true});
  rows.push_back({"MEDIUM ERROR on a write completes: never failover",
                  answered(check_condition, sense(0x03, 0x0c, 0x00)), write_command(),
                  Action::complete, false, false, true});
  rows.push_back({"ILLEGAL REQUEST completes", answered(check_condition, sense(0x05, 0x24, 0x00)),
                  read_command(), Action::complete, false, false, true});
  rows.push_back({"RESERVATION CONFLICT completes", answered(reservation_conflict), write_command(),
                  Action::complete, false, false, true});
  rows.push_back({"ALUA standby fails the path and re-issues a read",
                  answered(check_condition, sense(0x02, 0x04, 0x0b)), read_command(),
                  Action::reissue, true, false, true});
  rows.push_back({"ALUA standby re-issues even a write: the target finished this copy",
                  answered(check_condition, sense(0x02, 0x04, 0x0b)), write_command(),
                  Action::reissue, true, false, true});
  // Issue 21: a LU deleted at the target; the answer fails the path for this LU only
  // (answered: a session other LUs share stays up).
  rows.push_back({"LOGICAL UNIT NOT SUPPORTED fails the path, answered, and re-issues",
                  answered(check_condition, sense(0x05, 0x25, 0x00)), write_command(),
                  Action::reissue, true, false, true});
  rows.push_back({"a unit attention retries", answered(check_condition, sense(0x06, 0x29, 0x00)),
                  write_command(), Action::retry, false, false, true});
  rows.push_back(
      {"BUSY retries", answered(busy), read_command(), Action::retry, false, false, true});
  rows.push_back({"TASK SET FULL retries", answered(task_set_full), write_command(), Action::retry,
                  false, false, true});
  rows.push_back({"a lost read fails the path and is re-issued at once", lost(errc::session_failed),
                  read_command(), Action::reissue, true, true, false});
  rows.push_back({"a lost write fails the path and is held for proof",
                  lost(errc::connection_timeout), write_command(), Action::hold, true, true,
                  false});
  rows.push_back({"a command timeout is a transport error: the path fails",
                  lost(errc::command_timeout), read_command(), Action::reissue, true, true, false});
  rows.push_back({"a lost probe fails its path and completes", lost(errc::session_failed), probe(),
                  Action::complete, true, true, false});
  rows.push_back({"a write never sent is re-issued anywhere", lost(errc::task_not_sent),
                  write_command(), Action::reissue, false, false, false});
  rows.push_back({"a write whose abort the target confirmed is re-issued, the path's error",
                  lost(errc::task_aborted_proven), write_command(), Action::reissue, false, true,
                  false});
  rows.push_back({"an unconfirmed abort is an answer: it completes", lost(errc::task_aborted),
                  write_command(), Action::complete, false, false, true});
  rows.push_back({"a Reject is an answer: it completes", lost(errc::reject_received),
                  read_command(), Action::complete, false, false, true});
  rows.push_back({"a probe never sent fails its path: it runs there or nowhere",
                  lost(errc::task_not_sent), probe(), Action::complete, true, true, false});
  rows.push_back({"a probe answered ALUA standby completes without failing its path",
                  answered(check_condition, sense(0x02, 0x04, 0x0b)), probe(), Action::complete,
                  false, false, true});
  rows.push_back({"a probe's unit attention retries",
                  answered(check_condition, sense(0x06, 0x29, 0x00)), probe(), Action::retry, false,
                  false, true});

  for (const Row& row : rows) {
    INFO(row.what);
    const auto d = mpio::decide_completion(row.task, row.context);
    CHECK(d.action == row.action);
    CHECK(d.fail_path == row.fail_path);
    CHECK(d.count_path_error == row.count_path_error);
    CHECK(d.answered == row.answered);
  }
}

TEST_CASE("a command lost with its path names the transport's detail as the path's failure",
          "[mpio][command_outcome]") {
  CHECK(mpio::decide_completion(lost(errc::session_failed, "connection reset by peer"),
                                read_command())
            .reason == "connection reset by peer");
  // Without a detail, the error's own message.
  CHECK(mpio::decide_completion(lost(errc::session_failed), read_command()).reason ==
        std::error_code(errc::session_failed).message());
}

TEST_CASE("a path error names the target's answer as the path's failure",
          "[mpio][command_outcome]") {
  const auto task = answered(check_condition, sense(0x02, 0x04, 0x0b));
  const auto d = mpio::decide_completion(task, read_command());
  std::string detail;
  CHECK(d.reason == mpio::outcome_of(task, detail).message());
  CHECK(d.reason == detail);
}

TEST_CASE("only a SCSI status is an answer by the target about the LU", "[mpio][command_outcome]") {
  std::string detail;
  CHECK(mpio::answered_by_target(
      mpio::outcome_of(answered(check_condition, sense(0x05, 0x25, 0x00)), detail)));
  CHECK(mpio::answered_by_target(mpio::outcome_of(answered(busy), detail)));
  CHECK_FALSE(mpio::answered_by_target(mpio::outcome_of(answered(good), detail)));
  CHECK_FALSE(mpio::answered_by_target(errc::session_failed));
  CHECK_FALSE(mpio::answered_by_target(errc::command_timeout));
}

TEST_CASE("only a certainly dead command is re-issued with its transport error cleared",
          "[mpio][command_outcome]") {
  CHECK(mpio::decide_completion(lost(errc::task_not_sent), read_command()).clear_transport_error);
  CHECK(mpio::decide_completion(lost(errc::task_aborted_proven), write_command())
            .clear_transport_error);
  CHECK_FALSE(
      mpio::decide_completion(lost(errc::session_failed), read_command()).clear_transport_error);
}

TEST_CASE("a unit attention retries at once, BUSY and TASK SET FULL after a backoff",
          "[mpio][command_outcome]") {
  const auto ua =
      mpio::decide_completion(answered(check_condition, sense(0x06, 0x29, 0x00)), read_command(2));
  CHECK(ua.action == Action::retry);
  CHECK(ua.delay == milliseconds(0));
  CHECK(ua.retries == 3);
  const auto first_busy = mpio::decide_completion(answered(busy), read_command(0));
  CHECK(first_busy.delay == milliseconds(10));
  CHECK(first_busy.retries == 1);
  CHECK(mpio::decide_completion(answered(task_set_full), read_command(3)).delay ==
        milliseconds(80));
}

TEST_CASE("the BUSY backoff doubles from 10 ms and stops at 1 s", "[mpio][command_outcome]") {
  CHECK(mpio::busy_backoff(1) == milliseconds(10));
  CHECK(mpio::busy_backoff(2) == milliseconds(20));
  CHECK(mpio::busy_backoff(7) == milliseconds(640));
  CHECK(mpio::busy_backoff(8) == milliseconds(1000));
  CHECK(mpio::busy_backoff(30) == milliseconds(1000));
}

TEST_CASE("a retry past max_retries completes with the target's answer",
          "[mpio][command_outcome]") {
  CHECK(mpio::decide_completion(answered(busy), read_command(8)).action == Action::complete);
  CHECK(mpio::decide_completion(answered(check_condition, sense(0x06, 0x29, 0x00)), probe(8))
            .action == Action::complete);
  CHECK(mpio::decide_completion(answered(busy), read_command(7)).action == Action::retry);
}

TEST_CASE("a capacity change unit attention re-reads the capacity, retried or not",
          "[mpio][command_outcome]") {
  const auto resized = answered(check_condition, sense(0x06, 0x2a, 0x09));
  CHECK(mpio::capacity_changed(resized));
  const auto retried = mpio::decide_completion(resized, read_command());
  CHECK(retried.reread_capacity);
  CHECK(retried.action == Action::retry);
  const auto exhausted = mpio::decide_completion(resized, read_command(8));
  CHECK(exhausted.reread_capacity);
  CHECK(exhausted.action == Action::complete);
  // A probe only retries: the open reads the capacity itself.
  CHECK_FALSE(mpio::decide_completion(resized, probe()).reread_capacity);
  CHECK_FALSE(
      mpio::decide_completion(answered(check_condition, sense(0x06, 0x29, 0x00)), read_command())
          .reread_capacity);
}

TEST_CASE("REPORTED LUNS DATA HAS CHANGED is retried and reported, nothing else is",
          "[mpio][command_outcome]") {
  const auto changed = answered(check_condition, sense(0x06, 0x3f, 0x0e));
  CHECK(mpio::reported_luns_changed(changed));
  const auto decision = mpio::decide_completion(changed, read_command());
  CHECK(decision.luns_changed);
  CHECK_FALSE(decision.reread_capacity);
  CHECK(decision.action == Action::retry);
  CHECK(mpio::decide_completion(changed, read_command(8)).luns_changed);
  // Other unit attentions of the 3F family (3F/03 INQUIRY DATA HAS CHANGED) are not it.
  CHECK_FALSE(
      mpio::decide_completion(answered(check_condition, sense(0x06, 0x3f, 0x03)), read_command())
          .luns_changed);
  CHECK_FALSE(
      mpio::decide_completion(answered(check_condition, sense(0x06, 0x2a, 0x09)), read_command())
          .luns_changed);
}

TEST_CASE("a short read is the client's error, not a path's", "[mpio][command_outcome]") {
  iscsi::ScsiTask task = answered(good);
  std::vector<std::byte> buffer(4096);
  task.direction = iscsi::DataDirection::read;
  task.read_buffer = buffer;
  task.residual_underflow = true;
  task.residual_count = 512;
  std::string detail;
  CHECK(mpio::outcome_of(task, detail) == errc::protocol_violation);
  CHECK(detail == "target returned 512 bytes fewer than asked");
  const auto d = mpio::decide_completion(task, read_command());
  CHECK(d.action == Action::complete);
  CHECK_FALSE(d.fail_path);
}

TEST_CASE("the outcome of a command is empty, a transport error or the SCSI answer",
          "[mpio][command_outcome]") {
  std::string detail;
  CHECK_FALSE(mpio::outcome_of(answered(good), detail));
  CHECK(mpio::outcome_of(lost(errc::session_failed, "gone"), detail) == errc::session_failed);
  CHECK(detail == "gone");
  const auto medium = mpio::outcome_of(answered(check_condition, sense(0x03, 0x11, 0x00)), detail);
  CHECK(medium.category() == scsi::category());
  CHECK(scsi::sense_key_of(medium) == scsi::SenseKey::medium_error);
}

TEST_CASE("only transport errors other than an abort or a Reject are lost with the path",
          "[mpio][command_outcome]") {
  CHECK(mpio::lost_with_path(errc::session_failed));
  CHECK(mpio::lost_with_path(errc::connection_timeout));
  CHECK(mpio::lost_with_path(errc::task_not_sent));
  CHECK_FALSE(mpio::lost_with_path(errc::task_aborted));
  CHECK_FALSE(mpio::lost_with_path(errc::reject_received));
  CHECK_FALSE(mpio::lost_with_path({}));
  CHECK_FALSE(mpio::lost_with_path(std::make_error_code(std::errc::io_error)));
  CHECK(mpio::certainly_dead(errc::task_not_sent));
  CHECK(mpio::certainly_dead(errc::task_aborted_proven));
  CHECK_FALSE(mpio::certainly_dead(errc::task_aborted));
}

TEST_CASE("ALUA answers under group_by_prio: standby makes a ghost, transitioning retries",
          "[mpio][command_outcome][alua]") {
  auto placed = [](CommandContext context) {
    context.alua_placed = true;
    return context;
  };
  const auto standby = answered(check_condition, sense(0x02, 0x04, 0x0b));
  const auto unavailable = answered(check_condition, sense(0x02, 0x04, 0x0c));
  const auto transitioning = answered(check_condition, sense(0x02, 0x04, 0x0a));

  // Standby and unavailable: the target finished this copy; re-issued anywhere, the path named
  // by its state (a ghost), never failed for it.
  for (const auto& context : {placed(read_command()), placed(write_command())}) {
    auto d = mpio::decide_completion(standby, context);
    CHECK(d.action == Action::reissue);
    CHECK_FALSE(d.fail_path);
    CHECK(d.alua_state == scsi::AluaState::standby);
  }
  auto d = mpio::decide_completion(unavailable, placed(write_command()));
  CHECK(d.action == Action::reissue);
  CHECK_FALSE(d.fail_path);
  CHECK(d.alua_state == scsi::AluaState::unavailable);
  // Without ALUA placement (multibus, failover) standby stays a path error, and names no state.
  d = mpio::decide_completion(standby, read_command());
  CHECK(d.fail_path);
  CHECK_FALSE(d.alua_state);

  // Transitioning: retried with the busy backoff, beyond max_retries, and the path's states
  // are read again; never handed to the client.
  d = mpio::decide_completion(transitioning, placed(write_command(3)));
  CHECK(d.action == Action::retry);
  CHECK(d.retries == 3);  // their own count: a unit attention after them still has its retries
  CHECK(d.transition_retries == 1);
  CHECK(d.delay == mpio::busy_backoff(1));
  CHECK_FALSE(d.fail_path);
  CHECK(d.alua_state == scsi::AluaState::transitioning);
  auto later = read_command(7);
  later.transition_retries = 20;
  d = mpio::decide_completion(transitioning, later);
  CHECK(d.action == Action::retry);
  CHECK(d.transition_retries == 21);
  CHECK(d.delay == milliseconds(1000));
  CHECK_FALSE(d.alua_state);
  // A unit attention (2A/06: the states changed) keeps the transitioning count it came with.
  d = mpio::decide_completion(answered(check_condition, sense(0x06, 0x2a, 0x06)), later);
  CHECK(d.action == Action::retry);
  CHECK(d.retries == 8);
  CHECK(d.transition_retries == 20);
  // A transition that never ends fails the path; the command goes elsewhere.
  auto exhausted = placed(read_command());
  exhausted.transition_retries = mpio::alua_transition_retries;
  d = mpio::decide_completion(transitioning, exhausted);
  CHECK(d.action == Action::reissue);
  CHECK(d.fail_path);
  // A probe (identity check) retries too, waiting between tries, within max_retries.
  d = mpio::decide_completion(transitioning, probe(2));
  CHECK(d.action == Action::retry);
  CHECK(d.delay == mpio::busy_backoff(3));
  d = mpio::decide_completion(transitioning, probe(8));
  CHECK(d.action == Action::complete);
  CHECK_FALSE(d.fail_path);
}
