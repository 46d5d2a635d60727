// Scripted exchanges for the full feature phase: the test plays the target, feeding PDUs to
// the session and checking every PDU it sends.
#include <catch2/catch.hpp>

#include <common/bytes.hpp>
#include <common/hex.hpp>
#include <iscsi/errors.hpp>
#include <iscsi/session.hpp>

#include "session_script.hpp"

using namespace iscsi;

namespace {

struct Script : session_test::SessionScript {
  explicit Script(OperationalParams params = {}, CmdSN max_cmd_sn = CmdSN(100),
                  uint32_t max_tasks = 8) {
    SessionParams sp = session_test::script_params(max_cmd_sn, max_tasks);
    sp.negotiated = params;
    session = std::make_unique<Session>(sp);
  }
};

TargetSequence seq(uint32_t stat_sn, uint32_t exp_cmd_sn, uint32_t max_cmd_sn) {
  return {StatSN(stat_sn), CmdSN(exp_cmd_sn), CmdSN(max_cmd_sn)};
}

// A READ(16) into `buffer`, submitted to the session, its completions counted. It stays where
// it was made: its completion handler points at it.
struct SubmittedRead {
  SubmittedRead(Session& session, std::span<std::byte> buffer) {
    task.direction = DataDirection::read;
    task.read_buffer = buffer;
    task.cdb[0] = std::byte{0x88};
    task.on_complete = [this](ScsiTask&) { ++completions; };
    session.submit(task);
  }
  SubmittedRead(const SubmittedRead&) = delete;
  SubmittedRead& operator=(const SubmittedRead&) = delete;

  ScsiTask task;
  int completions = 0;
};

}  // namespace

TEST_CASE("read: Data-In placed at offsets, status in the final Data-In", "[iscsi][session]") {
  Script s;
  std::vector<std::byte> buffer(8192);
  SubmittedRead read(*s.session, buffer);
  ScsiTask& task = read.task;

  auto cmd = std::get<ScsiCommand>(s.expect_sent());
  CHECK(cmd.read);
  CHECK(cmd.final);
  CHECK(cmd.expected_data_transfer_length == 8192);
  CHECK(cmd.cmd_sn == CmdSN(1));

  std::vector<std::byte> second(4096, std::byte{0xbb}), first(4096, std::byte{0xaa});
  DataIn d2;
  static_cast<TargetSequence&>(d2) = seq(0, 2, 100);
  d2.itt = cmd.itt;
  d2.data_sn = DataSN(0);
  d2.buffer_offset = 4096;
  d2.data_segment_length = 4096;
  REQUIRE_FALSE(s.deliver(d2, second));  // out of order offsets are fine (DataPDUInOrder aside)
  DataIn d1 = d2;
  d1.data_sn = DataSN(1);
  d1.buffer_offset = 0;
  d1.final = d1.has_status = true;
  d1.stat_sn = StatSN(1);
  REQUIRE_FALSE(s.deliver(d1, first));
  CHECK(read.completions == 1);
  CHECK(task.status == 0);
  CHECK_FALSE(task.transport_error);
  CHECK(buffer[0] == std::byte{0xaa});
  CHECK(buffer[8191] == std::byte{0xbb});
  CHECK(s.session->exp_stat_sn() == StatSN(2));
  CHECK(s.session->tasks_in_flight() == 0);
}

