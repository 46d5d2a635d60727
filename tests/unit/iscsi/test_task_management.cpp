// Scripted exchanges for task management (RFC 7143 §11.5/§11.6), command timeouts, target
// asynchronous messages (§11.9) and tasks that never left the initiator. The test plays the
// target and keeps the session's clock.
#include <catch2/catch.hpp>

#include <common/bytes.hpp>
#include <common/hex.hpp>
#include <iscsi/errors.hpp>
#include <iscsi/session.hpp>

#include "session_script.hpp"

using namespace iscsi;
using namespace std::chrono_literals;

namespace {

struct Script : session_test::SessionScript {
  explicit Script(CmdSN max_cmd_sn = CmdSN(100), uint32_t max_tasks = 8) {
    SessionParams sp = session_test::script_params(max_cmd_sn, max_tasks);
    sp.clock = [this] { return now; };
    session = std::make_unique<Session>(sp);
  }

  // The target's next StatSN; every PDU with status takes one.
  TargetSequence next_seq(uint32_t exp_cmd_sn, uint32_t max_cmd_sn = 100) {
    return {StatSN(stat_sn++), CmdSN(exp_cmd_sn), CmdSN(max_cmd_sn)};
  }

  std::error_code answer_tmf(Itt itt, TaskManagementResponseCode code, uint32_t exp_cmd_sn) {
    TaskManagementResponse rsp;
    static_cast<TargetSequence&>(rsp) = next_seq(exp_cmd_sn);
    rsp.itt = itt;
    rsp.response = static_cast<uint8_t>(code);
    return deliver(rsp);
  }

  std::error_code good_status(Itt itt, uint32_t exp_cmd_sn) {
    ScsiResponse rsp;
    static_cast<TargetSequence&>(rsp) = next_seq(exp_cmd_sn);
    rsp.itt = itt;
    return deliver(rsp);
  }

  SessionClock::time_point now{};
  uint32_t stat_sn = 1;
};

// A task that records how it completed.
struct Probe {
  explicit Probe(Lun lun = Lun{0x0001000000000000ull}) {
    task.lun = lun;
    task.on_complete = [this](ScsiTask& t) {
      ++completions;
      error = t.transport_error;
      detail = t.transport_detail;
    };
  }
  ScsiTask task;
  int completions = 0;
  std::error_code error;
  std::string detail;
};

// A handler that records the task management answer.
struct TmfProbe {
  TmfHandler handler() {
    return [this](const TmfResult& r) {
      ++calls;
      result = r;
    };
  }
  int calls = 0;
  TmfResult result;
};

constexpr Lun lun1{0x0001000000000000ull};
constexpr Lun lun2{0x0002000000000000ull};

}  // namespace

TEST_CASE("ABORT TASK goes out as an immediate command naming the task", "[iscsi][tmf]") {
  Script s;
  Probe a, b;
  s.session->submit(a.task);
  auto cmd = std::get<ScsiCommand>(s.expect_sent());
  TmfProbe tmf;
  REQUIRE(s.session->abort_task(a.task, tmf.handler()) == AbortStart::sent);
  auto req = std::get<TaskManagementRequest>(s.expect_sent());
  CHECK(req.immediate);
  CHECK(req.function == TaskFunction::abort_task);
  CHECK(req.lun == lun1);
  CHECK(req.referenced_task_tag == cmd.itt);
  CHECK(req.ref_cmd_sn == cmd.cmd_sn);
  CHECK(req.cmd_sn == CmdSN(2));  // the next CmdSN, not taken (§11.5, immediate)
  CHECK_FALSE(req.itt == cmd.itt);
  CHECK(s.session->abort_task(a.task, {}) == AbortStart::refused);  // one at a time
  s.session->submit(b.task);
  CHECK(std::get<ScsiCommand>(s.expect_sent()).cmd_sn == CmdSN(2));
  CHECK(s.session->tmfs_outstanding() == 1);
}

