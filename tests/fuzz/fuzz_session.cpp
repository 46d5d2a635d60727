// Session (full feature phase, RFC 7143 §3.2.4) with one READ and one WRITE task submitted,
// fed whatever the target sends through a PduReader that places Data-In payloads straight into
// the read buffer, exactly as the Asio driver does. Every buffer is an exact-size heap block
// that is freed as soon as its task completes, so ASan reports any access outside a task's
// buffer or after its completion.
//
// Task management (§11.5/§11.6) and command timeouts are driven too: ABORT TASK and LOGICAL UNIT
// RESET requests whose answers (or Rejects, or nothing) come from the stream, and a fake clock
// that moves one second per PDU so check_timeouts() escalates. Async Messages are acted on as
// the driver does (AsyncEvent 1 requests the logout).
//
// Input: 14 prefix bytes, then the target's byte stream.
//   0: flags: bit 0 ImmediateData, bit 1 InitialR2T, bit 2 write out every frame after each PDU
//      (else after every second one), bit 3 resubmit completed tasks, bit 4 send a ping first,
//      bit 5 request a logout first, bit 6 command and TMF timeouts of 2 s on the fake clock,
//      bit 7 ABORT TASK for the read task once both tasks are submitted.
//   1: chunk seed (fuzz::Chunker)
//   2-3 FirstBurstLength, 4-5 MaxBurstLength, 6-7 target MaxRecvDataSegmentLength (each at
//   least 512), 8-9 read length, 10-11 write length (each & 0x3fff),
//   12: bits 0-1 max tasks - 1 (0..3), bit 2 LOGICAL UNIT RESET for LUN 0 once both tasks are
//   submitted (after the ABORT TASK), high nibble CmdSN window (MaxCmdSN - CmdSN),
//   13: our MaxRecvDataSegmentLength = 512 << (n & 7).
#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <iscsi/errors.hpp>
#include <iscsi/pdu.hpp>
#include <iscsi/pdu_reader.hpp>
#include <iscsi/session.hpp>

#include "fuzz_support.hpp"

namespace {

struct TaskBox {
  iscsi::ScsiTask task;
  std::unique_ptr<std::byte[]> buffer;
  int completions = 0;
};

// One task management request: its handler must run exactly once, by the end at the latest.
struct TmfBox {
  int answers = 0;
};

class Harness {
 public:
  Harness(const fuzz::Prefix& prefix) : prefix_(prefix) {
    iscsi::SessionParams sp;
    auto& p = sp.negotiated;
    p.immediate_data = prefix.bit(0, 0);
    p.initial_r2t = prefix.bit(0, 1);
    p.first_burst_length = std::max<uint32_t>(512, prefix.u16(2));
    p.max_burst_length = std::max<uint32_t>(512, prefix.u16(4));
    p.target_max_recv_data_segment_length = std::max<uint32_t>(512, prefix.u16(6));
    p.initiator_max_recv_data_segment_length = 512u << (prefix.u8(13) & 7u);
    sp.cmd_sn = iscsi::CmdSN(1);
    sp.exp_cmd_sn = iscsi::CmdSN(1);
    sp.max_cmd_sn = iscsi::CmdSN(1 + (prefix.u8(12) >> 4));
    sp.exp_stat_sn = iscsi::StatSN(1);
    sp.max_tasks = 1 + (prefix.u8(12) & 3u);
    sp.clock = [this] { return now_; };
    session_ = std::make_unique<iscsi::Session>(sp);
    if (prefix.bit(0, 6)) {
      session_->set_timeouts(
          {.command_timeout = std::chrono::seconds(2), .tmf_timeout = std::chrono::seconds(2)});
    }
    session_->on_output = [this] { check_new_frames(); };
    // As the driver does: a logout the target asks for (AsyncEvent 1) is started from inside
    // on_pdu; AsyncEvent 2/3 come back from on_pdu as an error and end the connection.
    session_->on_event = [this](const iscsi::SessionEvent& event) {
      if (event.kind == iscsi::SessionEvent::Kind::logout_requested) session_->request_logout();
    };
    reader_.set_limits(session_->reader_limits());
    reader_.set_placement(&session_->placement());
  }