TEST_CASE("write: immediate data, unsolicited Data-Out to FirstBurstLength, then R2T",
          "[iscsi][session]") {
  OperationalParams p;
  p.immediate_data = true;
  p.initial_r2t = false;
  p.first_burst_length = 4096;
  p.max_burst_length = 8192;
  p.target_max_recv_data_segment_length = 2048;
  Script s(p);
  std::vector<std::byte> buffer(10240);
  for (size_t i = 0; i < buffer.size(); ++i) buffer[i] = std::byte(i / 1024);
  ScsiTask task;
  task.direction = DataDirection::write;
  task.write_buffer = buffer;
  bool done = false;
  task.on_complete = [&](ScsiTask&) { done = true; };
  s.session->submit(task);

  std::vector<std::byte> data;
  auto cmd = std::get<ScsiCommand>(s.expect_sent(&data));
  CHECK(cmd.write);
  CHECK_FALSE(cmd.final);  // unsolicited Data-Out follows
  CHECK(cmd.data_segment_length == 2048);
  CHECK(data.size() == 2048);
  auto out = std::get<DataOut>(s.expect_sent(&data));
  CHECK(out.ttt == Ttt{Ttt::reserved});
  CHECK(out.buffer_offset == 2048);
  CHECK(out.final);
  CHECK(data[0] == std::byte{2});
  s.expect_nothing_sent();

  ReadyToTransfer r2t;
  static_cast<TargetSequence&>(r2t) = seq(1, 2, 100);
  r2t.itt = cmd.itt;
  r2t.ttt = Ttt{0x1234};
  r2t.buffer_offset = 4096;
  r2t.desired_data_transfer_length = 6144;
  REQUIRE_FALSE(s.deliver(r2t));
  for (uint32_t i = 0; i < 3; ++i) {
    auto d = std::get<DataOut>(s.expect_sent(&data));
    CHECK(d.ttt == Ttt{0x1234});
    CHECK(d.data_sn == DataSN(i));
    CHECK(d.buffer_offset == 4096 + 2048 * i);
    CHECK(d.final == (i == 2));
    CHECK(data.size() == 2048);
    CHECK(data[0] == std::byte((4096 + 2048 * i) / 1024));
  }
  ScsiResponse rsp;
  static_cast<TargetSequence&>(rsp) = seq(1, 2, 100);
  rsp.itt = cmd.itt;
  REQUIRE_FALSE(s.deliver(rsp));
  CHECK(done);
}

TEST_CASE("R2T outside the write or above MaxBurstLength is a protocol violation",
          "[iscsi][session]") {
  OperationalParams p;
  p.immediate_data = false;
  p.initial_r2t = true;
  p.max_burst_length = 4096;
  Script s(p);
  std::vector<std::byte> buffer(8192);
  ScsiTask task;
  task.direction = DataDirection::write;
  task.write_buffer = buffer;
  s.session->submit(task);
  auto cmd = std::get<ScsiCommand>(s.expect_sent());
  CHECK(cmd.final);
  CHECK(cmd.data_segment_length == 0);
  ReadyToTransfer r2t;
  static_cast<TargetSequence&>(r2t) = seq(1, 2, 100);
  r2t.itt = cmd.itt;
  r2t.ttt = Ttt{7};
  r2t.buffer_offset = 4096;
  r2t.desired_data_transfer_length = 8192;
  CHECK(s.deliver(r2t) == make_error_code(errc::protocol_violation));
  r2t.buffer_offset = 0;
  CHECK(s.deliver(r2t) == make_error_code(errc::protocol_violation));  // > MaxBurstLength
}

// A hedged read answered first elsewhere: the session must not write the losing attempt's data
// into the buffer the reply is sent from, and the attempt still completes as the target says.
TEST_CASE("a read whose data is discarded is still answered but leaves its buffer alone",
          "[iscsi][session]") {
  Script s;
  std::vector<std::byte> buffer(8192, std::byte{0x11});
  SubmittedRead read(*s.session, buffer);
  ScsiTask& task = read.task;
  auto cmd = std::get<ScsiCommand>(s.expect_sent());

  std::vector<std::byte> data(4096, std::byte{0xaa});
  DataIn d;
  static_cast<TargetSequence&>(d) = seq(0, 2, 100);
  d.itt = cmd.itt;
  d.data_sn = DataSN(0);
  d.data_segment_length = 4096;
  REQUIRE_FALSE(s.deliver(d, data));
  CHECK(buffer[0] == std::byte{0xaa});

  REQUIRE(s.session->discard_data(task));
  // Placement declines the next segment, and fed data is not copied.
  d.data_sn = DataSN(1);
  d.buffer_offset = 4096;
  d.final = d.has_status = true;
  d.stat_sn = StatSN(1);
  CHECK(s.session->placement().place(encode_bhs(d), 4096).empty());
  REQUIRE_FALSE(s.deliver(d, data));
  CHECK(read.completions == 1);
  CHECK(task.status == 0);
  CHECK(buffer[4096] == std::byte{0x11});
  CHECK(buffer[8191] == std::byte{0x11});
  CHECK_FALSE(s.session->discard_data(task));  // completed: nothing to discard
}