TEST_CASE("ABORT TASK answered 'function complete' ends the task as proven aborted",
          "[iscsi][tmf]") {
  Script s;
  Probe a;
  std::vector<std::string> order;
  a.task.on_complete = [&](ScsiTask& t) {
    order.push_back("task");
    a.error = t.transport_error;
  };
  s.session->submit(a.task);
  (void)s.expect_sent();
  TmfProbe tmf;
  auto handler = tmf.handler();
  REQUIRE(s.session->abort_task(a.task, [&](const TmfResult& r) {
    order.push_back("tmf");
    handler(r);
  }) == AbortStart::sent);
  auto req = std::get<TaskManagementRequest>(s.expect_sent());
  REQUIRE_FALSE(s.answer_tmf(req.itt, TaskManagementResponseCode::function_complete, 2));
  CHECK(a.error == make_error_code(errc::task_aborted_proven));
  CHECK(a.error != make_error_code(errc::task_aborted));
  REQUIRE(tmf.calls == 1);
  CHECK(tmf.result.answered());
  CHECK(tmf.result.response == 0);
  CHECK(order == std::vector<std::string>{"task", "tmf"});
  CHECK(s.session->tasks_in_flight() == 0);
  CHECK(s.session->tmfs_outstanding() == 0);
}

TEST_CASE("ABORT TASK answered 'task does not exist' also proves the task dead", "[iscsi][tmf]") {
  Script s;
  Probe a;
  s.session->submit(a.task);
  (void)s.expect_sent();
  TmfProbe tmf;
  REQUIRE(s.session->abort_task(a.task, tmf.handler()) == AbortStart::sent);
  auto req = std::get<TaskManagementRequest>(s.expect_sent());
  REQUIRE_FALSE(s.answer_tmf(req.itt, TaskManagementResponseCode::task_does_not_exist, 2));
  CHECK(a.completions == 1);
  CHECK(a.error == make_error_code(errc::task_aborted_proven));
  CHECK(a.detail.find("task does not exist") != std::string::npos);
  CHECK(tmf.result.response == 1);
}

TEST_CASE("ABORT TASK rejected leaves the task outstanding", "[iscsi][tmf]") {
  Script s;
  Probe a;
  s.session->submit(a.task);
  auto cmd = std::get<ScsiCommand>(s.expect_sent());
  TmfProbe tmf;
  REQUIRE(s.session->abort_task(a.task, tmf.handler()) == AbortStart::sent);
  auto req = std::get<TaskManagementRequest>(s.expect_sent());
  REQUIRE_FALSE(s.answer_tmf(req.itt, TaskManagementResponseCode::function_rejected, 2));
  CHECK(tmf.calls == 1);
  CHECK(tmf.result.response == 255);
  CHECK(a.completions == 0);
  CHECK(s.session->tasks_in_flight() == 1);
  s.expect_nothing_sent();  // a request the owner sent: no escalation of its own
  REQUIRE_FALSE(s.good_status(cmd.itt, 2));
  CHECK(a.completions == 1);
  CHECK_FALSE(a.error);
  // It may be aborted again after a refusal; a finished task has nothing left to abort.
  CHECK(s.session->abort_task(a.task, {}) == AbortStart::not_outstanding);
}

TEST_CASE("a Reject of the ABORT TASK itself counts as 'function rejected'", "[iscsi][tmf]") {
  Script s;
  Probe a;
  s.session->submit(a.task);
  (void)s.expect_sent();
  TmfProbe tmf;
  REQUIRE(s.session->abort_task(a.task, tmf.handler()) == AbortStart::sent);
  auto req = std::get<TaskManagementRequest>(s.expect_sent());
  Reject reject;
  static_cast<TargetSequence&>(reject) = s.next_seq(2);
  reject.reason = static_cast<uint8_t>(RejectReason::command_not_supported);
  auto header = encode_bhs(req);
  reject.data_segment_length = bhs_size;
  REQUIRE_FALSE(s.deliver(reject, header));
  CHECK(tmf.calls == 1);
  CHECK(tmf.result.response == 255);
  CHECK(a.completions == 0);
}

