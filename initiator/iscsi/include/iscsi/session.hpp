// Full Feature Phase of one iSCSI connection (RFC 7143 §3.2.4), without I/O.
//
// The owner (an Asio driver, or a test script) feeds received PDUs to on_pdu(), takes frames to
// send from output(), and reports them written with frames_written(). Tasks complete through
// their own callback. One connection per session (MaxConnections=1), ErrorRecoveryLevel 0.
//
// Task management (RFC 7143 §11.5/§11.6) and command timeouts live here too, so the whole
// escalation (ABORT TASK, then LOGICAL UNIT RESET, then give up on the connection) runs in
// scripted tests against a fake clock; the driver only calls check_timeouts() now and then.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <common/stable_queue.hpp>

#include "iscsi/negotiation.hpp"
#include "iscsi/pdu.hpp"
#include "iscsi/pdu_reader.hpp"
#include "iscsi/types.hpp"

namespace iscsi {

enum class DataDirection : uint8_t { none, read, write };

// One SCSI command as the layer above sees it. The submitter owns it (and its buffers) until
// on_complete has run.
struct ScsiTask {
  // ---- request
  Lun lun;
  std::array<std::byte, 16> cdb{};
  DataDirection direction = DataDirection::none;
  std::span<std::byte> read_buffer;         // Data-In lands here (expected length = size)
  std::span<const std::byte> write_buffer;  // Data-Out comes from here

  // ---- result
  // Set when the command did not complete at the target as far as we know (connection lost,
  // aborted, rejected). Then status/sense are meaningless.
  std::error_code transport_error;
  std::string transport_detail;
  uint8_t response = 0;          // §11.4.3 iSCSI Response: 0 = completed at target
  uint8_t status = 0;            // SAM status byte
  std::vector<std::byte> sense;  // sense data without the 2-byte SenseLength (§11.4.7.2)
  uint32_t residual_count = 0;
  bool residual_underflow = false;
  bool residual_overflow = false;

  std::function<void(ScsiTask&)> on_complete;

  uint32_t expected_length() const {
    return static_cast<uint32_t>(direction == DataDirection::read    ? read_buffer.size()
                                 : direction == DataDirection::write ? write_buffer.size()
                                                                     : 0);
  }
};

// A PDU ready to send: header (BHS + optional header digest), then a data segment that is
// either borrowed from a task's write buffer or owned by the frame, zero padding, and an
// optional data digest. Frames keep their addresses while queued in output() (a StableQueue), so a
// driver can build a gathered write straight from them.
struct OutFrame {
  std::array<std::byte, bhs_size + digest_size> header{};
  uint8_t header_size = bhs_size;
  std::span<const std::byte> data;
  std::vector<std::byte> owned;
  uint8_t padding = 0;
  bool has_data_digest = false;
  std::array<std::byte, digest_size> data_digest{};
  uint32_t task_slot = no_task;  // the task whose buffer `data` borrows from

  static constexpr uint32_t no_task = 0xffffffffu;
};

using SessionClock = std::chrono::steady_clock;

struct SessionParams {
  OperationalParams negotiated;
  uint16_t cid = 0;
  CmdSN cmd_sn;        // next CmdSN to use, from the login exchange
  StatSN exp_stat_sn;  // StatSN of the last login response + 1
  CmdSN exp_cmd_sn;
  CmdSN max_cmd_sn;
  // Upper bound on tasks in flight at once (the task table's size).
  uint32_t max_tasks = 256;
  // Stamps commands as they are sent and judges timeouts; tests pass a fake clock.
  std::function<SessionClock::time_point()> clock;  // empty: steady_clock::now
};

// What the session reports to its owner besides task completions.
struct SessionEvent {
  enum class Kind {
    async_message,
    reject,
    logout_requested,
    negotiation_requested,  // §11.9.1 AsyncEvent 4
    nop_in_answered,
    scsi_async_event
  };
  Kind kind;
  AsyncMessage async;  // for async_message / logout_requested / scsi_async_event
  std::string detail;
  // scsi_async_event (§11.9.1 AsyncEvent 0): the sense data of the event, without the 2-byte
  // SenseLength (§11.9.4), e.g. a unit attention CAPACITY DATA HAS CHANGED (2A/09) for async.lun.
  std::vector<std::byte> sense;
};

// The answer to a task management request (§11.6).
struct TmfResult {
  // Set when no answer will come (the connection failed first); `response` is then meaningless.
  std::error_code error;
  std::string detail;
  uint8_t response = 0;  // §11.6.1, see TaskManagementResponseCode