TEST_CASE("discarding a read still waiting for the CmdSN window withdraws it", "[iscsi][session]") {
  Script s({}, CmdSN(0));  // closed window
  std::vector<std::byte> buffer(512);
  SubmittedRead read(*s.session, buffer);
  ScsiTask& task = read.task;
  CHECK(s.session->tasks_waiting() == 1);
  REQUIRE(s.session->discard_data(task));
  CHECK(read.completions == 1);
  CHECK(task.transport_error == make_error_code(errc::task_not_sent));
  CHECK(s.session->tasks_waiting() == 0);
  ScsiTask stranger;
  CHECK_FALSE(s.session->discard_data(stranger));
}

TEST_CASE("a closed CmdSN window holds commands until the target opens it", "[iscsi][session]") {
  Script s({}, CmdSN(0));  // MaxCmdSN = ExpCmdSN - 1: closed (§4.2.2.1)
  ScsiTask a, b;
  s.session->submit(a);
  s.session->submit(b);
  s.expect_nothing_sent();
  CHECK(s.session->tasks_waiting() == 2);

  NopIn update;  // an unsolicited NOP-In carrying the new window
  static_cast<TargetSequence&>(update) = seq(1, 1, 1);
  update.itt = Itt{Itt::reserved};
  update.ttt = Ttt{Ttt::reserved};
  REQUIRE_FALSE(s.deliver(update));
  auto first = std::get<ScsiCommand>(s.expect_sent());
  CHECK(first.cmd_sn == CmdSN(1));
  s.expect_nothing_sent();  // CmdSN 2 > MaxCmdSN 1

  // A stale MaxCmdSN (older than what we have) never shrinks the window.
  update.max_cmd_sn = CmdSN(0);
  REQUIRE_FALSE(s.deliver(update));
  s.expect_nothing_sent();
  update.max_cmd_sn = CmdSN(2);
  REQUIRE_FALSE(s.deliver(update));
  CHECK(std::get<ScsiCommand>(s.expect_sent()).cmd_sn == CmdSN(2));
}

// The window-limited refill: with many commands at the target, commands waiting for window
// room go in batches, not one 48-byte send per response. A target whose window is the limit
// (tgtd grants 128 per session) and an initiator with more commands than that produce it.
TEST_CASE("with a deep queue at the target, waiting commands go out in batches of 8",
          "[iscsi][session]") {
  Script s({}, CmdSN(40), 64);  // window: CmdSN 1..40
  std::vector<ScsiTask> tasks(48);
  for (auto& t : tasks) s.session->submit(t);
  std::vector<Itt> itts;
  for (uint32_t i = 1; i <= 40; ++i) {
    auto cmd = std::get<ScsiCommand>(s.expect_sent());
    CHECK(cmd.cmd_sn == CmdSN(i));
    itts.push_back(cmd.itt);
  }
  s.expect_nothing_sent();
  CHECK(s.session->tasks_waiting() == 8);

  // Each answer opens the window by one: the first seven leave the eight waiting commands where
  // they are (33..39 still at the target), the eighth sends them together.
  for (uint32_t i = 0; i < 8; ++i) {
    ScsiResponse rsp;
    static_cast<TargetSequence&>(rsp) = seq(1 + i, 2 + i, 41 + i);
    rsp.itt = itts[i];
    REQUIRE_FALSE(s.deliver(rsp));
    if (i < 7) {
      s.expect_nothing_sent();
      CHECK(s.session->tasks_waiting() == 8);
    }
  }
  for (uint32_t i = 41; i <= 48; ++i)
    CHECK(std::get<ScsiCommand>(s.expect_sent()).cmd_sn == CmdSN(i));
  s.expect_nothing_sent();
  CHECK(s.session->tasks_waiting() == 0);
  CHECK(s.session->tasks_in_flight() == 40);
}

TEST_CASE("with few commands at the target, a waiting command goes as soon as room opens",
          "[iscsi][session]") {
  Script s({}, CmdSN(4));  // a window of 4: nothing to batch against
  std::vector<ScsiTask> tasks(6);
  for (auto& t : tasks) s.session->submit(t);
  std::vector<Itt> itts;
  for (int i = 0; i < 4; ++i) itts.push_back(std::get<ScsiCommand>(s.expect_sent()).itt);
  s.expect_nothing_sent();
  ScsiResponse rsp;
  static_cast<TargetSequence&>(rsp) = seq(1, 2, 5);
  rsp.itt = itts[0];
  REQUIRE_FALSE(s.deliver(rsp));
  CHECK(std::get<ScsiCommand>(s.expect_sent()).cmd_sn == CmdSN(5));
  s.expect_nothing_sent();
  CHECK(s.session->tasks_waiting() == 1);
}

