// MODE SENSE(10) parameter header (SPC-4 §7.5.5, Table 454; SBC-3 §6.4.1 for the direct-access
// DEVICE-SPECIFIC PARAMETER).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace scsi {

struct ModeSense10Header {
  uint16_t mode_data_length = 0;  // bytes after this field
  uint8_t medium_type = 0;
  bool write_protected = false;  // WP: the LU refuses writes
  bool dpofua = false;           // DPO and FUA bits are honoured
  bool longlba = false;
  uint16_t block_descriptor_length = 0;
};

// Needs the 8-byte header; mode pages after it are not parsed.
std::optional<ModeSense10Header> parse_mode_sense10_header(std::span<const std::byte> data);

}  // namespace scsi