  bool answered() const { return !error; }
};
using TmfHandler = std::function<void(const TmfResult&)>;

// What abort_task() did.
enum class AbortStart {
  sent,             // ABORT TASK is queued; the handler runs with the answer
  withdrawn,        // the task was still waiting for the CmdSN window: taken back and completed
                    // with errc::task_not_sent; no request, the handler is not called
  not_outstanding,  // not a task of this session, or its result is already known
  refused,          // an ABORT TASK for it is already outstanding, or the logout was sent
};

// Command timeouts (the driver's PathConfig::command_timeout). Zero turns either off.
struct TimeoutPolicy {
  // A command outstanding this long gets ABORT TASK.
  std::chrono::milliseconds command_timeout{0};
  // A task management request unanswered this long escalates: ABORT TASK to LOGICAL UNIT
  // RESET, LOGICAL UNIT RESET to dropping the connection.
  std::chrono::milliseconds tmf_timeout{0};
};

class Session : private DataPlacement {
 public:
  explicit Session(const SessionParams& params);
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // ---- the layer above
  // Queues the task; it is sent as soon as the CmdSN window allows (never past MaxCmdSN). Once
  // a logout was requested the task completes with errc::task_not_sent instead (at once, or
  // when on_pdu returns if called from one of its callbacks).
  void submit(ScsiTask& task);

  // Task management (§11.5), sent as immediate commands (I bit, CmdSN not advanced) so a closed
  // CmdSN window does not hold them back. After "function complete" (or, for ABORT TASK, "task
  // does not exist") the referenced tasks are known never to execute at the target (§11.6.1,
  // §11.6.2): each still outstanding completes with errc::task_aborted_proven before the
  // handler runs (or as soon as no queued frame borrows its buffer). Any later Data-In, R2T or
  // SCSI Response for such a task is dropped, never placed into a buffer handed back.
  //
  // ABORT TASK for `task`, with its ITT as Referenced Task Tag and its CmdSN as RefCmdSN.
  AbortStart abort_task(ScsiTask& task, TmfHandler done);
  // LOGICAL UNIT RESET: ends every task of `lun` this session sent before the request. False
  // (and no handler call) once the logout was sent.
  bool reset_lun(Lun lun, TmfHandler done);
  size_t tmfs_outstanding() const { return tmfs_.size(); }

  // The owner no longer wants a read's data: another copy of the read answered first (a hedged
  // read) and the buffer now holds the reply. From now on the task's Data-In is checked and
  // counted as before but never placed into or copied to its read buffer (place() leaves it to
  // the reader's own buffer); the task still completes as the target answers it, so the path's
  // liveness is judged as before. A task still waiting for the CmdSN window is withdrawn
  // instead (completed with errc::task_not_sent, as abort_task() does). False when the task is
  // not this session's or has completed. The driver must also stop a data segment being placed
  // into the buffer right now (PduReader::unplace()).
  bool discard_data(ScsiTask& task);

  // Command timeouts. check_timeouts() scans every outstanding command and task management
  // request against the policy (one timer for the whole session, not one per task) and sends
  // ABORT TASK / LOGICAL UNIT RESET as due. An ABORT TASK sent for a timeout that the target
  // answers other than "function complete"/"task does not exist" is followed by a LOGICAL UNIT
  // RESET at once. An error (errc::command_timeout, detail naming the timeout) means the
  // escalation ran out: the driver drops the connection. on_pdu returns the same error when a
  // LOGICAL UNIT RESET sent for a timeout is refused.
  void set_timeouts(const TimeoutPolicy& policy) { timeouts_ = policy; }
  std::error_code check_timeouts(std::string& detail);