TEST_CASE("a slot freed when its last frame is written lets a waiting command go at once",
          "[iscsi][session]") {
  // One task slot. The write's answer is processed before the driver reports the write's frame
  // written (the reader ran first), so its slot frees only in frames_written().
  OperationalParams p;
  p.immediate_data = true;
  p.initial_r2t = false;
  Script s(p, CmdSN(100), 1);
  std::vector<std::byte> data(512, std::byte{0x5a});
  ScsiTask write, read;
  write.direction = DataDirection::write;
  write.write_buffer = data;
  bool write_done = false;
  write.on_complete = [&](ScsiTask&) { write_done = true; };
  s.session->submit(write);
  s.session->submit(read);
  CHECK(s.session->tasks_waiting() == 1);

  REQUIRE(s.session->output().size() == 1);
  ScsiResponse rsp;
  static_cast<TargetSequence&>(rsp) = seq(1, 2, 100);
  rsp.itt = std::get<ScsiCommand>(s.peek_sent()).itt;
  REQUIRE_FALSE(s.deliver(rsp));
  CHECK_FALSE(write_done);  // its frame still borrows the buffer
  CHECK(s.session->tasks_waiting() == 1);

  auto cmd = std::get<ScsiCommand>(s.expect_sent());  // reports the frame written
  CHECK(cmd.write);
  CHECK(write_done);
  auto next = std::get<ScsiCommand>(s.expect_sent());
  CHECK(next.cmd_sn == CmdSN(2));
  CHECK(s.session->tasks_waiting() == 0);
}

TEST_CASE("NOP-In asking for an answer gets a NOP-Out echoing TTT and data", "[iscsi][session]") {
  Script s;
  NopIn ping;
  static_cast<TargetSequence&>(ping) = seq(1, 1, 100);
  ping.itt = Itt{Itt::reserved};
  ping.ttt = Ttt{0xabc};
  auto payload = common::from_hex("01020304 05");
  ping.data_segment_length = 5;
  REQUIRE_FALSE(s.deliver(ping, payload));
  std::vector<std::byte> data;
  auto nop = std::get<NopOut>(s.expect_sent(&data));
  CHECK(nop.immediate);
  CHECK(nop.ttt == Ttt{0xabc});
  CHECK(nop.itt == Itt{Itt::reserved});
  CHECK(data == payload);
  CHECK(s.session->output().empty());
}

TEST_CASE("our ping is answered; an unexpected answer is a violation", "[iscsi][session]") {
  Script s;
  REQUIRE(s.session->send_ping());
  CHECK_FALSE(s.session->send_ping());
  auto nop = std::get<NopOut>(s.expect_sent());
  CHECK(nop.immediate);
  NopIn answer;
  static_cast<TargetSequence&>(answer) = seq(1, 1, 100);
  answer.itt = nop.itt;
  REQUIRE_FALSE(s.deliver(answer));
  CHECK_FALSE(s.session->ping_outstanding());
  CHECK(s.deliver(answer) == make_error_code(errc::protocol_violation));
}

TEST_CASE("CHECK CONDITION keeps the sense data without its length prefix", "[iscsi][session]") {
  Script s;
  ScsiTask task;
  s.session->submit(task);
  auto cmd = std::get<ScsiCommand>(s.expect_sent());
  ScsiResponse rsp;
  static_cast<TargetSequence&>(rsp) = seq(1, 2, 100);
  rsp.itt = cmd.itt;
  rsp.status = 0x02;
  auto data = common::from_hex("0012 700003000000000a00000000110000000000");
  rsp.data_segment_length = static_cast<uint32_t>(data.size());
  REQUIRE_FALSE(s.deliver(rsp, data));
  CHECK(task.status == 0x02);
  REQUIRE(task.sense.size() == 18);
  CHECK(task.sense[0] == std::byte{0x70});
  CHECK(task.sense[2] == std::byte{0x03});
}