  void submit(iscsi::DataDirection direction) {
    auto box = std::make_unique<TaskBox>();
    const size_t length =
        (direction == iscsi::DataDirection::read ? prefix_.u16(8) : prefix_.u16(10)) & 0x3fffu;
    box->buffer = std::make_unique<std::byte[]>(length);
    box->task.direction = direction;
    box->task.cdb[0] = std::byte(direction == iscsi::DataDirection::read ? 0x88 : 0x8a);
    if (direction == iscsi::DataDirection::read) {
      box->task.read_buffer = {box->buffer.get(), length};
    } else {
      for (size_t i = 0; i < length; ++i) box->buffer[i] = std::byte(i);
      box->task.write_buffer = {box->buffer.get(), length};
    }
    TaskBox* raw = box.get();
    box->task.on_complete = [this, raw](iscsi::ScsiTask& task) {
      FUZZ_CHECK(&task == &raw->task);
      ++raw->completions;
      completed_.push_back(raw);
    };
    live_.push_back(std::move(box));
    session_->submit(raw->task);
  }

  // ABORT TASK for the first live task of `direction`, LOGICAL UNIT RESET for LUN 0.
  void abort(iscsi::DataDirection direction) {
    for (auto& box : live_) {
      if (box->task.direction != direction || box->completions > 0) continue;
      auto tmf = std::make_unique<TmfBox>();
      TmfBox* raw = tmf.get();
      tmfs_.push_back(std::move(tmf));
      const auto start =
          session_->abort_task(box->task, [raw](const iscsi::TmfResult&) { ++raw->answers; });
      if (start == iscsi::AbortStart::withdrawn) {
        // Taken back from the CmdSN window: completed at once, as never sent.
        FUZZ_CHECK(box->completions == 1);
        FUZZ_CHECK(box->task.transport_error == iscsi::errc::task_not_sent);
      }
      if (start != iscsi::AbortStart::sent) tmfs_.pop_back();  // no handler call will come
      return;
    }
  }

  void reset_lun() {
    auto tmf = std::make_unique<TmfBox>();
    TmfBox* raw = tmf.get();
    if (session_->reset_lun(iscsi::Lun{0}, [raw](const iscsi::TmfResult&) { ++raw->answers; }))
      tmfs_.push_back(std::move(tmf));
  }

  // Completion callbacks have returned: check each task completed once, then free it (and its
  // buffer) so a later access by the session is a use-after-free.
  void retire() {
    std::vector<TaskBox*> done;
    done.swap(completed_);
    for (TaskBox* box : done) {
      FUZZ_CHECK(box->completions == 1);
      const auto direction = box->task.direction;
      std::erase_if(live_, [box](const auto& p) { return p.get() == box; });
      if (!closing_ && prefix_.bit(0, 3) && resubmits_ < 8) {
        ++resubmits_;
        submit(direction);
      }
    }
  }

  // Frames as the session queues them (on_output): well formed, inside the target's limits,
  // and no non-immediate command beyond the CmdSN window as it stands at that moment
  // (§4.2.2.1). Checked here rather than at write time: MaxCmdSN may move in between.
  void check_new_frames() {
    auto& out = session_->output();
    for (; checked_ < out.size(); ++checked_) {
      const iscsi::OutFrame& f = out[checked_];
      FUZZ_CHECK(f.header_size == iscsi::bhs_size);
      const std::span<const std::byte, iscsi::bhs_size> bhs(f.header.data(), iscsi::bhs_size);
      iscsi::InitiatorPdu pdu;
      std::string detail;
      FUZZ_CHECK(!iscsi::decode_initiator_pdu(bhs, pdu, detail));
      FUZZ_CHECK(iscsi::bhs_data_segment_length(bhs) == f.data.size());
      FUZZ_CHECK(f.padding == iscsi::padded_length(f.data.size()) - f.data.size());
      const uint32_t target_limit = session_->params().target_max_recv_data_segment_length;
      if (auto* cmd = std::get_if<iscsi::ScsiCommand>(&pdu)) {
        FUZZ_CHECK(cmd->cmd_sn <= session_->max_cmd_sn());
        FUZZ_CHECK(f.data.size() <= target_limit);
      }
      if (auto* logout = std::get_if<iscsi::LogoutRequest>(&pdu))
        FUZZ_CHECK(logout->immediate || logout->cmd_sn <= session_->max_cmd_sn());
      if (std::holds_alternative<iscsi::DataOut>(pdu)) FUZZ_CHECK(f.data.size() <= target_limit);
    }
  }