  // Sends a NOP-Out ping (ITT != reserved) as an immediate command (§11.18); false if one is
  // already outstanding.
  bool send_ping();
  bool ping_outstanding() const { return ping_itt_.has_value(); }
  // Starts a session logout (§11.14): no task is sent any more (those waiting for the CmdSN
  // window complete with errc::task_not_sent), and the Logout Request goes out once every sent
  // task has completed.
  void request_logout();
  // The Logout Request now, as an immediate command, even with tasks still in flight: for a
  // target that asked for the logout within Parameter3 seconds (§11.9.1 AsyncEvent 1). Tasks
  // still in flight are left to fail_all() once the connection is closed.
  void force_logout();
  bool logout_requested() const { return logout_requested_; }
  bool logout_sent() const { return logout_sent_; }
  bool logged_out() const { return logout_done_; }
  size_t tasks_in_flight() const { return in_flight_; }
  size_t tasks_waiting() const { return waiting_.size(); }

  // ---- the driver
  // Every PDU the reader produces. A returned error means the connection is unusable: a
  // protocol violation at ERL 0 (§7.1.4), the target's notice that it drops the connection
  // (errc::target_dropped_connection, §11.9.1 AsyncEvent 2/3), or a refused LOGICAL UNIT RESET
  // after a command timeout (errc::command_timeout). The driver closes it and calls fail_all().
  std::error_code on_pdu(std::span<const std::byte, bhs_size> bhs, std::span<const std::byte> data,
                         std::string& detail);
  DataPlacement& placement() { return *this; }
  ReaderLimits reader_limits() const;

  common::StableQueue<OutFrame>& output() { return output_; }
  // The driver has written the first `count` frames of output(): they are removed, and tasks
  // whose buffers they borrowed may now complete.
  void frames_written(size_t count);
  // Called whenever new frames were queued.
  std::function<void()> on_output;
  std::function<void(const SessionEvent&)> on_event;

  // The connection is gone: every task sent and not yet answered completes with `ec`, every
  // task never sent with errc::task_not_sent, and every task management handler with `ec`.
  void fail_all(std::error_code ec, const std::string& detail);

  CmdSN exp_cmd_sn() const { return exp_cmd_sn_; }
  CmdSN max_cmd_sn() const { return max_cmd_sn_; }
  StatSN exp_stat_sn() const { return exp_stat_sn_; }
  const OperationalParams& params() const { return params_; }

 private:
  struct Slot {
    ScsiTask* task = nullptr;
    uint16_t generation = 0;
    CmdSN cmd_sn;
    SessionClock::time_point sent_at;
    uint32_t data_received = 0;   // Data-In bytes placed
    DataSN next_data_sn;          // expected DataSN of the next Data-In
    uint32_t frames_pending = 0;  // queued frames borrowing the write buffer
    bool completed = false;       // result known; waiting for frames_pending to reach 0
    bool abort_pending = false;   // an ABORT TASK for this occupant is outstanding
    bool timed_out = false;       // the timeout escalation is at work on it
    bool data_discarded = false;  // discard_data(): its Data-In is no longer wanted
    // The generation of the slot's last occupant ended by task management, whose late PDUs
    // are dropped rather than treated as protocol violations.
    std::optional<uint16_t> aborted_generation;
  };

  struct PendingTmf {
    Itt itt;
    TaskFunction function = TaskFunction::abort_task;
    Lun lun;
    CmdSN cmd_sn;       // the request's own CmdSN: tasks sent before it have a smaller one
    uint32_t slot = 0;  // ABORT TASK: the referenced task's slot and generation
    uint16_t generation = 0;
    SessionClock::time_point sent_at;
    TmfHandler handler;
    bool for_timeout = false;  // sent by check_timeouts(): a refusal escalates
    bool escalated = false;    // its own timeout has been acted on
  };