TEST_CASE("late Data-In and SCSI Response after an abort are dropped, never placed",
          "[iscsi][tmf]") {
  Script s;
  std::vector<std::byte> buffer(512, std::byte{0x11});
  Probe a;
  a.task.direction = DataDirection::read;
  a.task.read_buffer = buffer;
  s.session->submit(a.task);
  auto cmd = std::get<ScsiCommand>(s.expect_sent());
  REQUIRE(s.session->abort_task(a.task, {}) == AbortStart::sent);
  auto req = std::get<TaskManagementRequest>(s.expect_sent());
  REQUIRE_FALSE(s.answer_tmf(req.itt, TaskManagementResponseCode::function_complete, 2));
  REQUIRE(a.error == make_error_code(errc::task_aborted_proven));

  // The caller reuses the buffer for a new read, which takes the same task slot.
  Probe b;
  b.task.direction = DataDirection::read;
  b.task.read_buffer = buffer;
  s.session->submit(b.task);
  auto cmd_b = std::get<ScsiCommand>(s.expect_sent());
  CHECK_FALSE(cmd_b.itt == cmd.itt);

  DataIn late;
  static_cast<TargetSequence&>(late) = {StatSN(0), CmdSN(3), CmdSN(100)};
  late.itt = cmd.itt;
  late.data_segment_length = 512;
  late.buffer_offset = 0;
  const auto late_bhs = encode_bhs(late);
  CHECK(s.session->placement().place(late_bhs, 512).empty());  // the reader keeps it
  std::vector<std::byte> stale(512, std::byte{0xee});
  CHECK_FALSE(s.deliver(late, stale));
  CHECK(buffer[0] == std::byte{0x11});
  CHECK_FALSE(s.good_status(cmd.itt, 3));
  CHECK(a.completions == 1);
  CHECK(b.completions == 0);
  // The new task's own data still lands.
  DataIn fresh = late;
  fresh.itt = cmd_b.itt;
  CHECK(s.session->placement().place(encode_bhs(fresh), 512).data() == buffer.data());
  // A tag nobody ever used is still a protocol violation.
  late.itt = Itt{0x00070005};
  CHECK(s.deliver(late, stale) == make_error_code(errc::protocol_violation));
}

TEST_CASE("a late R2T for an aborted write sends no Data-Out", "[iscsi][tmf]") {
  OperationalParams p;
  p.immediate_data = false;
  p.initial_r2t = true;
  SessionParams sp;
  sp.negotiated = p;
  sp.cmd_sn = CmdSN(1);
  sp.exp_cmd_sn = CmdSN(1);
  sp.max_cmd_sn = CmdSN(100);
  sp.exp_stat_sn = StatSN(1);
  Session session(sp);
  std::vector<std::byte> data(4096);
  Probe a;
  a.task.direction = DataDirection::write;
  a.task.write_buffer = data;
  session.submit(a.task);
  InitiatorPdu pdu;
  std::string detail;
  auto frame_itt = [&] {
    REQUIRE_FALSE(decode_initiator_pdu(
        std::span<const std::byte, bhs_size>(session.output().front().header.data(), bhs_size), pdu,
        detail));
    session.frames_written(1);
  };
  frame_itt();
  const Itt itt = std::get<ScsiCommand>(pdu).itt;
  REQUIRE(session.abort_task(a.task, {}) == AbortStart::sent);
  frame_itt();
  TaskManagementResponse rsp;
  static_cast<TargetSequence&>(rsp) = {StatSN(1), CmdSN(2), CmdSN(100)};
  rsp.itt = std::get<TaskManagementRequest>(pdu).itt;
  REQUIRE_FALSE(session.on_pdu(encode_bhs(rsp), {}, detail));
  REQUIRE(a.error == make_error_code(errc::task_aborted_proven));
  ReadyToTransfer r2t;
  static_cast<TargetSequence&>(r2t) = {StatSN(2), CmdSN(2), CmdSN(100)};
  r2t.itt = itt;
  r2t.ttt = Ttt{9};
  r2t.desired_data_transfer_length = 4096;
  CHECK_FALSE(session.on_pdu(encode_bhs(r2t), {}, detail));
  CHECK(session.output().empty());
}

