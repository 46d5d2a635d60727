#include "iscsi/errors.hpp"

#include <cstdio>

namespace iscsi {
namespace {

class protocol_category : public std::error_category {
 public:
  const char* name() const noexcept override { return "iscsi"; }
  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::malformed_pdu:
        return "malformed PDU";
      case errc::unknown_opcode:
        return "unknown PDU opcode";
      case errc::data_segment_too_long:
        return "data segment longer than MaxRecvDataSegmentLength";
      case errc::header_digest_mismatch:
        return "header digest mismatch";
      case errc::data_digest_mismatch:
        return "data digest mismatch";
      case errc::text_malformed:
        return "malformed text key=value pair";
      case errc::text_key_too_long:
        return "text key longer than 63 bytes";
      case errc::text_value_too_long:
        return "text value too long";
      case errc::negotiation_failed:
        return "parameter negotiation failed";
      case errc::chap_unsupported_algorithm:
        return "no common CHAP algorithm";
      case errc::chap_malformed:
        return "malformed CHAP value";
      case errc::chap_target_authentication_failed:
        return "target failed mutual CHAP authentication";
      case errc::chap_reflected_challenge:
        return "target reflected the initiator's CHAP challenge";
      case errc::login_protocol_error:
        return "login protocol error";
      case errc::login_redirect_loop:
        return "too many login redirections";
      case errc::login_timeout:
        return "login timed out";
      case errc::unexpected_itt:
        return "response for an unknown initiator task tag";
      case errc::protocol_violation:
        return "target violated the iSCSI protocol";
      case errc::reject_received:
        return "target rejected a PDU";
      case errc::connection_closed:
        return "connection closed";
      case errc::connection_timeout:
        return "connection timed out (no answer to NOP-Out)";
      case errc::command_timeout:
        return "command timed out";
      case errc::task_aborted:
        return "task aborted";
      case errc::session_failed:
        return "session failed with the command outstanding";
      case errc::logout_failed:
        return "logout failed";
      case errc::task_aborted_proven:
        return "task aborted by task management (proven not to execute at the target)";
      case errc::task_not_sent:
        return "task never sent to the target";
      case errc::target_requested_logout:
        return "target requested logout";
      case errc::target_dropped_connection:
        return "target dropped the connection";
    }
    return "unknown iscsi error " + std::to_string(value);
  }
  std::error_condition default_error_condition(int value) const noexcept override {
    switch (static_cast<errc>(value)) {
      case errc::login_timeout:
      case errc::connection_timeout:
      case errc::command_timeout:
        return std::errc::timed_out;
      case errc::connection_closed:
      case errc::session_failed:
      case errc::target_requested_logout:
      case errc::target_dropped_connection:
        return std::errc::connection_aborted;
      case errc::task_aborted_proven:
      case errc::task_not_sent:
        return std::errc::operation_canceled;
      default:
        return std::errc::io_error;
    }
  }
};

// RFC 7143 §11.13.5, Status-Class and Status-Detail.
std::string login_status_text(uint8_t cls, uint8_t detail) {
  switch (cls) {
    case 0x00:
      return "success";
    case 0x01:
      switch (detail) {
        case 0x01:
          return "target moved temporarily";
        case 0x02:
          return "target moved permanently";
        default:
          return "redirection";
      }
    case 0x02:
      switch (detail) {
        case 0x00:
          return "initiator error";
        case 0x01:
          return "authentication failure";
        case 0x02:
          return "authorization failure";
        case 0x03:
          return "target not found";
        case 0x04:
          return "target removed";
        case 0x05:
          return "unsupported version";
        case 0x06:
          return "too many connections";
        case 0x07:
          return "missing parameter";
        case 0x08:
          return "can't include in session";
        case 0x09:
          return "session type not supported";
        case 0x0a:
          return "session does not exist";
        case 0x0b:
          return "invalid during login";
        default:
          return "initiator error";
      }
    case 0x03:
      switch (detail) {
        case 0x00:
          return "target error";
        case 0x01:
          return "service unavailable";
        case 0x02:
          return "out of resources";
        default:
          return "target error";
      }
    default:
      return "unknown status class";
  }
}

class login_category_impl : public std::error_category {
 public:
  const char* name() const noexcept override { return "iscsi-login"; }
  std::string message(int value) const override {
    const auto cls = static_cast<uint8_t>(value >> 8);
    const auto detail = static_cast<uint8_t>(value);
    char code[16];
    std::snprintf(code, sizeof code, " (%02x%02x)", cls, detail);
    return login_status_text(cls, detail) + code;
  }
  std::error_condition default_error_condition(int value) const noexcept override {
    switch (value >> 8) {
      case 0x02:
        if ((value & 0xff) == 0x01 || (value & 0xff) == 0x02) return std::errc::permission_denied;
        if ((value & 0xff) == 0x03 || (value & 0xff) == 0x04) return std::errc::no_such_device;
        return std::errc::invalid_argument;
      case 0x03:
        return std::errc::resource_unavailable_try_again;
      default:
        return std::errc::io_error;
    }
  }
};

}  // namespace

const std::error_category& category() {
  static const protocol_category instance;
  return instance;
}

const std::error_category& login_status_category() {
  static const login_category_impl instance;
  return instance;
}

}  // namespace iscsi
