#include "iscsi/session.hpp"

#include <algorithm>
#include <cstring>

#include <common/bytes.hpp>
#include <scsi/report_luns.hpp>

#include "iscsi/errors.hpp"

namespace iscsi {
namespace {

// Task ITTs are slot index (low 16 bits) plus a generation (next 15 bits), so a late response
// for a finished task never matches the slot's next occupant. The top bit is reserved for
// NOP-Out and Logout ITTs.
constexpr uint32_t slot_bits = 16;
constexpr uint32_t slot_mask = (1u << slot_bits) - 1;
constexpr uint32_t generation_mask = 0x7fffu;

std::error_code violation(std::string& detail, std::string what) {
  detail = std::move(what);
  return errc::protocol_violation;
}

std::string lun_text(Lun lun) {
  if (auto n = scsi::decode_lun(lun.encoded)) return std::to_string(*n);
  return "0x" + std::to_string(lun.encoded);
}

const char* function_name(TaskFunction f) {
  switch (f) {
    case TaskFunction::abort_task:
      return "ABORT TASK";
    case TaskFunction::logical_unit_reset:
      return "LOGICAL UNIT RESET";
    default:
      return "task management function";
  }
}

std::string milliseconds(std::chrono::milliseconds ms) {
  return std::to_string(ms.count()) + " ms";
}

}  // namespace

Session::Session(const SessionParams& p)
    : params_(p.negotiated),
      cid_(p.cid),
      cmd_sn_(p.cmd_sn),
      exp_cmd_sn_(p.exp_cmd_sn),
      max_cmd_sn_(p.max_cmd_sn),
      exp_stat_sn_(p.exp_stat_sn),
      clock_(p.clock ? p.clock : [] { return SessionClock::now(); }) {
  const uint32_t n = std::clamp<uint32_t>(p.max_tasks, 1, slot_mask);
  slots_.resize(n);
  free_slots_.reserve(n);
  for (uint32_t i = n; i-- > 0;) free_slots_.push_back(i);
}

ReaderLimits Session::reader_limits() const {
  return {.max_data_segment_length = params_.initiator_max_recv_data_segment_length,
          .header_digest = params_.header_digest_crc32c,
          .data_digest = params_.data_digest_crc32c};
}

Itt Session::itt_of(uint32_t slot_index) const {
  return Itt{(uint32_t{slots_[slot_index].generation} << slot_bits) | slot_index};
}

Session::Slot* Session::find_slot(Itt itt) {
  if (itt.value & 0x80000000u) return nullptr;
  const uint32_t index = itt.value & slot_mask;
  if (index >= slots_.size()) return nullptr;
  Slot& s = slots_[index];
  if (s.task == nullptr || s.completed ||
      s.generation != ((itt.value >> slot_bits) & generation_mask))
    return nullptr;
  return &s;
}

// A late PDU for a task that task management ended (its slot may have a new occupant by now).
bool Session::was_aborted(Itt itt) const {
  if (itt.value & 0x80000000u) return false;
  const uint32_t index = itt.value & slot_mask;
  if (index >= slots_.size()) return false;
  const auto& aborted = slots_[index].aborted_generation;
  return aborted && *aborted == ((itt.value >> slot_bits) & generation_mask);
}

// NOP-Out, Logout and task management ITTs: top bit set, never the reserved 0xffffffff.
Itt Session::next_special_itt() {
  Itt itt{(next_special_itt_++ & 0x7fffffffu) | 0x80000000u};
  if (itt.value == Itt::reserved) itt.value = 0x80000000u;
  return itt;
}

// ---------------------------------------------------------------- sending

void Session::submit(ScsiTask& task) {
  task.transport_error = {};
  task.transport_detail.clear();
  task.status = 0;
  task.response = 0;
  task.sense.clear();
  task.residual_count = 0;
  task.residual_underflow = task.residual_overflow = false;
  if (logout_requested_) {  // §11.9.1: no new commands once the logout is under way
    task.transport_error = errc::task_not_sent;
    task.transport_detail = "not sent: the session is logging out";
    unsent_.push_back(&task);
    drain();
    return;
  }
  waiting_.push_back(&task);
  pump();
}

// While the target already holds refill_hold_depth of our commands, a command waiting for a
// free slot or CmdSN window room is sent only once refill_batch of them can go together.
// Refilling each slot the moment one response frees it costs a send of one 48-byte PDU (and a
// read at the target) per command; the target loses nothing by the wait, it still has at least
// refill_hold_depth - refill_batch commands to work on. With fewer in flight, or a window
// smaller than refill_hold_depth, every command goes at once, so no command can be held with
// nothing outstanding that would free room for it.
namespace {
constexpr size_t refill_hold_depth = 32;
constexpr size_t refill_batch = 8;
}  // namespace

bool Session::hold_for_batch() const {
  if (waiting_.empty() || in_flight_ < refill_hold_depth) return false;
  const size_t room = std::min<size_t>(free_slots_.size(), window_room());
  return room < std::min(refill_batch, waiting_.size());
}

// No command goes out while a LOGICAL UNIT RESET of ours is unanswered. The reset is an
// immediate request (§11.5) that the target may carry out some time after it arrived: LIO
// queues it to a worker, which aborts every command of the LU it holds by then, commands that
// came in behind the reset on this I_T nexus included, and those end without a response to
// the nexus that asked (SAM-5 §5.6). Such a command would wait out the command timeout (30 s
// seen in integration.lio's alua case) for an ABORT TASK answered "task does not exist". Held
// until the answer, as open-iscsi holds new commands while a task management request is
// queued, the reset ends exactly the commands sent before it (conclude_tmf).
bool Session::lun_reset_outstanding() const {
  return std::any_of(tmfs_.begin(), tmfs_.end(), [](const PendingTmf& t) {
    return t.function == TaskFunction::logical_unit_reset;
  });
}

// Sends waiting tasks while the CmdSN window is open and a task slot is free (§4.2.2.1: the
// initiator must not send a non-immediate command with CmdSN beyond MaxCmdSN).
void Session::pump() {
  // Judged once: a batch, once released, goes out whole.
  const bool hold = hold_for_batch() || lun_reset_outstanding();
  while (!hold && !waiting_.empty() && window_open() && !free_slots_.empty() &&
         !logout_requested_) {
    ScsiTask* task = waiting_.front();
    waiting_.pop_front();
    const uint32_t index = free_slots_.back();
    free_slots_.pop_back();
    Slot& slot = slots_[index];
    slot.task = task;
    slot.generation = static_cast<uint16_t>((slot.generation + 1) & generation_mask);
    slot.data_received = 0;
    slot.next_data_sn = DataSN(0);
    slot.frames_pending = 0;
    slot.completed = false;
    slot.abort_pending = false;
    slot.timed_out = false;
    slot.data_discarded = false;
    slot.sent_at = clock_();
    // After 2^15 occupants the tag comes round again; the old task is long settled by then.
    if (slot.aborted_generation == slot.generation) slot.aborted_generation.reset();
    ++in_flight_;
    send_command(index);
  }
  maybe_logout();
}

OutFrame Session::make_frame(const auto& pdu, std::span<const std::byte> data) {
  OutFrame f;
  Bhs bhs;
  encode(pdu, bhs);
  std::memcpy(f.header.data(), bhs.data(), bhs_size);
  f.header_size = bhs_size;
  if (params_.header_digest_crc32c) {  // §11.1: after the BHS (we never send AHS)
    auto d = digest_bytes(crc32c(bhs));
    std::memcpy(f.header.data() + bhs_size, d.data(), digest_size);
    f.header_size += digest_size;
  }
  f.data = data;
  f.padding = static_cast<uint8_t>(padded_length(static_cast<uint32_t>(data.size())) - data.size());
  if (params_.data_digest_crc32c && !data.empty()) {
    static constexpr std::array<std::byte, 3> zeros{};
    f.has_data_digest = true;
    f.data_digest = digest_bytes(crc32c(std::span(zeros).first(f.padding), crc32c(data)));
  }
  return f;
}

void Session::queue_frame(OutFrame&& frame) {
  if (frame.task_slot != OutFrame::no_task) ++slots_[frame.task_slot].frames_pending;
  output_.push_back(std::move(frame));
}

void Session::send_command(uint32_t index) {
  Slot& slot = slots_[index];
  ScsiTask& task = *slot.task;
  const uint32_t length = task.expected_length();

  ScsiCommand cmd;
  cmd.read = task.direction == DataDirection::read;
  cmd.write = task.direction == DataDirection::write;
  cmd.attribute = TaskAttribute::simple;
  cmd.lun = task.lun;
  cmd.itt = itt_of(index);
  cmd.expected_data_transfer_length = length;
  cmd.cmd_sn = cmd_sn_;
  cmd.exp_stat_sn = exp_stat_sn_;
  cmd.cdb = task.cdb;
  slot.cmd_sn = cmd_sn_;
  cmd_sn_ = cmd_sn_.next();

  // §13.13/§13.14: unsolicited data (immediate plus unsolicited Data-Out) is at most
  // FirstBurstLength; ImmediateData goes in the command PDU itself, bounded by the target's
  // MaxRecvDataSegmentLength.
  uint32_t immediate = 0;
  uint32_t unsolicited = 0;
  if (cmd.write) {
    const uint32_t first_burst = std::min(length, params_.first_burst_length);
    if (params_.immediate_data)
      immediate = std::min(first_burst, params_.target_max_recv_data_segment_length);
    unsolicited = params_.initial_r2t ? immediate : first_burst;
  }
  // The F bit says no unsolicited Data-Out follows this command (§11.3.1).
  cmd.final = unsolicited == immediate;
  cmd.data_segment_length = immediate;

  OutFrame frame = make_frame(cmd, task.write_buffer.first(immediate));
  if (immediate > 0) frame.task_slot = index;
  queue_frame(std::move(frame));
  if (unsolicited > immediate)
    queue_data_out(index, Ttt{Ttt::reserved}, immediate, unsolicited - immediate, true);
  if (on_output) on_output();
}

// One sequence of Data-Out PDUs (§11.7), each no larger than the target's
// MaxRecvDataSegmentLength, DataSN counting from 0 within the sequence.
void Session::queue_data_out(uint32_t index, Ttt ttt, uint32_t offset, uint32_t length,
                             bool final_on_last) {
  Slot& slot = slots_[index];
  ScsiTask& task = *slot.task;
  const uint32_t max_segment = std::max<uint32_t>(params_.target_max_recv_data_segment_length, 512);
  uint32_t data_sn = 0;
  uint32_t done = 0;
  while (done < length) {
    const uint32_t n = std::min(max_segment, length - done);
    DataOut out;
    out.lun = task.lun;
    out.itt = itt_of(index);
    out.ttt = ttt;
    out.exp_stat_sn = exp_stat_sn_;
    out.data_sn = DataSN(data_sn++);
    out.buffer_offset = offset + done;
    out.data_segment_length = n;
    done += n;
    out.final = final_on_last && done == length;
    OutFrame frame = make_frame(out, task.write_buffer.subspan(out.buffer_offset, n));
    frame.task_slot = index;
    queue_frame(std::move(frame));
  }
}

bool Session::send_ping() {
  if (ping_itt_ || logout_sent_) return false;
  NopOut nop;
  nop.immediate = true;  // §11.18: does not advance CmdSN; not held back by the window
  nop.itt = next_special_itt();
  nop.ttt = Ttt{Ttt::reserved};
  nop.cmd_sn = cmd_sn_;
  nop.exp_stat_sn = exp_stat_sn_;
  ping_itt_ = nop.itt;
  queue_frame(make_frame(nop, {}));
  if (on_output) on_output();
  return true;
}

void Session::request_logout() {
  logout_requested_ = true;
  withdraw_waiting();
  maybe_logout();
  drain();
}

void Session::force_logout() {
  logout_requested_ = true;
  withdraw_waiting();
  if (!logout_sent_) send_logout(true);
  drain();
}

void Session::withdraw_waiting() {
  for (ScsiTask* task : waiting_) {
    task->transport_error = errc::task_not_sent;
    task->transport_detail = "not sent: the session is logging out";
    unsent_.push_back(task);
  }
  waiting_.clear();
}

void Session::maybe_logout() {
  if (!logout_requested_ || logout_sent_ || in_flight_ > 0) return;
  if (!window_open()) return;
  send_logout(false);
}

void Session::send_logout(bool immediate) {
  LogoutRequest req;
  req.immediate = immediate;  // an immediate Logout does not advance CmdSN (§3.2.2.1)
  req.reason = LogoutReason::close_session;
  req.itt = next_special_itt();
  req.cid = cid_;
  req.cmd_sn = cmd_sn_;
  req.exp_stat_sn = exp_stat_sn_;
  if (!immediate) cmd_sn_ = cmd_sn_.next();
  logout_itt_ = req.itt;
  logout_sent_ = true;
  queue_frame(make_frame(req, {}));
  if (on_output) on_output();
}

// ---------------------------------------------------------------- task management

AbortStart Session::abort_task(ScsiTask& task, TmfHandler done) {
  if (auto w = std::find(waiting_.begin(), waiting_.end(), &task); w != waiting_.end()) {
    waiting_.erase(w);
    task.transport_error = errc::task_not_sent;
    task.transport_detail = "withdrawn by ABORT TASK before it was sent";
    unsent_.push_back(&task);
    drain();
    return AbortStart::withdrawn;
  }
  for (uint32_t i = 0; i < slots_.size(); ++i) {
    const Slot& slot = slots_[i];
    if (slot.task != &task) continue;
    if (slot.completed) return AbortStart::not_outstanding;
    if (slot.abort_pending || logout_sent_) return AbortStart::refused;
    send_tmf(TaskFunction::abort_task, task.lun, i, std::move(done), false);
    return AbortStart::sent;
  }
  return AbortStart::not_outstanding;
}

bool Session::discard_data(ScsiTask& task) {
  if (auto w = std::find(waiting_.begin(), waiting_.end(), &task); w != waiting_.end()) {
    waiting_.erase(w);
    task.transport_error = errc::task_not_sent;
    task.transport_detail = "withdrawn before it was sent: its data is no longer wanted";
    unsent_.push_back(&task);
    drain();
    return true;
  }
  for (auto& slot : slots_) {
    if (slot.task != &task) continue;
    if (slot.completed) return false;
    slot.data_discarded = true;
    return true;
  }
  return false;
}

bool Session::reset_lun(Lun lun, TmfHandler done) {
  if (logout_sent_) return false;
  send_tmf(TaskFunction::logical_unit_reset, lun, std::nullopt, std::move(done), false);
  return true;
}

// §11.5: as an immediate command the request carries the next CmdSN without taking it, and the
// target acts on it at once, ahead of commands still queued behind the CmdSN window.
void Session::send_tmf(TaskFunction function, Lun lun, std::optional<uint32_t> slot_index,
                       TmfHandler handler, bool for_timeout) {
  TaskManagementRequest req;
  req.immediate = true;
  req.function = function;
  req.lun = lun;
  req.itt = next_special_itt();
  req.referenced_task_tag = Itt{Itt::reserved};
  req.cmd_sn = cmd_sn_;
  req.exp_stat_sn = exp_stat_sn_;
  PendingTmf tmf;
  if (slot_index) {
    // §11.5.4: RefCmdSN is the referenced command's CmdSN (our tasks are never immediate).
    Slot& slot = slots_[*slot_index];
    req.referenced_task_tag = itt_of(*slot_index);
    req.ref_cmd_sn = slot.cmd_sn;
    slot.abort_pending = true;
    tmf.slot = *slot_index;
    tmf.generation = slot.generation;
  }
  tmf.itt = req.itt;
  tmf.function = function;
  tmf.lun = lun;
  tmf.cmd_sn = req.cmd_sn;
  tmf.sent_at = clock_();
  tmf.handler = std::move(handler);
  tmf.for_timeout = for_timeout;
  tmfs_.push_back(std::move(tmf));
  queue_frame(make_frame(req, {}));
  if (on_output) on_output();
}

// A LOGICAL UNIT RESET outstanding for the slot's LUN and sent after the slot's command.
bool Session::reset_covers(const Slot& slot) const {
  return std::any_of(tmfs_.begin(), tmfs_.end(), [&](const PendingTmf& t) {
    return t.function == TaskFunction::logical_unit_reset && t.lun == slot.task->lun &&
           slot.cmd_sn < t.cmd_sn;
  });
}

std::string Session::timeout_text() const {
  return "outstanding longer than " + milliseconds(timeouts_.command_timeout);
}

void Session::end_by_tmf(uint32_t index, const std::string& what) {
  Slot& slot = slots_[index];
  ScsiTask& task = *slot.task;
  task.transport_error = errc::task_aborted_proven;
  task.transport_detail = slot.timed_out ? "command " + timeout_text() + "; " + what : what;
  slot.aborted_generation = slot.generation;
  slot.abort_pending = false;
  finish(index);
}

// The target's answer to one of our requests (or its Reject of it, as "function rejected").
std::error_code Session::conclude_tmf(PendingTmf tmf, uint8_t response, const std::string& what,
                                      std::string& detail) {
  const bool abort = tmf.function == TaskFunction::abort_task;
  Slot* referenced = nullptr;
  if (abort) {
    Slot& slot = slots_[tmf.slot];
    if (slot.task != nullptr && !slot.completed && slot.generation == tmf.generation) {
      referenced = &slot;
      slot.abort_pending = false;
    }
  }
  // §11.6.1: for ABORT TASK, "task does not exist" means the target has no such task and, the
  // RefCmdSN being behind its window, never will; "function complete" means it was aborted.
  // §11.6.2: responses of affected tasks precede the TMF response, which concludes the rest.
  const bool ended =
      response == static_cast<uint8_t>(TaskManagementResponseCode::function_complete) ||
      (abort && response == static_cast<uint8_t>(TaskManagementResponseCode::task_does_not_exist));
  std::error_code ec;
  if (ended) {
    if (referenced != nullptr) {
      end_by_tmf(tmf.slot, what);
    } else if (!abort) {
      for (uint32_t i = 0; i < slots_.size(); ++i) {
        const Slot& slot = slots_[i];
        if (slot.task != nullptr && !slot.completed && slot.task->lun == tmf.lun &&
            slot.cmd_sn < tmf.cmd_sn)
          end_by_tmf(i, what);
      }
    }
  } else if (tmf.for_timeout) {
    if (referenced != nullptr && !reset_covers(*referenced))
      send_tmf(TaskFunction::logical_unit_reset, tmf.lun, std::nullopt, {}, true);
    if (!abort) {
      detail = "command " + timeout_text() + " on LUN " + lun_text(tmf.lun) + "; " + what;
      ec = errc::command_timeout;
    }
  }
  if (tmf.handler) tmf_done_.push_back({std::move(tmf.handler), TmfResult{{}, what, response}});
  return ec;
}

std::error_code Session::check_timeouts(std::string& detail) {
  if (logout_sent_) return {};  // the logout's own timeout governs from here
  const auto now = clock_();
  if (timeouts_.tmf_timeout.count() > 0) {
    // By index: escalating appends to tmfs_.
    for (size_t i = 0; i < tmfs_.size(); ++i) {
      if (tmfs_[i].escalated || now - tmfs_[i].sent_at < timeouts_.tmf_timeout) continue;
      tmfs_[i].escalated = true;
      const PendingTmf tmf = tmfs_[i];  // a copy: sending below may grow tmfs_
      if (tmf.function == TaskFunction::abort_task) {
        Slot& slot = slots_[tmf.slot];
        if (slot.task != nullptr && !slot.completed && slot.generation == tmf.generation &&
            !reset_covers(slot))
          send_tmf(TaskFunction::logical_unit_reset, tmf.lun, std::nullopt, {}, true);
      } else {
        detail = std::string(function_name(tmf.function)) + " of LUN " + lun_text(tmf.lun) +
                 " unanswered within " + milliseconds(timeouts_.tmf_timeout);
        if (tmf.for_timeout) detail += " after a command was " + timeout_text();
        return errc::command_timeout;
      }
    }
  }
  if (timeouts_.command_timeout.count() > 0) {
    for (uint32_t i = 0; i < slots_.size(); ++i) {
      Slot& slot = slots_[i];
      if (slot.task == nullptr || slot.completed || slot.abort_pending ||
          now - slot.sent_at < timeouts_.command_timeout || reset_covers(slot))
        continue;
      slot.timed_out = true;
      send_tmf(TaskFunction::abort_task, slot.task->lun, i, {}, true);
    }
  }
  return {};
}

void Session::frames_written(size_t count) {
  count = std::min(count, output_.size());
  for (size_t i = 0; i < count; ++i) {
    const uint32_t slot = output_.front().task_slot;
    output_.pop_front();
    if (slot != OutFrame::no_task) {
      --slots_[slot].frames_pending;
      maybe_release(slot);
    }
  }
  // A task whose answer came before its last frame was reported written frees its slot only
  // now: the commands waiting for one go out without waiting for the next PDU. pump() ends in
  // maybe_logout(), for a logout that waited only for these frames.
  pump();
}

// ---------------------------------------------------------------- receiving

void Session::update_sequence(const TargetSequence& seq, bool carries_status) {
  // §4.2.2.1: ignore MaxCmdSN/ExpCmdSN when MaxCmdSN < ExpCmdSN - 1 (serial arithmetic);
  // otherwise take them when they move forward.
  if (!(seq.max_cmd_sn < CmdSN(seq.exp_cmd_sn.value() - 1))) {
    if (seq.exp_cmd_sn > exp_cmd_sn_) exp_cmd_sn_ = seq.exp_cmd_sn;
    if (seq.max_cmd_sn > max_cmd_sn_) max_cmd_sn_ = seq.max_cmd_sn;
  }
  // §4.2.2.2: ExpStatSN acknowledges status up to StatSN.
  if (carries_status && seq.stat_sn.next() > exp_stat_sn_) exp_stat_sn_ = seq.stat_sn.next();
}

std::span<std::byte> Session::place(std::span<const std::byte, bhs_size> bhs, uint32_t length) {
  // Data-In payloads go straight into the task's read buffer when the PDU is for a live read
  // task and lies inside its buffer; anything else is buffered by the reader and judged by
  // on_pdu.
  if (bhs_opcode(bhs) != Opcode::data_in) return {};
  Slot* slot = find_slot(Itt{common::load_be32(bhs, 16)});
  if (slot == nullptr || slot->task->direction != DataDirection::read || slot->data_discarded)
    return {};
  const uint32_t offset = common::load_be32(bhs, 40);
  auto& buffer = slot->task->read_buffer;
  if (offset > buffer.size() || length > buffer.size() - offset) return {};
  return buffer.subspan(offset, length);
}

std::error_code Session::on_pdu(std::span<const std::byte, bhs_size> bhs,
                                std::span<const std::byte> data, std::string& detail) {
  TargetPdu pdu;
  if (auto ec = decode_target_pdu(bhs, pdu, detail)) return ec;
  in_pdu_ = true;
  std::error_code ec = std::visit(
      [&](const auto& p) -> std::error_code {
        using T = std::decay_t<decltype(p)>;
        if constexpr (std::is_same_v<T, DataIn>) {
          update_sequence(p, p.has_status);
          return handle(p, data, detail);
        } else if constexpr (std::is_same_v<T, ScsiResponse>) {
          update_sequence(p, true);
          return handle(p, data, detail);
        } else if constexpr (std::is_same_v<T, ReadyToTransfer>) {
          update_sequence(p, false);
          return handle(p, detail);
        } else if constexpr (std::is_same_v<T, NopIn>) {
          update_sequence(p, p.itt.value != Itt::reserved);
          return handle(p, data, detail);
        } else if constexpr (std::is_same_v<T, LogoutResponse>) {
          update_sequence(p, true);
          return handle(p, detail);
        } else if constexpr (std::is_same_v<T, AsyncMessage>) {
          update_sequence(p, true);
          return handle(p, data, detail);
        } else if constexpr (std::is_same_v<T, Reject>) {
          update_sequence(p, true);
          return handle(p, data, detail);
        } else if constexpr (std::is_same_v<T, TaskManagementResponse>) {
          update_sequence(p, true);
          return handle(p, detail);
        } else if constexpr (std::is_same_v<T, TextResponse>) {
          update_sequence(p, true);
          return {};  // not sent by this initiator in full feature phase; nothing waits
        } else {
          detail = "Login Response in full feature phase";
          return errc::protocol_violation;
        }
      },
      pdu);
  // Completions run after the PDU is fully processed so callbacks can submit new work.
  in_pdu_ = false;
  drain();
  pump();
  return ec;
}

void Session::drain() {
  if (in_pdu_ || draining_) return;  // the running drain picks up what callbacks add
  draining_ = true;
  while (!to_complete_.empty() || !unsent_.empty() || !tmf_done_.empty()) {
    completing_.swap(to_complete_);
    for (uint32_t index : completing_) maybe_release(index);
    completing_.clear();
    unsent_batch_.swap(unsent_);
    for (ScsiTask* task : unsent_batch_)
      if (task->on_complete) task->on_complete(*task);
    unsent_batch_.clear();
    tmf_done_batch_.swap(tmf_done_);
    for (auto& [handler, result] : tmf_done_batch_) handler(result);
    tmf_done_batch_.clear();
  }
  draining_ = false;
}

std::error_code Session::handle(const DataIn& p, std::span<const std::byte> data,
                                std::string& detail) {
  Slot* slot = find_slot(p.itt);
  if (slot == nullptr && was_aborted(p.itt)) return {};  // late: the task ended by TMF
  if (slot == nullptr)
    return violation(detail, "Data-In for unknown ITT " + std::to_string(p.itt.value));
  ScsiTask& task = *slot->task;
  if (task.direction != DataDirection::read && p.data_segment_length > 0)
    return violation(detail, "Data-In for a command that reads nothing");
  if (p.data_sn != slot->next_data_sn)  // §11.7.5: DataSN counts Data-In PDUs of the command
    return violation(detail, "Data-In DataSN " + std::to_string(p.data_sn.value()) + ", expected " +
                                 std::to_string(slot->next_data_sn.value()));
  slot->next_data_sn = slot->next_data_sn.next();
  if (p.data_segment_length > 0) {
    const auto& buffer = task.read_buffer;
    if (p.buffer_offset > buffer.size() || p.data_segment_length > buffer.size() - p.buffer_offset)
      return violation(detail, "Data-In beyond the expected data transfer length");
    // The reader placed the payload already unless the owner fed it from elsewhere.
    if (!slot->data_discarded && data.data() != buffer.data() + p.buffer_offset)
      std::memcpy(buffer.data() + p.buffer_offset, data.data(), p.data_segment_length);
    slot->data_received += p.data_segment_length;
  }
  if (p.has_status) {  // §11.7.5: status in the final Data-In replaces the SCSI Response
    task.response = 0;
    task.status = p.status;
    task.residual_count = p.residual_count;
    task.residual_overflow = p.residual_overflow;
    task.residual_underflow = p.residual_underflow;
    finish(p.itt.value & slot_mask);
  }
  return {};
}

std::error_code Session::handle(const ScsiResponse& p, std::span<const std::byte> data,
                                std::string& detail) {
  Slot* slot = find_slot(p.itt);
  if (slot == nullptr && was_aborted(p.itt)) return {};  // late: the task ended by TMF
  if (slot == nullptr)
    return violation(detail, "SCSI Response for unknown ITT " + std::to_string(p.itt.value));
  ScsiTask& task = *slot->task;
  task.response = p.response;
  task.status = p.status;
  task.residual_count = p.residual_count;
  task.residual_overflow = p.residual_overflow;
  task.residual_underflow = p.residual_underflow;
  task.sense.clear();
  // §11.4.7.2: the data segment starts with a 2-byte SenseLength, then the sense data.
  if (data.size() >= 2) {
    const size_t sense_length = std::min<size_t>(common::load_be16(data, 0), data.size() - 2);
    task.sense.assign(data.begin() + 2, data.begin() + 2 + static_cast<ptrdiff_t>(sense_length));
  }
  if (p.response != static_cast<uint8_t>(ScsiResponseCode::command_completed)) {
    task.transport_error = errc::task_aborted;
    task.transport_detail = "target failure (iSCSI response " + std::to_string(p.response) + ")";
  }
  finish(p.itt.value & slot_mask);
  return {};
}

std::error_code Session::handle(const ReadyToTransfer& p, std::string& detail) {
  Slot* slot = find_slot(p.itt);
  // A late R2T for a task ended by TMF gets no Data-Out: its buffer is the caller's again.
  if (slot == nullptr && was_aborted(p.itt)) return {};
  if (slot == nullptr)
    return violation(detail, "R2T for unknown ITT " + std::to_string(p.itt.value));
  ScsiTask& task = *slot->task;
  if (task.direction != DataDirection::write) return violation(detail, "R2T for a read command");
  // §11.8.4 and §13.13: the requested range lies within the write and within MaxBurstLength.
  const uint64_t end = uint64_t{p.buffer_offset} + p.desired_data_transfer_length;
  if (end > task.write_buffer.size())
    return violation(detail, "R2T beyond the expected data transfer length");
  if (p.desired_data_transfer_length > params_.max_burst_length)
    return violation(detail, "R2T larger than MaxBurstLength");
  queue_data_out(p.itt.value & slot_mask, p.ttt, p.buffer_offset, p.desired_data_transfer_length,
                 true);
  if (on_output) on_output();
  return {};
}

std::error_code Session::handle(const NopIn& p, std::span<const std::byte> data,
                                std::string& detail) {
  if (p.itt.value != Itt::reserved) {  // the answer to our ping
    if (!ping_itt_ || *ping_itt_ != p.itt)
      return violation(detail, "NOP-In for a ping we did not send");
    ping_itt_.reset();
    if (on_event) on_event({SessionEvent::Kind::nop_in_answered, {}, {}, {}});
    return {};
  }
  if (p.ttt.is_reserved()) return {};  // §11.19.2: a StatSN/window update, no answer wanted
  // §11.18: the target wants an answer: NOP-Out with its TTT, ITT reserved, as an immediate
  // command, echoing the ping data.
  NopOut nop;
  nop.immediate = true;
  nop.lun = p.lun;
  nop.itt = Itt{Itt::reserved};
  nop.ttt = p.ttt;
  nop.cmd_sn = cmd_sn_;
  nop.exp_stat_sn = exp_stat_sn_;
  nop.data_segment_length = static_cast<uint32_t>(data.size());
  std::vector<std::byte> echo(data.begin(), data.end());
  OutFrame frame = make_frame(nop, echo);
  frame.owned = std::move(echo);  // a moved vector keeps its storage, so frame.data stays valid
  queue_frame(std::move(frame));
  if (on_output) on_output();
  return {};
}

std::error_code Session::handle(const LogoutResponse& p, std::string& detail) {
  if (!logout_itt_ || p.itt != *logout_itt_)
    return violation(detail, "Logout Response without a Logout Request");
  logout_done_ = true;
  if (p.response != 0) {
    detail = "target answered the logout with response " + std::to_string(p.response);
    return errc::logout_failed;
  }
  return {};
}

std::error_code Session::handle(const TaskManagementResponse& p, std::string& detail) {
  auto it =
      std::find_if(tmfs_.begin(), tmfs_.end(), [&](const PendingTmf& t) { return t.itt == p.itt; });
  if (it == tmfs_.end())
    return violation(detail, "Task Management Response for ITT " + std::to_string(p.itt.value) +
                                 ", which names no request of ours");
  PendingTmf tmf = std::move(*it);
  tmfs_.erase(it);
  const std::string what =
      std::string(function_name(tmf.function)) + ": " + tmf_response_name(p.response);
  return conclude_tmf(std::move(tmf), p.response, what, detail);
}

std::error_code Session::handle(const AsyncMessage& p, std::span<const std::byte> data,
                                std::string& detail) {
  SessionEvent event{SessionEvent::Kind::async_message, p, {}, {}};
  const auto time_text = [&] {
    return "Time2Wait " + std::to_string(p.parameter2) + " s, Time2Retain " +
           std::to_string(p.parameter3) + " s";
  };
  switch (static_cast<AsyncEvent>(p.event)) {
    case AsyncEvent::scsi_async_event:
      // §11.9.4: SenseLength, the sense data, then (ignored) iSCSI event data.
      event.kind = SessionEvent::Kind::scsi_async_event;
      if (data.size() >= 2) {
        const size_t n = std::min<size_t>(common::load_be16(data, 0), data.size() - 2);
        event.sense.assign(data.begin() + 2, data.begin() + 2 + static_cast<ptrdiff_t>(n));
      }
      event.detail = "SCSI asynchronous event on LUN " + lun_text(p.lun);
      break;
    case AsyncEvent::logout_requested:
      event.kind = SessionEvent::Kind::logout_requested;
      event.detail = "target requested logout within " + std::to_string(p.parameter3) + " s";
      break;
    case AsyncEvent::negotiation_requested:
      event.kind = SessionEvent::Kind::negotiation_requested;
      event.detail = "target requested parameter negotiation (asynchronous event 4)";
      break;
    case AsyncEvent::connection_dropped:
      event.detail = "target is dropping the connection (asynchronous event 2: CID " +
                     std::to_string(p.parameter1) + ", " + time_text() + ")";
      break;
    case AsyncEvent::session_dropped:
      event.detail =
          "target is dropping every connection of the session (asynchronous event "
          "3: " +
          time_text() + ")";
      break;
    default:
      event.detail = "asynchronous event " + std::to_string(p.event);
      break;
  }
  if (on_event) on_event(event);
  if (p.event == static_cast<uint8_t>(AsyncEvent::connection_dropped) ||
      p.event == static_cast<uint8_t>(AsyncEvent::session_dropped)) {
    detail = event.detail;
    return errc::target_dropped_connection;
  }
  return {};
}

std::error_code Session::handle(const Reject& p, std::span<const std::byte> data,
                                std::string& detail) {
  // §11.17: the data segment holds the rejected PDU's header; fail the task it belongs to.
  static constexpr char hex[] = "0123456789abcdef";
  std::string what = std::string("target rejected a PDU (reason 0x") + hex[p.reason >> 4] +
                     hex[p.reason & 0xf] + ")";
  if (on_event) on_event({SessionEvent::Kind::reject, {}, what, {}});
  if (data.size() >= bhs_size) {
    const Itt itt{common::load_be32(data, 16)};
    if (Slot* slot = find_slot(itt)) {
      // §11.17.1: a command refused while the target waits for our logout never ran.
      const bool not_run = p.reason == static_cast<uint8_t>(RejectReason::waiting_for_logout);
      slot->task->transport_error = not_run ? errc::task_not_sent : errc::reject_received;
      slot->task->transport_detail = what;
      finish(itt.value & slot_mask);
      return {};
    }
    if (was_aborted(itt)) return {};
    auto tmf =
        std::find_if(tmfs_.begin(), tmfs_.end(), [&](const PendingTmf& t) { return t.itt == itt; });
    if (tmf != tmfs_.end()) {  // a rejected request is as good as "function rejected"
      PendingTmf rejected = std::move(*tmf);
      tmfs_.erase(tmf);
      const std::string text = std::string(function_name(rejected.function)) + ": " + what;
      return conclude_tmf(std::move(rejected),
                          static_cast<uint8_t>(TaskManagementResponseCode::function_rejected), text,
                          detail);
    }
  }
  if (p.reason == static_cast<uint8_t>(RejectReason::data_digest_error)) return {};
  detail = what;
  return errc::reject_received;
}

// ---------------------------------------------------------------- completion

void Session::finish(uint32_t index) {
  Slot& slot = slots_[index];
  if (slot.completed) return;
  slot.completed = true;
  to_complete_.push_back(index);
}

// A finished task is handed back once no queued frame still borrows its buffer.
void Session::maybe_release(uint32_t index) {
  Slot& slot = slots_[index];
  if (!slot.completed || slot.frames_pending > 0 || slot.task == nullptr) return;
  // Still queued frames (unsent Data-Out) are dropped once the result is known.
  ScsiTask* task = slot.task;
  slot.task = nullptr;
  slot.completed = false;
  free_slots_.push_back(index);
  --in_flight_;
  if (task->on_complete) task->on_complete(*task);
}

void Session::fail_all(std::error_code ec, const std::string& detail) {
  std::vector<ScsiTask*> tasks;
  for (auto& slot : slots_) {
    if (slot.task != nullptr) {
      // A task whose result is known (it only waited for its frames) keeps that result.
      if (!slot.completed) {
        slot.task->transport_error = ec;
        slot.task->transport_detail = detail;
      }
      tasks.push_back(slot.task);
    }
    slot.task = nullptr;
    slot.completed = false;
    slot.frames_pending = 0;
    slot.abort_pending = false;
    slot.timed_out = false;
  }
  for (ScsiTask* t : waiting_) {
    t->transport_error = errc::task_not_sent;
    t->transport_detail = "not sent: " + detail;
    tasks.push_back(t);
  }
  tasks.insert(tasks.end(), unsent_.begin(), unsent_.end());
  waiting_.clear();
  unsent_.clear();
  // Answers already in hand are delivered as they were; the rest get the transport error.
  std::vector<std::pair<TmfHandler, TmfResult>> handlers;
  handlers.swap(tmf_done_);
  for (auto& tmf : tmfs_)
    if (tmf.handler) handlers.push_back({std::move(tmf.handler), TmfResult{ec, detail, 0}});
  tmfs_.clear();
  output_.clear();
  to_complete_.clear();
  free_slots_.clear();
  for (uint32_t i = static_cast<uint32_t>(slots_.size()); i-- > 0;) free_slots_.push_back(i);
  in_flight_ = 0;
  ping_itt_.reset();
  for (ScsiTask* t : tasks)
    if (t->on_complete) t->on_complete(*t);
  for (auto& [handler, result] : handlers) handler(result);
}

}  // namespace iscsi