TEST_CASE("an aborted write is handed back only once no queued frame borrows its buffer",
          "[iscsi][tmf]") {
  OperationalParams p;
  p.immediate_data = true;
  p.initial_r2t = true;
  SessionParams sp;
  sp.negotiated = p;
  sp.cmd_sn = CmdSN(1);
  sp.exp_cmd_sn = CmdSN(1);
  sp.max_cmd_sn = CmdSN(100);
  sp.exp_stat_sn = StatSN(1);
  Session session(sp);
  std::vector<std::byte> data(1024);
  Probe a;
  a.task.direction = DataDirection::write;
  a.task.write_buffer = data;
  session.submit(a.task);
  REQUIRE(session.abort_task(a.task, {}) == AbortStart::sent);
  REQUIRE(session.output().size() == 2);  // the command (with immediate data), the abort
  InitiatorPdu pdu;
  std::string detail;
  REQUIRE_FALSE(decode_initiator_pdu(
      std::span<const std::byte, bhs_size>(session.output().back().header.data(), bhs_size), pdu,
      detail));
  TaskManagementResponse rsp;
  static_cast<TargetSequence&>(rsp) = {StatSN(1), CmdSN(2), CmdSN(100)};
  rsp.itt = std::get<TaskManagementRequest>(pdu).itt;
  REQUIRE_FALSE(session.on_pdu(encode_bhs(rsp), {}, detail));
  CHECK(a.completions == 0);  // the command frame still points into `data`
  session.frames_written(1);
  CHECK(a.completions == 1);
  CHECK(a.error == make_error_code(errc::task_aborted_proven));
  // A connection failure afterwards does not overwrite a result already known.
  Probe b;
  b.task.direction = DataDirection::write;
  b.task.write_buffer = data;
  session.submit(b.task);
  REQUIRE(session.abort_task(b.task, {}) == AbortStart::sent);
  REQUIRE_FALSE(decode_initiator_pdu(
      std::span<const std::byte, bhs_size>(session.output().back().header.data(), bhs_size), pdu,
      detail));
  rsp.itt = std::get<TaskManagementRequest>(pdu).itt;
  rsp.stat_sn = StatSN(2);
  REQUIRE_FALSE(session.on_pdu(encode_bhs(rsp), {}, detail));
  CHECK(b.completions == 0);
  session.fail_all(errc::connection_closed, "link down");
  CHECK(b.completions == 1);
  CHECK(b.error == make_error_code(errc::task_aborted_proven));
}

TEST_CASE("LOGICAL UNIT RESET ends the LUN's tasks sent before it, and only those",
          "[iscsi][tmf]") {
  Script s;
  Probe a(lun1), b(lun1), other(lun2), later(lun1);
  s.session->submit(a.task);
  s.session->submit(b.task);
  s.session->submit(other.task);
  (void)s.expect_sent();
  (void)s.expect_sent();
  auto cmd_other = std::get<ScsiCommand>(s.expect_sent());
  TmfProbe tmf;
  REQUIRE(s.session->reset_lun(lun1, tmf.handler()));
  auto req = std::get<TaskManagementRequest>(s.expect_sent());
  CHECK(req.immediate);
  CHECK(req.function == TaskFunction::logical_unit_reset);
  CHECK(req.lun == lun1);
  CHECK(req.referenced_task_tag == Itt{Itt::reserved});
  CHECK(req.cmd_sn == CmdSN(4));
  // Submitted after the reset: held until its answer, so that the target cannot count it
  // among the LU's commands when it carries the reset out, and then sent, out of its scope.
  s.session->submit(later.task);
  s.expect_nothing_sent();
  CHECK(s.session->tasks_waiting() == 1);

  REQUIRE_FALSE(s.answer_tmf(req.itt, TaskManagementResponseCode::function_complete, 4));
  auto cmd_later = std::get<ScsiCommand>(s.expect_sent());
  CHECK(cmd_later.cmd_sn == CmdSN(4));
  CHECK(a.error == make_error_code(errc::task_aborted_proven));
  CHECK(b.error == make_error_code(errc::task_aborted_proven));
  CHECK(a.detail.find("LOGICAL UNIT RESET") != std::string::npos);
  CHECK(other.completions == 0);
  CHECK(later.completions == 0);
  CHECK(tmf.calls == 1);
  CHECK(tmf.result.response == 0);
  CHECK(s.session->tasks_in_flight() == 2);
  REQUIRE_FALSE(s.good_status(cmd_other.itt, 5));
  REQUIRE_FALSE(s.good_status(cmd_later.itt, 5));
  CHECK(other.completions == 1);
  CHECK_FALSE(other.error);
  CHECK(later.completions == 1);
}