TEST_CASE("responses for unknown or finished tasks are protocol violations", "[iscsi][session]") {
  Script s;
  ScsiTask task;
  s.session->submit(task);
  auto cmd = std::get<ScsiCommand>(s.expect_sent());
  ScsiResponse rsp;
  static_cast<TargetSequence&>(rsp) = seq(1, 2, 100);
  rsp.itt = cmd.itt;
  REQUIRE_FALSE(s.deliver(rsp));
  CHECK(s.deliver(rsp) == make_error_code(errc::protocol_violation));  // a second response
  rsp.itt = Itt{0x1234};
  CHECK(s.deliver(rsp) == make_error_code(errc::protocol_violation));
}

TEST_CASE("Data-In beyond the buffer or out of DataSN order is refused", "[iscsi][session]") {
  Script s;
  std::vector<std::byte> buffer(512);
  ScsiTask task;
  task.direction = DataDirection::read;
  task.read_buffer = buffer;
  s.session->submit(task);
  auto cmd = std::get<ScsiCommand>(s.expect_sent());
  std::vector<std::byte> data(512);
  DataIn d;
  static_cast<TargetSequence&>(d) = seq(0, 2, 100);
  d.itt = cmd.itt;
  d.buffer_offset = 256;
  d.data_segment_length = 512;
  CHECK(s.deliver(d, data) == make_error_code(errc::protocol_violation));
  d.buffer_offset = 0;
  d.data_sn = DataSN(3);
  CHECK(s.deliver(d, data) == make_error_code(errc::protocol_violation));
}

TEST_CASE("a finished write completes only after its Data-Out frames are written",
          "[iscsi][session]") {
  OperationalParams p;
  p.immediate_data = true;
  p.initial_r2t = true;
  Script s(p);
  std::vector<std::byte> buffer(1024);
  ScsiTask task;
  task.direction = DataDirection::write;
  task.write_buffer = buffer;
  bool done = false;
  task.on_complete = [&](ScsiTask&) { done = true; };
  s.session->submit(task);
  // The target answers before the driver has written the command frame carrying our buffer.
  InitiatorPdu pdu;
  std::string detail;
  auto& frame = s.session->output().front();
  REQUIRE_FALSE(decode_initiator_pdu(
      std::span<const std::byte, bhs_size>(frame.header.data(), bhs_size), pdu, detail));
  ScsiResponse rsp;
  static_cast<TargetSequence&>(rsp) = seq(1, 2, 100);
  rsp.itt = std::get<ScsiCommand>(pdu).itt;
  REQUIRE_FALSE(s.deliver(rsp));
  CHECK_FALSE(done);
  s.session->frames_written(1);
  CHECK(done);
}

TEST_CASE("fail_all completes sent tasks with the transport error, waiting ones as not sent",
          "[iscsi][session]") {
  Script s({}, CmdSN(1));
  ScsiTask sent, waiting;
  int completions = 0;
  sent.on_complete = [&](ScsiTask& t) {
    ++completions;
    CHECK(t.transport_error == make_error_code(errc::connection_closed));
  };
  waiting.on_complete = [&](ScsiTask& t) {
    ++completions;
    CHECK(t.transport_error == make_error_code(errc::task_not_sent));
  };
  s.session->submit(sent);
  s.session->submit(waiting);
  CHECK(s.session->tasks_waiting() == 1);
  s.session->fail_all(errc::connection_closed, "test");
  CHECK(completions == 2);
  CHECK(s.session->tasks_in_flight() == 0);
}

TEST_CASE("logout waits for outstanding tasks", "[iscsi][session]") {
  Script s;
  ScsiTask task;
  s.session->submit(task);
  auto cmd = std::get<ScsiCommand>(s.expect_sent());
  s.session->request_logout();
  s.expect_nothing_sent();
  ScsiResponse rsp;
  static_cast<TargetSequence&>(rsp) = seq(1, 2, 100);
  rsp.itt = cmd.itt;
  REQUIRE_FALSE(s.deliver(rsp));
  auto logout = std::get<LogoutRequest>(s.expect_sent());
  CHECK(logout.reason == LogoutReason::close_session);
  CHECK(logout.cmd_sn == CmdSN(2));
  LogoutResponse lr;
  static_cast<TargetSequence&>(lr) = seq(2, 3, 100);
  lr.itt = logout.itt;
  REQUIRE_FALSE(s.deliver(lr));
  CHECK(s.session->logged_out());
}
