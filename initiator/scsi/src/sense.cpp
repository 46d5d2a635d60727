#include "scsi/sense.hpp"

#include <algorithm>
#include <array>
#include <cstdio>

#include <common/bytes.hpp>

namespace scsi {
namespace {

using common::load_u8;

constexpr uint8_t fixed_current = 0x70;
constexpr uint8_t fixed_deferred = 0x71;
constexpr uint8_t descriptor_current = 0x72;
constexpr uint8_t descriptor_deferred = 0x73;

// SPC-4 §4.5.3, Table 48: fixed-format sense data.
std::optional<Sense> decode_fixed(common::ConstBytes data, Sense sense) {
  if (data.size() < 3) return std::nullopt;
  sense.key = static_cast<SenseKey>(load_u8(data, 2) & 0x0F);
  const bool valid = (load_u8(data, 0) & 0x80) != 0;
  if (valid && data.size() >= 7) sense.information = common::load_be32(data, 3);
  if (data.size() < 8) return sense;
  // ADDITIONAL SENSE LENGTH counts the bytes after byte 7; a target may send fewer (or the
  // buffer may be cut short), and only bytes both sides agree on are read.
  const size_t end = std::min(data.size(), size_t{8} + load_u8(data, 7));
  if (end > 12) sense.asc = load_u8(data, 12);
  if (end > 13) sense.ascq = load_u8(data, 13);
  return sense;
}

// SPC-4 §4.5.2.1, Table 27: descriptor-format sense data header, then descriptors.
std::optional<Sense> decode_descriptor(common::ConstBytes data, Sense sense) {
  if (data.size() < 2) return std::nullopt;
  sense.key = static_cast<SenseKey>(load_u8(data, 1) & 0x0F);
  if (data.size() > 2) sense.asc = load_u8(data, 2);
  if (data.size() > 3) sense.ascq = load_u8(data, 3);
  if (data.size() < 8) return sense;
  const size_t end = std::min(data.size(), size_t{8} + load_u8(data, 7));
  size_t off = 8;
  while (off + 2 <= end) {
    const uint8_t type = load_u8(data, off);
    const size_t length = size_t{2} + load_u8(data, off + 1);
    if (off + length > end) break;
    // SPC-4 §4.5.2.2, Table 29: Information descriptor, ADDITIONAL LENGTH 0Ah, VALID in byte 2.
    if (type == 0x00 && length >= 12 && (load_u8(data, off + 2) & 0x80) != 0) {
      sense.information = common::load_be64(data, off + 4);
    }
    off += length;
  }
  return sense;
}

struct AscEntry {
  uint8_t asc;
  uint8_t ascq;
  std::string_view text;
};

// SPC-4 Annex D (Table D.1), the subset an initiator for disks meets in practice.
constexpr std::array asc_table = {
    AscEntry{0x00, 0x00, "no additional sense information"},
    AscEntry{0x04, 0x00, "logical unit not ready, cause not reportable"},
    AscEntry{0x04, 0x01, "logical unit is in process of becoming ready"},
    AscEntry{0x04, 0x02, "logical unit not ready, initializing command required"},
    AscEntry{0x04, 0x03, "logical unit not ready, manual intervention required"},
    AscEntry{0x04, 0x04, "logical unit not ready, format in progress"},
    AscEntry{0x04, 0x07, "logical unit not ready, operation in progress"},
    AscEntry{0x04, 0x09, "logical unit not ready, self-test in progress"},
    AscEntry{0x04, 0x0A, "logical unit not accessible, asymmetric access state transition"},
    AscEntry{0x04, 0x0B, "logical unit not accessible, target port in standby state"},
    AscEntry{0x04, 0x0C, "logical unit not accessible, target port in unavailable state"},
    AscEntry{0x04, 0x11, "logical unit not ready, notify (enable spinup) required"},
    AscEntry{0x04, 0x14, "logical unit not ready, space allocation in progress"},
    AscEntry{0x05, 0x00, "logical unit does not respond to selection"},
    AscEntry{0x08, 0x00, "logical unit communication failure"},
    AscEntry{0x0C, 0x00, "write error"},
    AscEntry{0x10, 0x01, "logical block guard check failed"},
    AscEntry{0x10, 0x02, "logical block application tag check failed"},
    AscEntry{0x10, 0x03, "logical block reference tag check failed"},
    AscEntry{0x11, 0x00, "unrecovered read error"},
    AscEntry{0x14, 0x01, "record not found"},
    AscEntry{0x1A, 0x00, "parameter list length error"},
    AscEntry{0x1D, 0x00, "miscompare during verify operation"},
    AscEntry{0x20, 0x00, "invalid command operation code"},
    AscEntry{0x21, 0x00, "logical block address out of range"},
    AscEntry{0x24, 0x00, "invalid field in cdb"},
    AscEntry{0x25, 0x00, "logical unit not supported"},
    AscEntry{0x26, 0x00, "invalid field in parameter list"},
    AscEntry{0x27, 0x00, "write protected"},
    AscEntry{0x27, 0x01, "hardware write protected"},
    AscEntry{0x27, 0x02, "logical unit software write protected"},
    AscEntry{0x27, 0x07, "space allocation failed write protect"},
    AscEntry{0x28, 0x00, "not ready to ready change, medium may have changed"},
    AscEntry{0x29, 0x00, "power on, reset, or bus device reset occurred"},
    AscEntry{0x29, 0x01, "power on occurred"},
    AscEntry{0x29, 0x02, "scsi bus reset occurred"},
    AscEntry{0x29, 0x03, "bus device reset function occurred"},
    AscEntry{0x29, 0x04, "device internal reset"},
    AscEntry{0x29, 0x07, "i_t nexus loss occurred"},
    AscEntry{0x2A, 0x00, "parameters changed"},
    AscEntry{0x2A, 0x01, "mode parameters changed"},
    AscEntry{0x2A, 0x02, "log parameters changed"},
    AscEntry{0x2A, 0x03, "reservations preempted"},
    AscEntry{0x2A, 0x04, "reservations released"},
    AscEntry{0x2A, 0x05, "registrations preempted"},
    AscEntry{0x2A, 0x06, "asymmetric access state changed"},
    AscEntry{0x2A, 0x07, "implicit asymmetric access state transition failed"},
    AscEntry{0x2A, 0x09, "capacity data has changed"},
    AscEntry{0x2C, 0x00, "command sequence error"},
    AscEntry{0x2F, 0x00, "commands cleared by another initiator"},
    AscEntry{0x38, 0x07, "thin provisioning soft threshold reached"},
    AscEntry{0x3A, 0x00, "medium not present"},
    AscEntry{0x3F, 0x00, "target operating conditions have changed"},
    AscEntry{0x3F, 0x01, "microcode has been changed"},
    AscEntry{0x3F, 0x03, "inquiry data has changed"},
    AscEntry{0x3F, 0x0E, "reported luns data has changed"},
    AscEntry{0x44, 0x00, "internal target failure"},
    AscEntry{0x47, 0x05, "protocol service crc error"},
    AscEntry{0x4B, 0x00, "data phase error"},
    AscEntry{0x55, 0x03, "insufficient resources"},
};

}  // namespace

std::optional<Sense> decode_sense(std::span<const std::byte> data) {
  if (data.empty()) return std::nullopt;
  Sense sense;
  sense.response_code = load_u8(data, 0) & 0x7F;
  switch (sense.response_code) {
    case fixed_current:
    case fixed_deferred:
      sense.deferred = sense.response_code == fixed_deferred;
      return decode_fixed(data, sense);
    case descriptor_current:
    case descriptor_deferred:
      sense.deferred = sense.response_code == descriptor_deferred;
      return decode_descriptor(data, sense);
    default:
      return std::nullopt;  // 0x7F is vendor specific; anything else is not sense data
  }
}

std::string_view sense_key_name(SenseKey key) {
  switch (key) {
    case SenseKey::no_sense:
      return "NO SENSE";
    case SenseKey::recovered_error:
      return "RECOVERED ERROR";
    case SenseKey::not_ready:
      return "NOT READY";
    case SenseKey::medium_error:
      return "MEDIUM ERROR";
    case SenseKey::hardware_error:
      return "HARDWARE ERROR";
    case SenseKey::illegal_request:
      return "ILLEGAL REQUEST";
    case SenseKey::unit_attention:
      return "UNIT ATTENTION";
    case SenseKey::data_protect:
      return "DATA PROTECT";
    case SenseKey::blank_check:
      return "BLANK CHECK";
    case SenseKey::vendor_specific:
      return "VENDOR SPECIFIC";
    case SenseKey::copy_aborted:
      return "COPY ABORTED";
    case SenseKey::aborted_command:
      return "ABORTED COMMAND";
    case SenseKey::reserved_c:
      return "RESERVED";
    case SenseKey::volume_overflow:
      return "VOLUME OVERFLOW";
    case SenseKey::miscompare:
      return "MISCOMPARE";
    case SenseKey::completed:
      return "COMPLETED";
  }
  return "UNKNOWN SENSE KEY";
}

std::string describe_asc(uint8_t asc, uint8_t ascq) {
  for (const auto& entry : asc_table) {
    if (entry.asc == asc && entry.ascq == ascq) return std::string(entry.text);
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "ASC %02X ASCQ %02X", asc, ascq);
  return buf;
}

}  // namespace scsi