TEST_CASE("task management goes out while the CmdSN window is closed", "[iscsi][tmf]") {
  Script s(CmdSN(1));
  Probe a, b;
  s.session->submit(a.task);
  s.session->submit(b.task);
  (void)s.expect_sent();
  s.expect_nothing_sent();  // b waits: CmdSN 2 > MaxCmdSN 1
  NopIn update;  // the target took CmdSN 1 and keeps the window shut: MaxCmdSN = ExpCmdSN - 1
  static_cast<TargetSequence&>(update) = {StatSN(1), CmdSN(2), CmdSN(1)};
  update.itt = Itt{Itt::reserved};
  update.ttt = Ttt{Ttt::reserved};
  REQUIRE_FALSE(s.deliver(update));
  s.expect_nothing_sent();

  REQUIRE(s.session->abort_task(a.task, {}) == AbortStart::sent);
  auto abort = std::get<TaskManagementRequest>(s.expect_sent());
  CHECK(abort.immediate);
  CHECK(abort.cmd_sn == CmdSN(2));
  REQUIRE(s.session->reset_lun(lun1, {}));
  CHECK(std::get<TaskManagementRequest>(s.expect_sent()).function ==
        TaskFunction::logical_unit_reset);
  CHECK(s.session->tasks_waiting() == 1);

  // A task that never left the initiator is simply taken back: re-issue it anywhere.
  CHECK(s.session->abort_task(b.task, {}) == AbortStart::withdrawn);
  CHECK(b.completions == 1);
  CHECK(b.error == make_error_code(errc::task_not_sent));
  CHECK(s.session->tasks_waiting() == 0);
}

TEST_CASE("fail_all: sent tasks get the transport error, unsent ones task_not_sent",
          "[iscsi][tmf]") {
  Script s(CmdSN(1));
  Probe sent, waiting;
  s.session->submit(sent.task);
  s.session->submit(waiting.task);
  (void)s.expect_sent();
  TmfProbe tmf;
  REQUIRE(s.session->abort_task(sent.task, tmf.handler()) == AbortStart::sent);
  s.session->fail_all(errc::connection_closed, "link down");
  CHECK(sent.error == make_error_code(errc::connection_closed));
  CHECK(waiting.error == make_error_code(errc::task_not_sent));
  CHECK(waiting.detail.find("link down") != std::string::npos);
  CHECK(tmf.calls == 1);
  CHECK(tmf.result.error == make_error_code(errc::connection_closed));
  CHECK_FALSE(tmf.result.answered());
  CHECK(s.session->tmfs_outstanding() == 0);
}

TEST_CASE(
    "a timed-out command gets ABORT TASK, then LOGICAL UNIT RESET, then the connection "
    "is given up",
    "[iscsi][tmf][timeout]") {
  Script s;
  s.session->set_timeouts({.command_timeout = 30s, .tmf_timeout = 15s});
  Probe a, b;
  s.session->submit(a.task);
  auto cmd = std::get<ScsiCommand>(s.expect_sent());
  s.now += 20s;
  s.session->submit(b.task);
  (void)s.expect_sent();

  std::string detail;
  s.now += 9s;  // a: 29 s
  REQUIRE_FALSE(s.session->check_timeouts(detail));
  s.expect_nothing_sent();
  s.now += 2s;  // a: 31 s, b: 11 s
  REQUIRE_FALSE(s.session->check_timeouts(detail));
  auto abort = std::get<TaskManagementRequest>(s.expect_sent());
  CHECK(abort.function == TaskFunction::abort_task);
  CHECK(abort.referenced_task_tag == cmd.itt);
  s.expect_nothing_sent();
  REQUIRE_FALSE(s.session->check_timeouts(detail));
  s.expect_nothing_sent();  // one abort per task

  s.now += 14s;
  REQUIRE_FALSE(s.session->check_timeouts(detail));
  s.expect_nothing_sent();
  s.now += 1s;  // the abort went unanswered for 15 s
  REQUIRE_FALSE(s.session->check_timeouts(detail));
  auto reset = std::get<TaskManagementRequest>(s.expect_sent());
  CHECK(reset.function == TaskFunction::logical_unit_reset);
  CHECK(reset.lun == lun1);
  s.now += 5s;  // b is 31 s old now, but the reset covers it: no abort of its own
  REQUIRE_FALSE(s.session->check_timeouts(detail));
  s.expect_nothing_sent();

  s.now += 10s;  // the reset went unanswered for 15 s
  auto ec = s.session->check_timeouts(detail);
  CHECK(ec == make_error_code(errc::command_timeout));
  CHECK(detail.find("LOGICAL UNIT RESET") != std::string::npos);
  CHECK(detail.find("30000 ms") != std::string::npos);
  CHECK(a.completions == 0);  // the driver drops the connection and calls fail_all
  CHECK(b.completions == 0);
}

