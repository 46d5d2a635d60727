#include "scsi/mode_sense.hpp"

#include <common/bytes.hpp>

namespace scsi {

std::optional<ModeSense10Header> parse_mode_sense10_header(std::span<const std::byte> data) {
  if (data.size() < 8) return std::nullopt;
  ModeSense10Header h;
  h.mode_data_length = common::load_be16(data, 0);
  h.medium_type = common::load_u8(data, 2);
  const uint8_t device_specific = common::load_u8(data, 3);
  h.write_protected = (device_specific & 0x80) != 0;
  h.dpofua = (device_specific & 0x10) != 0;
  h.longlba = (common::load_u8(data, 4) & 0x01) != 0;
  h.block_descriptor_length = common::load_be16(data, 6);
  return h;
}

}  // namespace scsi