  std::span<std::byte> place(std::span<const std::byte, bhs_size> bhs,
                             uint32_t data_segment_length) override;

  bool window_open() const { return cmd_sn_ <= max_cmd_sn_; }
  // Commands the CmdSN window still admits: MaxCmdSN - CmdSN + 1 (§4.2.2.1), 0 when closed.
  uint32_t window_room() const {
    return window_open() ? max_cmd_sn_.distance_from(cmd_sn_) + 1 : 0;
  }
  bool hold_for_batch() const;
  bool lun_reset_outstanding() const;
  void pump();
  void send_command(uint32_t slot_index);
  void queue_data_out(uint32_t slot_index, Ttt ttt, uint32_t offset, uint32_t length,
                      bool final_on_last);
  void queue_frame(OutFrame&& frame);
  OutFrame make_frame(const auto& pdu_header, std::span<const std::byte> data);
  void update_sequence(const TargetSequence& seq, bool carries_status);
  Slot* find_slot(Itt itt);
  Itt itt_of(uint32_t slot_index) const;
  void finish(uint32_t slot_index);
  void maybe_release(uint32_t slot_index);
  void maybe_logout();
  void send_logout(bool immediate);
  void withdraw_waiting();
  // Runs the completions and handlers queued meanwhile, unless on_pdu is still working on a PDU.
  void drain();

  bool was_aborted(Itt itt) const;
  bool reset_covers(const Slot& slot) const;
  void send_tmf(TaskFunction function, Lun lun, std::optional<uint32_t> slot_index,
                TmfHandler handler, bool for_timeout);
  void end_by_tmf(uint32_t slot_index, const std::string& detail);
  std::string timeout_text() const;

  std::error_code handle(const DataIn&, std::span<const std::byte> data, std::string& detail);
  std::error_code handle(const ScsiResponse&, std::span<const std::byte> data, std::string& detail);
  std::error_code handle(const ReadyToTransfer&, std::string& detail);
  std::error_code handle(const NopIn&, std::span<const std::byte> data, std::string& detail);
  std::error_code handle(const LogoutResponse&, std::string& detail);
  std::error_code handle(const AsyncMessage&, std::span<const std::byte> data, std::string& detail);
  std::error_code handle(const Reject&, std::span<const std::byte> data, std::string& detail);
  std::error_code handle(const TaskManagementResponse&, std::string& detail);
  std::error_code conclude_tmf(PendingTmf tmf, uint8_t response, const std::string& what,
                               std::string& detail);
  Itt next_special_itt();

  OperationalParams params_;
  uint16_t cid_;
  CmdSN cmd_sn_;
  CmdSN exp_cmd_sn_;
  CmdSN max_cmd_sn_;
  StatSN exp_stat_sn_;

  std::vector<Slot> slots_;
  std::vector<uint32_t> free_slots_;
  std::deque<ScsiTask*> waiting_;
  size_t in_flight_ = 0;
  common::StableQueue<OutFrame> output_;
  std::vector<uint32_t> to_complete_;
  std::vector<uint32_t> completing_;
  // Tasks to complete with errc::task_not_sent, and answered task management requests; each
  // list trades places with its batch while draining, so neither allocates once grown.
  std::vector<ScsiTask*> unsent_;
  std::vector<ScsiTask*> unsent_batch_;
  std::vector<std::pair<TmfHandler, TmfResult>> tmf_done_;
  std::vector<std::pair<TmfHandler, TmfResult>> tmf_done_batch_;
  bool in_pdu_ = false;
  bool draining_ = false;

  std::function<SessionClock::time_point()> clock_;
  TimeoutPolicy timeouts_;
  std::vector<PendingTmf> tmfs_;

  std::optional<Itt> ping_itt_;
  uint32_t next_special_itt_ = 0x80000000u;  // NOP-Out and Logout ITTs, apart from task slots
  bool logout_requested_ = false;
  bool logout_sent_ = false;
  bool logout_done_ = false;
  std::optional<Itt> logout_itt_;
};

}  // namespace iscsi
