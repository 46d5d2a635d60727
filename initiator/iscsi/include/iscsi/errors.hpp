// Error categories of the iSCSI layer (docs/architecture.md, "Errors").
// Two categories: protocol/transport faults this initiator detects, and the Login Response status
// (RFC 7143 §11.13.5) a target returns. Human-readable detail travels beside the code.
#pragma once

#include <cstdint>
#include <string>
#include <system_error>

namespace iscsi {

enum class errc {
  // Framing and PDU decoding (RFC 7143 §11)
  malformed_pdu = 1,
  unknown_opcode,
  data_segment_too_long,   // longer than the MaxRecvDataSegmentLength we declared
  header_digest_mismatch,  // §11.1: drop the connection
  data_digest_mismatch,
  // Text keys and negotiation (§6, §13)
  text_malformed,       // missing '=', unterminated pair, empty key
  text_key_too_long,    // > 63 bytes (§6.1)
  text_value_too_long,  // > 255 bytes, or 8192 for the long-value keys (§6.1)
  negotiation_failed,   // the target answered outside the key's rule (§6.2), or Reject
  // Authentication (§12.1)
  chap_unsupported_algorithm,
  chap_malformed,                     // bad CHAP_I/CHAP_C/CHAP_R encoding
  chap_target_authentication_failed,  // mutual CHAP: the target's CHAP_R is wrong
  chap_reflected_challenge,           // §12.1.3: the target sent back our own challenge
  // Login sequence (§6.3, §11.12/13)
  login_protocol_error,  // stage, ITT, ISID or version rule broken by the target
  login_redirect_loop,
  login_timeout,
  // Full feature phase
  unexpected_itt,      // a response for a task we do not have
  protocol_violation,  // e.g. Data-In beyond the buffer, R2T out of range
  reject_received,     // §11.17
  connection_closed,
  connection_timeout,  // NOP-Out ping not answered (noop_out_timeout)
  command_timeout,
  task_aborted,    // aborted by us or the target; the command did not complete
  session_failed,  // the connection went away with this command outstanding
  logout_failed,
  // Outcomes the layer above acts on (appended: values above stay stable)
  task_aborted_proven,        // ended by ABORT TASK / LOGICAL UNIT RESET that the target confirmed
                              // (§11.6.1 "function complete" / "task does not exist"): it will
                              // never execute at the target, so even a write may be re-issued
  task_not_sent,              // never left the initiator (CmdSN window, logout, path not ready):
                              // re-issue anywhere at once
  target_requested_logout,    // §11.9.1 AsyncEvent 1: the path logged out at the target's request
  target_dropped_connection,  // §11.9.1 AsyncEvent 2/3: the target is dropping the connection
};

const std::error_category& category();
inline std::error_code make_error_code(errc e) {
  return {static_cast<int>(e), category()};
}

// Login Response Status-Class / Status-Detail (RFC 7143 §11.13.5) as one error code:
// value = class << 8 | detail, so "02 01" (authentication failure) is 0x0201.
const std::error_category& login_status_category();
inline std::error_code make_login_status_error(uint8_t status_class, uint8_t status_detail) {
  return {(status_class << 8) | status_detail, login_status_category()};
}

}  // namespace iscsi

template <>
struct std::is_error_code_enum<iscsi::errc> : std::true_type {};
