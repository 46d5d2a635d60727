// Full Feature Phase of one iSCSI connection (RFC 7143 §3.2.4), without I/O.
//
// The owner (an Asio driver, or a test script) feeds received PDUs to on_pdu(), takes frames to
// send from output(), and reports them written with frames_written(). Tasks complete through
// their own callback. One connection per session (MaxConnections=1), ErrorRecoveryLevel 0.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <vector>

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
  uint8_t response = 0;  // §11.4.3 iSCSI Response: 0 = completed at target
  uint8_t status = 0;    // SAM status byte
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
// optional data digest. Frames keep their addresses while queued in output() (a deque), so a
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

struct SessionParams {
  OperationalParams negotiated;
  uint16_t cid = 0;
  CmdSN cmd_sn;          // next CmdSN to use, from the login exchange
  StatSN exp_stat_sn;    // StatSN of the last login response + 1
  CmdSN exp_cmd_sn;
  CmdSN max_cmd_sn;
  // Upper bound on tasks in flight at once (the task table's size).
  uint32_t max_tasks = 256;
};

// What the session reports to its owner besides task completions.
struct SessionEvent {
  enum class Kind { async_message, reject, logout_requested, nop_in_answered };
  Kind kind;
  AsyncMessage async;  // for async_message / logout_requested
  std::string detail;
};

class Session : private DataPlacement {
 public:
  explicit Session(const SessionParams& params);
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // ---- the layer above
  // Queues the task; it is sent as soon as the CmdSN window allows (never past MaxCmdSN).
  void submit(ScsiTask& task);
  // Sends a NOP-Out ping (ITT != reserved) as an immediate command (§11.18); false if one is
  // already outstanding.
  bool send_ping();
  bool ping_outstanding() const { return ping_itt_.has_value(); }
  // Starts a session logout (§11.14) once every submitted task has completed.
  void request_logout();
  bool logged_out() const { return logout_done_; }
  size_t tasks_in_flight() const { return in_flight_; }
  size_t tasks_waiting() const { return waiting_.size(); }

  // ---- the driver
  // Every PDU the reader produces. A returned error means the connection is unusable (a
  // protocol violation at ERL 0, §7.1.4): the driver closes it and calls fail_all().
  std::error_code on_pdu(std::span<const std::byte, bhs_size> bhs, std::span<const std::byte> data,
                         std::string& detail);
  DataPlacement& placement() { return *this; }
  ReaderLimits reader_limits() const;

  std::deque<OutFrame>& output() { return output_; }
  // The driver has written the first `count` frames of output(): they are removed, and tasks
  // whose buffers they borrowed may now complete.
  void frames_written(size_t count);
  // Called whenever new frames were queued.
  std::function<void()> on_output;
  std::function<void(const SessionEvent&)> on_event;

  // The connection is gone: every task (sent or waiting) completes with `ec`.
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
    uint32_t data_received = 0;     // Data-In bytes placed
    DataSN next_data_sn;            // expected DataSN of the next Data-In
    uint32_t frames_pending = 0;    // queued frames borrowing the write buffer
    bool completed = false;         // result known; waiting for frames_pending to reach 0
  };

  std::span<std::byte> place(std::span<const std::byte, bhs_size> bhs,
                             uint32_t data_segment_length) override;

  bool window_open() const { return cmd_sn_ <= max_cmd_sn_; }
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

  std::error_code handle(const DataIn&, std::span<const std::byte> data, std::string& detail);
  std::error_code handle(const ScsiResponse&, std::span<const std::byte> data, std::string& detail);
  std::error_code handle(const ReadyToTransfer&, std::string& detail);
  std::error_code handle(const NopIn&, std::span<const std::byte> data, std::string& detail);
  std::error_code handle(const LogoutResponse&, std::string& detail);
  std::error_code handle(const AsyncMessage&, std::span<const std::byte> data, std::string& detail);
  std::error_code handle(const Reject&, std::span<const std::byte> data, std::string& detail);

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
  std::deque<OutFrame> output_;
  std::vector<uint32_t> to_complete_;
  std::vector<uint32_t> completing_;

  std::optional<Itt> ping_itt_;
  uint32_t next_special_itt_ = 0x80000000u;  // NOP-Out and Logout ITTs, apart from task slots
  bool logout_requested_ = false;
  bool logout_sent_ = false;
  bool logout_done_ = false;
  std::optional<Itt> logout_itt_;
};

}  // namespace iscsi