TEST_CASE("a timed-out command whose abort is refused gets a LOGICAL UNIT RESET at once",
          "[iscsi][tmf][timeout]") {
  Script s;
  s.session->set_timeouts({.command_timeout = 30s, .tmf_timeout = 5s});
  Probe a;
  s.session->submit(a.task);
  (void)s.expect_sent();
  s.now += 31s;
  std::string detail;
  REQUIRE_FALSE(s.session->check_timeouts(detail));
  auto abort = std::get<TaskManagementRequest>(s.expect_sent());
  REQUIRE_FALSE(s.answer_tmf(abort.itt, TaskManagementResponseCode::function_rejected, 2));
  auto reset = std::get<TaskManagementRequest>(s.expect_sent());
  REQUIRE(reset.function == TaskFunction::logical_unit_reset);
  CHECK(a.completions == 0);
  REQUIRE_FALSE(s.answer_tmf(reset.itt, TaskManagementResponseCode::function_complete, 2));
  CHECK(a.completions == 1);
  CHECK(a.error == make_error_code(errc::task_aborted_proven));
  CHECK(a.detail.find("30000 ms") != std::string::npos);
}

TEST_CASE("a refused LOGICAL UNIT RESET after a timeout gives up the connection",
          "[iscsi][tmf][timeout]") {
  Script s;
  s.session->set_timeouts({.command_timeout = 30s, .tmf_timeout = 5s});
  Probe a;
  s.session->submit(a.task);
  (void)s.expect_sent();
  s.now += 31s;
  std::string detail;
  REQUIRE_FALSE(s.session->check_timeouts(detail));
  auto abort = std::get<TaskManagementRequest>(s.expect_sent());
  REQUIRE_FALSE(s.answer_tmf(abort.itt, TaskManagementResponseCode::function_not_supported, 2));
  auto reset = std::get<TaskManagementRequest>(s.expect_sent());
  CHECK(s.answer_tmf(reset.itt, TaskManagementResponseCode::function_rejected, 2) ==
        make_error_code(errc::command_timeout));
  CHECK(s.detail.find("outstanding longer than 30000 ms") != std::string::npos);
  CHECK(s.detail.find("LOGICAL UNIT RESET: function rejected") != std::string::npos);
}

TEST_CASE("a timed-out command answered by ABORT TASK completes proven aborted",
          "[iscsi][tmf][timeout]") {
  Script s;
  s.session->set_timeouts({.command_timeout = 30s, .tmf_timeout = 5s});
  Probe a;
  s.session->submit(a.task);
  (void)s.expect_sent();
  s.now += 30s;
  std::string detail;
  REQUIRE_FALSE(s.session->check_timeouts(detail));
  auto abort = std::get<TaskManagementRequest>(s.expect_sent());
  REQUIRE_FALSE(s.answer_tmf(abort.itt, TaskManagementResponseCode::function_complete, 2));
  CHECK(a.error == make_error_code(errc::task_aborted_proven));
  CHECK(a.detail.find("outstanding longer than 30000 ms") != std::string::npos);
  s.expect_nothing_sent();
}

TEST_CASE("target-requested logout: in-flight tasks finish, waiting ones are not sent",
          "[iscsi][tmf][logout]") {
  Script s(CmdSN(1));
  Probe in_flight, waiting, late;
  s.session->submit(in_flight.task);
  s.session->submit(waiting.task);
  auto cmd = std::get<ScsiCommand>(s.expect_sent());
  s.expect_nothing_sent();

  uint16_t seconds = 0;
  s.session->on_event = [&](const SessionEvent& e) {
    if (e.kind != SessionEvent::Kind::logout_requested) return;
    seconds = e.async.parameter3;
    s.session->request_logout();      // what the driver does
    CHECK(waiting.completions == 0);  // not inside on_pdu's processing
  };
  AsyncMessage async;
  static_cast<TargetSequence&>(async) = s.next_seq(2, 1);
  async.event = static_cast<uint8_t>(AsyncEvent::logout_requested);
  async.parameter3 = 10;
  REQUIRE_FALSE(s.deliver(async));
  CHECK(seconds == 10);
  CHECK(waiting.completions == 1);
  CHECK(waiting.error == make_error_code(errc::task_not_sent));
  s.session->submit(late.task);
  CHECK(late.error == make_error_code(errc::task_not_sent));
  s.expect_nothing_sent();  // the in-flight task is not answered yet

  REQUIRE_FALSE(s.good_status(cmd.itt, 2));
  CHECK(in_flight.completions == 1);
  CHECK_FALSE(in_flight.error);
  auto logout = std::get<LogoutRequest>(s.expect_sent());
  CHECK(logout.reason == LogoutReason::close_session);
  CHECK(logout.cmd_sn == CmdSN(2));
  s.expect_nothing_sent();
  LogoutResponse lr;
  static_cast<TargetSequence&>(lr) = s.next_seq(3);
  lr.itt = logout.itt;
  REQUIRE_FALSE(s.deliver(lr));
  CHECK(s.session->logged_out());
}

