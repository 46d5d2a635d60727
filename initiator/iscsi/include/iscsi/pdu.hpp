// iSCSI PDUs (RFC 7143 §11): one typed struct per PDU, decoded once from the 48-byte Basic
// Header Segment. pdu.cpp is the only place that knows the byte offsets.
//
// Encoding produces the BHS only; the data segment (and its padding and digests) is framed by
// the caller, so payloads can be sent from the caller's own buffers in one gathered write.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <system_error>
#include <variant>

#include "iscsi/types.hpp"

namespace iscsi {

inline constexpr size_t bhs_size = 48;
inline constexpr size_t digest_size = 4;
using Bhs = std::array<std::byte, bhs_size>;

// §11.2.1.2
enum class Opcode : uint8_t {
  nop_out = 0x00,
  scsi_command = 0x01,
  task_management_request = 0x02,
  login_request = 0x03,
  text_request = 0x04,
  data_out = 0x05,
  logout_request = 0x06,
  snack_request = 0x10,
  nop_in = 0x20,
  scsi_response = 0x21,
  task_management_response = 0x22,
  login_response = 0x23,
  text_response = 0x24,
  data_in = 0x25,
  logout_response = 0x26,
  r2t = 0x31,
  async_message = 0x32,
  reject = 0x3f,
};

const char* opcode_name(Opcode op);

// Padding of a data segment to a 4-byte boundary (§11.2.3).
constexpr uint32_t padded_length(uint32_t n) {
  return (n + 3u) & ~3u;
}

// Fields every PDU carries (§11.2.1). `data_segment_length` excludes padding.
struct PduCommon {
  bool immediate = false;
  uint8_t total_ahs_length = 0;  // in 4-byte words
  uint32_t data_segment_length = 0;
};

// ---------------------------------------------------------------- initiator -> target

// §11.18
struct NopOut : PduCommon {
  Lun lun;
  Itt itt{Itt::reserved};
  Ttt ttt;  // echoes a NOP-In's TTT when answering one; else reserved
  CmdSN cmd_sn;
  StatSN exp_stat_sn;
};

enum class TaskAttribute : uint8_t {
  untagged = 0,
  simple = 1,
  ordered = 2,
  head_of_queue = 3,
  aca = 4
};

// §11.3
struct ScsiCommand : PduCommon {
  bool final = true;  // no unsolicited Data-Out follows
  bool read = false;
  bool write = false;
  TaskAttribute attribute = TaskAttribute::simple;
  Lun lun;
  Itt itt;
  uint32_t expected_data_transfer_length = 0;
  CmdSN cmd_sn;
  StatSN exp_stat_sn;
  std::array<std::byte, 16> cdb{};
};

// §11.5.1
enum class TaskFunction : uint8_t {
  abort_task = 1,
  abort_task_set = 2,
  clear_aca = 3,
  clear_task_set = 4,
  logical_unit_reset = 5,
  target_warm_reset = 6,
  target_cold_reset = 7,
  task_reassign = 8,
};

// §11.5
struct TaskManagementRequest : PduCommon {
  TaskFunction function = TaskFunction::abort_task;
  Lun lun;
  Itt itt;
  Itt referenced_task_tag{Itt::reserved};
  CmdSN cmd_sn;
  StatSN exp_stat_sn;
  CmdSN ref_cmd_sn;
  DataSN exp_data_sn;
};

// Login stages (§11.12.3)
enum class LoginStage : uint8_t {
  security_negotiation = 0,
  operational_negotiation = 1,
  full_feature_phase = 3,
};

// §11.12
struct LoginRequest : PduCommon {
  bool transit = false;
  bool continue_ = false;
  LoginStage current_stage = LoginStage::security_negotiation;
  LoginStage next_stage = LoginStage::security_negotiation;
  uint8_t version_max = 0;
  uint8_t version_min = 0;
  Isid isid;
  Tsih tsih;
  Itt itt;
  uint16_t cid = 0;
  CmdSN cmd_sn;
  StatSN exp_stat_sn;
};

// §11.10
struct TextRequest : PduCommon {
  bool final = true;
  bool continue_ = false;
  Lun lun;
  Itt itt;
  Ttt ttt;
  CmdSN cmd_sn;
  StatSN exp_stat_sn;
};

// §11.7.1
struct DataOut : PduCommon {
  bool final = false;
  Lun lun;
  Itt itt;
  Ttt ttt;
  StatSN exp_stat_sn;
  DataSN data_sn;
  uint32_t buffer_offset = 0;
};

// §11.14.1
enum class LogoutReason : uint8_t {
  close_session = 0,
  close_connection = 1,
  remove_connection_for_recovery = 2,
};

// §11.14
struct LogoutRequest : PduCommon {
  LogoutReason reason = LogoutReason::close_session;
  Itt itt;
  uint16_t cid = 0;
  CmdSN cmd_sn;
  StatSN exp_stat_sn;
};

// §11.16
struct SnackRequest : PduCommon {
  uint8_t type = 0;
  Lun lun;
  Itt itt;
  Ttt ttt;
  StatSN exp_stat_sn;
  uint32_t beg_run = 0;
  uint32_t run_length = 0;
};

// ---------------------------------------------------------------- target -> initiator

// Sequence-number fields every target PDU but Data-In-without-status carries (§11.2.1.9 ff.).
struct TargetSequence {
  StatSN stat_sn;
  CmdSN exp_cmd_sn;
  CmdSN max_cmd_sn;
};

// §11.19
struct NopIn : PduCommon, TargetSequence {
  Lun lun;
  Itt itt{Itt::reserved};
  Ttt ttt;
};

// §11.4.2
enum class ScsiResponseCode : uint8_t { command_completed = 0x00, target_failure = 0x01 };

// §11.4
struct ScsiResponse : PduCommon, TargetSequence {
  bool bidi_overflow = false;
  bool bidi_underflow = false;
  bool residual_overflow = false;
  bool residual_underflow = false;
  uint8_t response = 0;
  uint8_t status = 0;
  Itt itt;
  uint32_t snack_tag = 0;
  DataSN exp_data_sn;
  uint32_t bidi_read_residual_count = 0;
  uint32_t residual_count = 0;
};

// §11.6.1
enum class TaskManagementResponseCode : uint8_t {
  function_complete = 0,
  task_does_not_exist = 1,
  lun_does_not_exist = 2,
  task_still_allegiant = 3,
  reassignment_not_supported = 4,
  function_not_supported = 5,
  authorization_failed = 6,
  function_rejected = 255,
};
// "function complete", "function rejected", ... for logs; "response N" for an unknown code.
std::string tmf_response_name(uint8_t response);

// §11.6
struct TaskManagementResponse : PduCommon, TargetSequence {
  uint8_t response = 0;
  Itt itt;
};

// §11.13
struct LoginResponse : PduCommon, TargetSequence {
  bool transit = false;
  bool continue_ = false;
  LoginStage current_stage = LoginStage::security_negotiation;
  LoginStage next_stage = LoginStage::security_negotiation;
  uint8_t version_max = 0;
  uint8_t version_active = 0;
  Isid isid;
  Tsih tsih;
  Itt itt;
  uint8_t status_class = 0;
  uint8_t status_detail = 0;
};

// §11.11
struct TextResponse : PduCommon, TargetSequence {
  bool final = false;
  bool continue_ = false;
  Lun lun;
  Itt itt;
  Ttt ttt;
};

// §11.7 (Data-In). StatSN is meaningful only when has_status is set.
struct DataIn : PduCommon, TargetSequence {
  bool final = false;
  bool acknowledge = false;
  bool residual_overflow = false;
  bool residual_underflow = false;
  bool has_status = false;
  uint8_t status = 0;
  Lun lun;
  Itt itt;
  Ttt ttt;
  DataSN data_sn;
  uint32_t buffer_offset = 0;
  uint32_t residual_count = 0;
};

// §11.15
struct LogoutResponse : PduCommon, TargetSequence {
  uint8_t response = 0;  // 0 closed, 1 CID not found, 2 recovery not supported, 3 cleanup failed
  Itt itt;
  uint16_t time2wait = 0;
  uint16_t time2retain = 0;
};

// §11.8
struct ReadyToTransfer : PduCommon, TargetSequence {
  Lun lun;
  Itt itt;
  Ttt ttt;
  R2TSN r2t_sn;
  uint32_t buffer_offset = 0;
  uint32_t desired_data_transfer_length = 0;
};

// §11.9.1
enum class AsyncEvent : uint8_t {
  scsi_async_event = 0,
  logout_requested = 1,
  connection_dropped = 2,
  session_dropped = 3,
  negotiation_requested = 4,
  task_termination = 5,
  vendor_specific = 255,
};

// §11.9
struct AsyncMessage : PduCommon, TargetSequence {
  Lun lun;
  uint8_t event = 0;
  uint8_t vendor_code = 0;
  uint16_t parameter1 = 0;
  uint16_t parameter2 = 0;
  uint16_t parameter3 = 0;
};

// §11.17.1
enum class RejectReason : uint8_t {
  data_digest_error = 0x02,
  snack_reject = 0x03,
  protocol_error = 0x04,
  command_not_supported = 0x05,
  immediate_command_reject = 0x06,
  task_in_progress = 0x07,
  invalid_data_ack = 0x08,
  invalid_pdu_field = 0x09,
  long_operation_reject = 0x0a,
  deprecated = 0x0b,
  waiting_for_logout = 0x0c,
};

// §11.17. The data segment carries the rejected PDU's header.
struct Reject : PduCommon, TargetSequence {
  uint8_t reason = 0;
  DataSN data_sn;  // DataSN/R2TSN of a rejected SNACK
};

using InitiatorPdu = std::variant<NopOut, ScsiCommand, TaskManagementRequest, LoginRequest,
                                  TextRequest, DataOut, LogoutRequest, SnackRequest>;
using TargetPdu =
    std::variant<NopIn, ScsiResponse, TaskManagementResponse, LoginResponse, TextResponse, DataIn,
                 LogoutResponse, ReadyToTransfer, AsyncMessage, Reject>;

// Encode the BHS of any PDU (initiator PDUs for us; target PDUs for the scripted fake target
// in tests). total_ahs_length and data_segment_length come from the struct.
void encode(const NopOut&, Bhs&);
void encode(const ScsiCommand&, Bhs&);
void encode(const TaskManagementRequest&, Bhs&);
void encode(const LoginRequest&, Bhs&);
void encode(const TextRequest&, Bhs&);
void encode(const DataOut&, Bhs&);
void encode(const LogoutRequest&, Bhs&);
void encode(const SnackRequest&, Bhs&);
void encode(const NopIn&, Bhs&);
void encode(const ScsiResponse&, Bhs&);
void encode(const TaskManagementResponse&, Bhs&);
void encode(const LoginResponse&, Bhs&);
void encode(const TextResponse&, Bhs&);
void encode(const DataIn&, Bhs&);
void encode(const LogoutResponse&, Bhs&);
void encode(const ReadyToTransfer&, Bhs&);
void encode(const AsyncMessage&, Bhs&);
void encode(const Reject&, Bhs&);

inline Bhs encode_bhs(const auto& pdu) {
  Bhs bhs{};
  encode(pdu, bhs);
  return bhs;
}

// Decode a BHS the target sent. Unknown or initiator-only opcodes and reserved values that
// would change meaning are errors (errc::unknown_opcode / malformed_pdu); `detail` says which.
std::error_code decode_target_pdu(std::span<const std::byte, bhs_size> bhs, TargetPdu& out,
                                  std::string& detail);
// Decode a BHS an initiator sent (the fake target in tests, and the fuzzers).
std::error_code decode_initiator_pdu(std::span<const std::byte, bhs_size> bhs, InitiatorPdu& out,
                                     std::string& detail);

// Opcode byte and lengths, readable before the full PDU is typed.
Opcode bhs_opcode(std::span<const std::byte, bhs_size> bhs);
uint8_t bhs_total_ahs_length(std::span<const std::byte, bhs_size> bhs);
uint32_t bhs_data_segment_length(std::span<const std::byte, bhs_size> bhs);

// CRC32C over data as iSCSI digests use it (§13.1, RFC 3720 Appendix B.4 test vectors),
// continued from `crc` so that a segment and its padding can be covered in pieces.
uint32_t crc32c(std::span<const std::byte> data, uint32_t crc = 0);
// Digest as transmitted: the CRC's least significant byte first.
std::array<std::byte, digest_size> digest_bytes(uint32_t crc);
uint32_t digest_value(std::span<const std::byte, digest_size> wire);

// PDU-API-READY
}  // namespace iscsi