  // What the driver's gathered write does: read every byte of every queued frame.
  void write_frames() {
    check_new_frames();
    auto& out = session_->output();
    for (const iscsi::OutFrame& f : out) fuzz::touch(f.data);
    const size_t n = out.size();
    checked_ = 0;
    session_->frames_written(n);
    check_new_frames();  // completions may have queued more (a resubmitted task)
    retire();
  }

  // Feeds the target's stream; false once the connection would be dropped.
  bool feed(std::span<const std::byte> chunk) {
    size_t used = 0;
    while (used < chunk.size()) {
      const auto result = reader_.feed(chunk.subspan(used));
      used += result.consumed;
      if (result.state == iscsi::PduReader::State::error) return false;
      if (result.state == iscsi::PduReader::State::need_more) break;
      std::string detail;
      const std::error_code ec = session_->on_pdu(reader_.bhs(), reader_.data(), detail);
      reader_.next();
      retire();
      if (ec) return false;
      if (prefix_.bit(0, 6)) {
        now_ += std::chrono::seconds(1);
        const std::error_code timeout = session_->check_timeouts(detail);
        retire();
        if (timeout) return false;  // the escalation ran out: the driver drops the connection
      }
      if (prefix_.bit(0, 2) || (++pdus_ & 1u) == 0) write_frames();
      reader_.set_limits(session_->reader_limits());
    }
    return true;
  }

  void run(std::span<const std::byte> stream) {
    if (prefix_.bit(0, 4)) (void)session_->send_ping();
    submit(iscsi::DataDirection::read);
    submit(iscsi::DataDirection::write);
    if (prefix_.bit(0, 7)) abort(iscsi::DataDirection::read);
    if (prefix_.bit(12, 2)) reset_lun();
    retire();  // a withdrawn task completes at once
    if (prefix_.bit(0, 5)) session_->request_logout();
    fuzz::Chunker chunker(prefix_.u8(1));
    size_t offset = 0;
    bool alive = true;
    while (alive && offset < stream.size()) {
      const size_t n = chunker.next(stream.size() - offset);
      alive = feed(stream.subspan(offset, n));
      offset += n;
    }
    if (alive) write_frames();
    closing_ = true;
    session_->fail_all(iscsi::errc::connection_closed, "fuzz input ended");
    checked_ = 0;  // fail_all drops every queued frame
    retire();
    // Every task submitted completed exactly once (retire() checked) and none is left over;
    // every task management request was answered exactly once, by the target or by fail_all.
    FUZZ_CHECK(live_.empty());
    FUZZ_CHECK(session_->tasks_in_flight() == 0);
    FUZZ_CHECK(session_->tasks_waiting() == 0);
    FUZZ_CHECK(session_->tmfs_outstanding() == 0);
    for (const auto& tmf : tmfs_) FUZZ_CHECK(tmf->answers == 1);
  }

 private:
  const fuzz::Prefix& prefix_;
  std::unique_ptr<iscsi::Session> session_;
  iscsi::PduReader reader_;
  std::vector<std::unique_ptr<TaskBox>> live_;
  std::vector<TaskBox*> completed_;
  std::vector<std::unique_ptr<TmfBox>> tmfs_;
  iscsi::SessionClock::time_point now_{};  // the fake clock: one second per PDU with bit 6
  size_t checked_ = 0;                     // frames at the front of output() already checked
  unsigned resubmits_ = 0;
  bool closing_ = false;
  unsigned pdus_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* raw, size_t size) {
  auto input = fuzz::as_bytes(raw, size);
  const fuzz::Prefix prefix(input, 14);
  Harness harness(prefix);
  harness.run(input);
  return 0;
}
