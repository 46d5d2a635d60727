// Sense data (SPC-4 §4.5): what a target says about a CHECK CONDITION. The iSCSI layer strips
// the 2-byte SenseLength prefix of the Data Segment (RFC 7143 §11.4.7.2) before calling here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace scsi {

// SPC-4 §4.5.6, Table 45.
enum class SenseKey : uint8_t {
  no_sense = 0x0,
  recovered_error = 0x1,
  not_ready = 0x2,
  medium_error = 0x3,
  hardware_error = 0x4,
  illegal_request = 0x5,
  unit_attention = 0x6,
  data_protect = 0x7,
  blank_check = 0x8,
  vendor_specific = 0x9,
  copy_aborted = 0xA,
  aborted_command = 0xB,
  reserved_c = 0xC,  // was EQUAL in SPC-2
  volume_overflow = 0xD,
  miscompare = 0xE,
  completed = 0xF,  // SPC-5; reserved in SPC-4
};

struct Sense {
  uint8_t response_code = 0;  // 0x70..0x73
  SenseKey key = SenseKey::no_sense;
  uint8_t asc = 0;
  uint8_t ascq = 0;
  // 0x71/0x73: the error belongs to an earlier command (e.g. a cached write that failed later).
  bool deferred = false;
  // Fixed format: the INFORMATION field when VALID is set. Descriptor format: the Information
  // sense data descriptor (type 00h) when its VALID bit is set. For media errors it is usually
  // the first failing LBA.
  std::optional<uint64_t> information;

  bool descriptor_format() const { return response_code == 0x72 || response_code == 0x73; }
};

// Decodes fixed (0x70/0x71, SPC-4 §4.5.3) or descriptor (0x72/0x73, SPC-4 §4.5.2) sense data.
// Returns nullopt if the buffer is empty, the response code is not one of those four, or the
// buffer stops before the sense key. Fields the buffer (or, for fixed format, the ADDITIONAL
// SENSE LENGTH) does not reach are left 0, as Linux's scsi_normalize_sense() does.
std::optional<Sense> decode_sense(std::span<const std::byte> data);

// "MEDIUM ERROR", "UNIT ATTENTION", ... (SPC-4 Table 45).
std::string_view sense_key_name(SenseKey key);

// Lower-case text for the common ASC/ASCQ pairs (SPC-4 Annex D), e.g. describe_asc(0x11, 0x00) ==
// "unrecovered read error"; "ASC 5E ASCQ 01" for pairs not in the table.
std::string describe_asc(uint8_t asc, uint8_t ascq);

}  // namespace scsi
