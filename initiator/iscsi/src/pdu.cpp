// The one place that knows BHS byte offsets (RFC 7143 §11). Offsets below are the RFC's byte
// numbers in each PDU's figure.
#include "iscsi/pdu.hpp"

#include <isa-l/crc.h>

#include <common/bytes.hpp>

#include "iscsi/errors.hpp"

namespace iscsi {
namespace {

using common::load_be16;
using common::load_be24;
using common::load_be32;
using common::load_be64;
using common::load_u8;
using common::store_be16;
using common::store_be24;
using common::store_be32;
using common::store_be64;
using common::store_u8;

using BhsIn = std::span<const std::byte, bhs_size>;

constexpr uint8_t immediate_bit = 0x40;  // byte 0, §11.2.1.1
constexpr uint8_t final_bit = 0x80;      // byte 1

// §11.2.1: byte 0 opcode and I bit, bytes 4-7 TotalAHSLength and DataSegmentLength.
void put_common(Bhs& b, Opcode op, const PduCommon& c) {
  b.fill(std::byte{0});
  store_u8(b, 0, static_cast<uint8_t>(op) | (c.immediate ? immediate_bit : 0));
  store_u8(b, 4, c.total_ahs_length);
  store_be24(b, 5, c.data_segment_length);
}

void get_common(BhsIn b, PduCommon& c) {
  c.immediate = (load_u8(b, 0) & immediate_bit) != 0;
  c.total_ahs_length = load_u8(b, 4);
  c.data_segment_length = load_be24(b, 5);
}

// StatSN, ExpCmdSN, MaxCmdSN at bytes 24, 28, 32 in every target PDU that has them.
void put_sequence(Bhs& b, const TargetSequence& s) {
  store_be32(b, 24, s.stat_sn.value());
  store_be32(b, 28, s.exp_cmd_sn.value());
  store_be32(b, 32, s.max_cmd_sn.value());
}

void get_sequence(BhsIn b, TargetSequence& s) {
  s.stat_sn = StatSN(load_be32(b, 24));
  s.exp_cmd_sn = CmdSN(load_be32(b, 28));
  s.max_cmd_sn = CmdSN(load_be32(b, 32));
}

void put_lun(Bhs& b, Lun lun) {
  store_be64(b, 8, lun.encoded);
}
Lun get_lun(BhsIn b) {
  return Lun{load_be64(b, 8)};
}
void put_itt(Bhs& b, Itt itt) {
  store_be32(b, 16, itt.value);
}
Itt get_itt(BhsIn b) {
  return Itt{load_be32(b, 16)};
}
void put_ttt(Bhs& b, Ttt ttt) {
  store_be32(b, 20, ttt.value);
}
Ttt get_ttt(BhsIn b) {
  return Ttt{load_be32(b, 20)};
}

// Login byte 1 (§11.12.1-4): T C . . CSG(2) NSG(2)
uint8_t login_flags(bool transit, bool cont, LoginStage csg, LoginStage nsg) {
  return (transit ? 0x80 : 0) | (cont ? 0x40 : 0) | (static_cast<uint8_t>(csg) << 2) |
         static_cast<uint8_t>(nsg);
}

bool valid_stage(uint8_t s) {
  return s == 0 || s == 1 || s == 3;
}

void put_isid(Bhs& b, const Isid& isid) {
  for (size_t i = 0; i < isid.bytes.size(); ++i) store_u8(b, 8 + i, isid.bytes[i]);
}

Isid get_isid(BhsIn b) {
  Isid isid;
  for (size_t i = 0; i < isid.bytes.size(); ++i) isid.bytes[i] = load_u8(b, 8 + i);
  return isid;
}

std::error_code malformed(std::string& detail, std::string what) {
  detail = std::move(what);
  return errc::malformed_pdu;
}

}  // namespace

const char* opcode_name(Opcode op) {
  switch (op) {
    case Opcode::nop_out:
      return "NOP-Out";
    case Opcode::scsi_command:
      return "SCSI Command";
    case Opcode::task_management_request:
      return "Task Management Request";
    case Opcode::login_request:
      return "Login Request";
    case Opcode::text_request:
      return "Text Request";
    case Opcode::data_out:
      return "Data-Out";
    case Opcode::logout_request:
      return "Logout Request";
    case Opcode::snack_request:
      return "SNACK Request";
    case Opcode::nop_in:
      return "NOP-In";
    case Opcode::scsi_response:
      return "SCSI Response";
    case Opcode::task_management_response:
      return "Task Management Response";
    case Opcode::login_response:
      return "Login Response";
    case Opcode::text_response:
      return "Text Response";
    case Opcode::data_in:
      return "Data-In";
    case Opcode::logout_response:
      return "Logout Response";
    case Opcode::r2t:
      return "R2T";
    case Opcode::async_message:
      return "Asynchronous Message";
    case Opcode::reject:
      return "Reject";
  }
  return "unknown opcode";
}

Opcode bhs_opcode(BhsIn b) {
  return static_cast<Opcode>(load_u8(b, 0) & 0x3f);
}
uint8_t bhs_total_ahs_length(BhsIn b) {
  return load_u8(b, 4);
}
uint32_t bhs_data_segment_length(BhsIn b) {
  return load_be24(b, 5);
}

// ---------------------------------------------------------------- encoders

void encode(const NopOut& p, Bhs& b) {  // §11.18
  put_common(b, Opcode::nop_out, p);
  store_u8(b, 1, final_bit);
  put_lun(b, p.lun);
  put_itt(b, p.itt);
  put_ttt(b, p.ttt);
  store_be32(b, 24, p.cmd_sn.value());
  store_be32(b, 28, p.exp_stat_sn.value());
}

void encode(const ScsiCommand& p, Bhs& b) {  // §11.3
  put_common(b, Opcode::scsi_command, p);
  store_u8(b, 1,
           (p.final ? final_bit : 0) | (p.read ? 0x40 : 0) | (p.write ? 0x20 : 0) |
               (static_cast<uint8_t>(p.attribute) & 0x07));
  put_lun(b, p.lun);
  put_itt(b, p.itt);
  store_be32(b, 20, p.expected_data_transfer_length);
  store_be32(b, 24, p.cmd_sn.value());
  store_be32(b, 28, p.exp_stat_sn.value());
  for (size_t i = 0; i < p.cdb.size(); ++i) b[32 + i] = p.cdb[i];
}

void encode(const TaskManagementRequest& p, Bhs& b) {  // §11.5
  put_common(b, Opcode::task_management_request, p);
  store_u8(b, 1, final_bit | (static_cast<uint8_t>(p.function) & 0x7f));
  put_lun(b, p.lun);
  put_itt(b, p.itt);
  store_be32(b, 20, p.referenced_task_tag.value);
  store_be32(b, 24, p.cmd_sn.value());
  store_be32(b, 28, p.exp_stat_sn.value());
  store_be32(b, 32, p.ref_cmd_sn.value());
  store_be32(b, 36, p.exp_data_sn.value());
}

void encode(const LoginRequest& p, Bhs& b) {  // §11.12
  PduCommon c = p;
  c.immediate = true;  // §11.12: the I bit is always 1 on Login Requests
  put_common(b, Opcode::login_request, c);
  store_u8(b, 1, login_flags(p.transit, p.continue_, p.current_stage, p.next_stage));
  store_u8(b, 2, p.version_max);
  store_u8(b, 3, p.version_min);
  put_isid(b, p.isid);
  store_be16(b, 14, p.tsih.value);
  put_itt(b, p.itt);
  store_be16(b, 20, p.cid);
  store_be32(b, 24, p.cmd_sn.value());
  store_be32(b, 28, p.exp_stat_sn.value());
}

void encode(const TextRequest& p, Bhs& b) {  // §11.10
  put_common(b, Opcode::text_request, p);
  store_u8(b, 1, (p.final ? final_bit : 0) | (p.continue_ ? 0x40 : 0));
  put_lun(b, p.lun);
  put_itt(b, p.itt);
  put_ttt(b, p.ttt);
  store_be32(b, 24, p.cmd_sn.value());
  store_be32(b, 28, p.exp_stat_sn.value());
}

void encode(const DataOut& p, Bhs& b) {  // §11.7
  put_common(b, Opcode::data_out, p);
  store_u8(b, 1, p.final ? final_bit : 0);
  put_lun(b, p.lun);
  put_itt(b, p.itt);
  put_ttt(b, p.ttt);
  store_be32(b, 28, p.exp_stat_sn.value());
  store_be32(b, 36, p.data_sn.value());
  store_be32(b, 40, p.buffer_offset);
}

void encode(const LogoutRequest& p, Bhs& b) {  // §11.14
  put_common(b, Opcode::logout_request, p);
  store_u8(b, 1, final_bit | (static_cast<uint8_t>(p.reason) & 0x7f));
  put_itt(b, p.itt);
  store_be16(b, 20, p.cid);
  store_be32(b, 24, p.cmd_sn.value());
  store_be32(b, 28, p.exp_stat_sn.value());
}

void encode(const SnackRequest& p, Bhs& b) {  // §11.16
  put_common(b, Opcode::snack_request, p);
  store_u8(b, 1, final_bit | (p.type & 0x0f));
  put_lun(b, p.lun);
  put_itt(b, p.itt);
  put_ttt(b, p.ttt);
  store_be32(b, 28, p.exp_stat_sn.value());
  store_be32(b, 40, p.beg_run);
  store_be32(b, 44, p.run_length);
}

void encode(const NopIn& p, Bhs& b) {  // §11.19
  put_common(b, Opcode::nop_in, p);
  store_u8(b, 1, final_bit);
  put_lun(b, p.lun);
  put_itt(b, p.itt);
  put_ttt(b, p.ttt);
  put_sequence(b, p);
}

void encode(const ScsiResponse& p, Bhs& b) {  // §11.4
  put_common(b, Opcode::scsi_response, p);
  store_u8(b, 1,
           final_bit | (p.bidi_overflow ? 0x10 : 0) | (p.bidi_underflow ? 0x08 : 0) |
               (p.residual_overflow ? 0x04 : 0) | (p.residual_underflow ? 0x02 : 0));
  store_u8(b, 2, p.response);
  store_u8(b, 3, p.status);
  put_itt(b, p.itt);
  store_be32(b, 20, p.snack_tag);
  put_sequence(b, p);
  store_be32(b, 36, p.exp_data_sn.value());
  store_be32(b, 40, p.bidi_read_residual_count);
  store_be32(b, 44, p.residual_count);
}

void encode(const TaskManagementResponse& p, Bhs& b) {  // §11.6
  put_common(b, Opcode::task_management_response, p);
  store_u8(b, 1, final_bit);
  store_u8(b, 2, p.response);
  put_itt(b, p.itt);
  put_sequence(b, p);
}

void encode(const LoginResponse& p, Bhs& b) {  // §11.13
  put_common(b, Opcode::login_response, p);
  store_u8(b, 1, login_flags(p.transit, p.continue_, p.current_stage, p.next_stage));
  store_u8(b, 2, p.version_max);
  store_u8(b, 3, p.version_active);
  put_isid(b, p.isid);
  store_be16(b, 14, p.tsih.value);
  put_itt(b, p.itt);
  put_sequence(b, p);
  store_u8(b, 36, p.status_class);
  store_u8(b, 37, p.status_detail);
}

void encode(const TextResponse& p, Bhs& b) {  // §11.11
  put_common(b, Opcode::text_response, p);
  store_u8(b, 1, (p.final ? final_bit : 0) | (p.continue_ ? 0x40 : 0));
  put_lun(b, p.lun);
  put_itt(b, p.itt);
  put_ttt(b, p.ttt);
  put_sequence(b, p);
}

void encode(const DataIn& p, Bhs& b) {  // §11.7
  put_common(b, Opcode::data_in, p);
  store_u8(b, 1,
           (p.final ? final_bit : 0) | (p.acknowledge ? 0x40 : 0) |
               (p.residual_overflow ? 0x04 : 0) | (p.residual_underflow ? 0x02 : 0) |
               (p.has_status ? 0x01 : 0));
  store_u8(b, 3, p.has_status ? p.status : 0);
  put_lun(b, p.lun);
  put_itt(b, p.itt);
  put_ttt(b, p.ttt);
  put_sequence(b, p);
  if (!p.has_status) store_be32(b, 24, 0);  // StatSN is reserved without status (§11.7.4)
  store_be32(b, 36, p.data_sn.value());
  store_be32(b, 40, p.buffer_offset);
  store_be32(b, 44, p.residual_count);
}

void encode(const LogoutResponse& p, Bhs& b) {  // §11.15
  put_common(b, Opcode::logout_response, p);
  store_u8(b, 1, final_bit);
  store_u8(b, 2, p.response);
  put_itt(b, p.itt);
  put_sequence(b, p);
  store_be16(b, 40, p.time2wait);
  store_be16(b, 42, p.time2retain);
}

void encode(const ReadyToTransfer& p, Bhs& b) {  // §11.8
  put_common(b, Opcode::r2t, p);
  store_u8(b, 1, final_bit);
  put_lun(b, p.lun);
  put_itt(b, p.itt);
  put_ttt(b, p.ttt);
  put_sequence(b, p);
  store_be32(b, 36, p.r2t_sn.value());
  store_be32(b, 40, p.buffer_offset);
  store_be32(b, 44, p.desired_data_transfer_length);
}

void encode(const AsyncMessage& p, Bhs& b) {  // §11.9
  put_common(b, Opcode::async_message, p);
  store_u8(b, 1, final_bit);
  put_lun(b, p.lun);
  put_itt(b, Itt{Itt::reserved});
  put_sequence(b, p);
  store_u8(b, 36, p.event);
  store_u8(b, 37, p.vendor_code);
  store_be16(b, 38, p.parameter1);
  store_be16(b, 40, p.parameter2);
  store_be16(b, 42, p.parameter3);
}

void encode(const Reject& p, Bhs& b) {  // §11.17
  put_common(b, Opcode::reject, p);
  store_u8(b, 1, final_bit);
  store_u8(b, 2, p.reason);
  put_itt(b, Itt{Itt::reserved});
  put_sequence(b, p);
  store_be32(b, 36, p.data_sn.value());
}

// ---------------------------------------------------------------- decoders

std::error_code decode_target_pdu(BhsIn b, TargetPdu& out, std::string& detail) {
  const uint8_t byte1 = load_u8(b, 1);
  const Opcode op = bhs_opcode(b);
  switch (op) {
    case Opcode::nop_in: {
      NopIn p;
      get_common(b, p);
      get_sequence(b, p);
      p.lun = get_lun(b);
      p.itt = get_itt(b);
      p.ttt = get_ttt(b);
      out = p;
      break;
    }
    case Opcode::scsi_response: {
      ScsiResponse p;
      get_common(b, p);
      get_sequence(b, p);
      p.bidi_overflow = byte1 & 0x10;
      p.bidi_underflow = byte1 & 0x08;
      p.residual_overflow = byte1 & 0x04;
      p.residual_underflow = byte1 & 0x02;
      if (p.residual_overflow && p.residual_underflow)
        return malformed(detail, "SCSI Response with both O and U set");  // §11.4.5.1
      p.response = load_u8(b, 2);
      p.status = load_u8(b, 3);
      p.itt = get_itt(b);
      p.snack_tag = load_be32(b, 20);
      p.exp_data_sn = DataSN(load_be32(b, 36));
      p.bidi_read_residual_count = load_be32(b, 40);
      p.residual_count = load_be32(b, 44);
      out = p;
      break;
    }
    case Opcode::task_management_response: {
      TaskManagementResponse p;
      get_common(b, p);
      get_sequence(b, p);
      p.response = load_u8(b, 2);
      p.itt = get_itt(b);
      out = p;
      break;
    }
    case Opcode::login_response: {
      LoginResponse p;
      get_common(b, p);
      get_sequence(b, p);
      p.transit = byte1 & 0x80;
      p.continue_ = byte1 & 0x40;
      const uint8_t csg = (byte1 >> 2) & 0x3, nsg = byte1 & 0x3;
      if (!valid_stage(csg) || (p.transit && !valid_stage(nsg)))
        return malformed(detail, "Login Response with a reserved stage value");  // §11.13.3
      if (p.transit && p.continue_)
        return malformed(detail, "Login Response with both T and C set");  // §11.13.2
      p.current_stage = static_cast<LoginStage>(csg);
      p.next_stage = static_cast<LoginStage>(nsg);
      p.version_max = load_u8(b, 2);
      p.version_active = load_u8(b, 3);
      p.isid = get_isid(b);
      p.tsih = Tsih{load_be16(b, 14)};
      p.itt = get_itt(b);
      p.status_class = load_u8(b, 36);
      p.status_detail = load_u8(b, 37);
      out = p;
      break;
    }
    case Opcode::text_response: {
      TextResponse p;
      get_common(b, p);
      get_sequence(b, p);
      p.final = byte1 & 0x80;
      p.continue_ = byte1 & 0x40;
      if (p.final && p.continue_)
        return malformed(detail, "Text Response with both F and C set");  // §11.11.2
      p.lun = get_lun(b);
      p.itt = get_itt(b);
      p.ttt = get_ttt(b);
      out = p;
      break;
    }
    case Opcode::data_in: {
      DataIn p;
      get_common(b, p);
      get_sequence(b, p);
      p.final = byte1 & 0x80;
      p.acknowledge = byte1 & 0x40;
      p.residual_overflow = byte1 & 0x04;
      p.residual_underflow = byte1 & 0x02;
      p.has_status = byte1 & 0x01;
      // §11.7.3/§11.7.5: S only with F; O and U are exclusive and only meaningful with S.
      if (p.has_status && !p.final) return malformed(detail, "Data-In with S set but not F");
      if (p.residual_overflow && p.residual_underflow)
        return malformed(detail, "Data-In with both O and U set");
      p.status = load_u8(b, 3);
      p.lun = get_lun(b);
      p.itt = get_itt(b);
      p.ttt = get_ttt(b);
      p.data_sn = DataSN(load_be32(b, 36));
      p.buffer_offset = load_be32(b, 40);
      p.residual_count = load_be32(b, 44);
      out = p;
      break;
    }
    case Opcode::logout_response: {
      LogoutResponse p;
      get_common(b, p);
      get_sequence(b, p);
      p.response = load_u8(b, 2);
      p.itt = get_itt(b);
      p.time2wait = load_be16(b, 40);
      p.time2retain = load_be16(b, 42);
      out = p;
      break;
    }
    case Opcode::r2t: {
      ReadyToTransfer p;
      get_common(b, p);
      get_sequence(b, p);
      p.lun = get_lun(b);
      p.itt = get_itt(b);
      p.ttt = get_ttt(b);
      p.r2t_sn = R2TSN(load_be32(b, 36));
      p.buffer_offset = load_be32(b, 40);
      p.desired_data_transfer_length = load_be32(b, 44);
      if (p.desired_data_transfer_length == 0)  // §11.8.4: must not be 0
        return malformed(detail, "R2T with Desired Data Transfer Length 0");
      out = p;
      break;
    }
    case Opcode::async_message: {
      AsyncMessage p;
      get_common(b, p);
      get_sequence(b, p);
      p.lun = get_lun(b);
      p.event = load_u8(b, 36);
      p.vendor_code = load_u8(b, 37);
      p.parameter1 = load_be16(b, 38);
      p.parameter2 = load_be16(b, 40);
      p.parameter3 = load_be16(b, 42);
      out = p;
      break;
    }
    case Opcode::reject: {
      Reject p;
      get_common(b, p);
      get_sequence(b, p);
      p.reason = load_u8(b, 2);
      p.data_sn = DataSN(load_be32(b, 36));
      out = p;
      break;
    }
    default:
      static constexpr char hex[] = "0123456789abcdef";
      detail = std::string("opcode 0x") + hex[static_cast<unsigned>(op) >> 4] +
               hex[static_cast<unsigned>(op) & 0xf] + " (" + opcode_name(op) +
               ") is not a target PDU";
      return errc::unknown_opcode;
  }
  return {};
}

std::error_code decode_initiator_pdu(BhsIn b, InitiatorPdu& out, std::string& detail) {
  const uint8_t byte1 = load_u8(b, 1);
  const Opcode op = bhs_opcode(b);
  const auto cmd_sn = CmdSN(load_be32(b, 24));
  const auto exp_stat_sn = StatSN(load_be32(b, 28));
  switch (op) {
    case Opcode::nop_out: {
      NopOut p;
      get_common(b, p);
      p.lun = get_lun(b);
      p.itt = get_itt(b);
      p.ttt = get_ttt(b);
      p.cmd_sn = cmd_sn;
      p.exp_stat_sn = exp_stat_sn;
      out = p;
      break;
    }
    case Opcode::scsi_command: {
      ScsiCommand p;
      get_common(b, p);
      p.final = byte1 & 0x80;
      p.read = byte1 & 0x40;
      p.write = byte1 & 0x20;
      p.attribute = static_cast<TaskAttribute>(byte1 & 0x07);
      p.lun = get_lun(b);
      p.itt = get_itt(b);
      p.expected_data_transfer_length = load_be32(b, 20);
      p.cmd_sn = cmd_sn;
      p.exp_stat_sn = exp_stat_sn;
      for (size_t i = 0; i < p.cdb.size(); ++i) p.cdb[i] = b[32 + i];
      out = p;
      break;
    }
    case Opcode::task_management_request: {
      TaskManagementRequest p;
      get_common(b, p);
      p.function = static_cast<TaskFunction>(byte1 & 0x7f);
      p.lun = get_lun(b);
      p.itt = get_itt(b);
      p.referenced_task_tag = Itt{load_be32(b, 20)};
      p.cmd_sn = cmd_sn;
      p.exp_stat_sn = exp_stat_sn;
      p.ref_cmd_sn = CmdSN(load_be32(b, 32));
      p.exp_data_sn = DataSN(load_be32(b, 36));
      out = p;
      break;
    }
    case Opcode::login_request: {
      LoginRequest p;
      get_common(b, p);
      p.transit = byte1 & 0x80;
      p.continue_ = byte1 & 0x40;
      const uint8_t csg = (byte1 >> 2) & 0x3, nsg = byte1 & 0x3;
      if (!valid_stage(csg) || (p.transit && !valid_stage(nsg)))
        return malformed(detail, "Login Request with a reserved stage value");
      p.current_stage = static_cast<LoginStage>(csg);
      p.next_stage = static_cast<LoginStage>(nsg);
      p.version_max = load_u8(b, 2);
      p.version_min = load_u8(b, 3);
      p.isid = get_isid(b);
      p.tsih = Tsih{load_be16(b, 14)};
      p.itt = get_itt(b);
      p.cid = load_be16(b, 20);
      p.cmd_sn = cmd_sn;
      p.exp_stat_sn = exp_stat_sn;
      out = p;
      break;
    }
    case Opcode::text_request: {
      TextRequest p;
      get_common(b, p);
      p.final = byte1 & 0x80;
      p.continue_ = byte1 & 0x40;
      p.lun = get_lun(b);
      p.itt = get_itt(b);
      p.ttt = get_ttt(b);
      p.cmd_sn = cmd_sn;
      p.exp_stat_sn = exp_stat_sn;
      out = p;
      break;
    }
    case Opcode::data_out: {
      DataOut p;
      get_common(b, p);
      p.final = byte1 & 0x80;
      p.lun = get_lun(b);
      p.itt = get_itt(b);
      p.ttt = get_ttt(b);
      p.exp_stat_sn = exp_stat_sn;
      p.data_sn = DataSN(load_be32(b, 36));
      p.buffer_offset = load_be32(b, 40);
      out = p;
      break;
    }
    case Opcode::logout_request: {
      LogoutRequest p;
      get_common(b, p);
      const uint8_t reason = byte1 & 0x7f;
      if (reason > 2) return malformed(detail, "Logout Request with a reserved reason code");
      p.reason = static_cast<LogoutReason>(reason);
      p.itt = get_itt(b);
      p.cid = load_be16(b, 20);
      p.cmd_sn = cmd_sn;
      p.exp_stat_sn = exp_stat_sn;
      out = p;
      break;
    }
    case Opcode::snack_request: {
      SnackRequest p;
      get_common(b, p);
      p.type = byte1 & 0x0f;
      p.lun = get_lun(b);
      p.itt = get_itt(b);
      p.ttt = get_ttt(b);
      p.exp_stat_sn = exp_stat_sn;
      p.beg_run = load_be32(b, 40);
      p.run_length = load_be32(b, 44);
      out = p;
      break;
    }
    default:
      detail = std::string("opcode ") + opcode_name(op) + " is not an initiator PDU";
      return errc::unknown_opcode;
  }
  return {};
}

// ---------------------------------------------------------------- digests

uint32_t crc32c(std::span<const std::byte> data, uint32_t crc) {
  // ISA-L works on the un-inverted register; iSCSI's CRC32C starts from all ones and inverts
  // the result (RFC 7143 §13.1, RFC 3720 Appendix B.4), which this wrapper hides so that
  // crc32c(b, crc32c(a)) == crc32c(a || b).
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  size_t left = data.size();
  uint32_t reg = ~crc;
  while (left > 0) {
    const int chunk = static_cast<int>(left > (1u << 30) ? (1u << 30) : left);
    reg = crc32_iscsi(const_cast<unsigned char*>(p), chunk, reg);
    p += chunk;
    left -= static_cast<size_t>(chunk);
  }
  return ~reg;
}

std::array<std::byte, digest_size> digest_bytes(uint32_t crc) {
  return {std::byte(crc), std::byte(crc >> 8), std::byte(crc >> 16), std::byte(crc >> 24)};
}

uint32_t digest_value(std::span<const std::byte, digest_size> w) {
  return uint32_t{std::to_integer<uint8_t>(w[0])} | uint32_t{std::to_integer<uint8_t>(w[1])} << 8 |
         uint32_t{std::to_integer<uint8_t>(w[2])} << 16 |
         uint32_t{std::to_integer<uint8_t>(w[3])} << 24;
}

std::string tmf_response_name(uint8_t response) {
  switch (static_cast<TaskManagementResponseCode>(response)) {
    case TaskManagementResponseCode::function_complete:
      return "function complete";
    case TaskManagementResponseCode::task_does_not_exist:
      return "task does not exist";
    case TaskManagementResponseCode::lun_does_not_exist:
      return "LUN does not exist";
    case TaskManagementResponseCode::task_still_allegiant:
      return "task still allegiant";
    case TaskManagementResponseCode::reassignment_not_supported:
      return "task allegiance reassignment not supported";
    case TaskManagementResponseCode::function_not_supported:
      return "function not supported";
    case TaskManagementResponseCode::authorization_failed:
      return "function authorization failed";
    case TaskManagementResponseCode::function_rejected:
      return "function rejected";
  }
  return "response " + std::to_string(response);
}

}  // namespace iscsi