TEST_CASE("force_logout sends an immediate Logout with tasks in flight", "[iscsi][tmf][logout]") {
  Script s(CmdSN(1));
  Probe a;
  s.session->submit(a.task);
  (void)s.expect_sent();
  s.session->request_logout();
  s.expect_nothing_sent();
  s.session->force_logout();
  auto logout = std::get<LogoutRequest>(s.expect_sent());
  CHECK(logout.immediate);  // the window is shut (MaxCmdSN 1) and CmdSN 2 is not taken
  CHECK(logout.cmd_sn == CmdSN(2));
  s.session->force_logout();
  s.expect_nothing_sent();
  CHECK_FALSE(s.session->reset_lun(lun1, {}));
}

TEST_CASE("a command rejected 'waiting for logout' never ran", "[iscsi][tmf][logout]") {
  Script s;
  Probe a;
  s.session->submit(a.task);
  auto cmd = std::get<ScsiCommand>(s.expect_sent());
  Reject reject;
  static_cast<TargetSequence&>(reject) = s.next_seq(2);
  reject.reason = static_cast<uint8_t>(RejectReason::waiting_for_logout);
  auto header = encode_bhs(cmd);
  reject.data_segment_length = bhs_size;
  REQUIRE_FALSE(s.deliver(reject, header));
  CHECK(a.error == make_error_code(errc::task_not_sent));
}

TEST_CASE("SCSI asynchronous event hands its sense data to the owner", "[iscsi][tmf][async]") {
  Script s;
  std::vector<SessionEvent> events;
  s.session->on_event = [&](const SessionEvent& e) { events.push_back(e); };
  AsyncMessage async;
  static_cast<TargetSequence&>(async) = s.next_seq(1);
  async.lun = lun1;
  async.event = static_cast<uint8_t>(AsyncEvent::scsi_async_event);
  // SenseLength 18, fixed sense: UNIT ATTENTION, CAPACITY DATA HAS CHANGED (2A/09).
  auto data = common::from_hex("0012 700006000000000a000000002a0900000000");
  async.data_segment_length = static_cast<uint32_t>(data.size());
  REQUIRE_FALSE(s.deliver(async, data));
  REQUIRE(events.size() == 1);
  CHECK(events[0].kind == SessionEvent::Kind::scsi_async_event);
  CHECK(events[0].async.lun == lun1);
  REQUIRE(events[0].sense.size() == 18);
  CHECK(events[0].sense[2] == std::byte{0x06});
  CHECK(events[0].sense[12] == std::byte{0x2a});
  CHECK(events[0].sense[13] == std::byte{0x09});
}

TEST_CASE("target dropping the connection is reported with its reason", "[iscsi][tmf][async]") {
  Script s;
  AsyncMessage async;
  static_cast<TargetSequence&>(async) = s.next_seq(1);
  async.event = static_cast<uint8_t>(AsyncEvent::session_dropped);
  async.parameter2 = 2;
  async.parameter3 = 20;
  CHECK(s.deliver(async) == make_error_code(errc::target_dropped_connection));
  CHECK(s.detail.find("Time2Wait 2 s") != std::string::npos);
  async.event = static_cast<uint8_t>(AsyncEvent::connection_dropped);
  CHECK(s.deliver(async) == make_error_code(errc::target_dropped_connection));
  CHECK(s.detail.find("dropping the connection") != std::string::npos);
}
