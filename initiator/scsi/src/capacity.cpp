#include "scsi/capacity.hpp"

#include <common/bytes.hpp>

namespace scsi {

std::optional<ReadCapacity10> parse_read_capacity10(std::span<const std::byte> data) {
  if (data.size() < 8) return std::nullopt;
  return ReadCapacity10{common::load_be32(data, 0), common::load_be32(data, 4)};
}

std::optional<ReadCapacity16> parse_read_capacity16(std::span<const std::byte> data) {
  if (data.size() < 16) return std::nullopt;
  // SBC-3 Table 66.
  ReadCapacity16 rc;
  rc.last_lba = common::load_be64(data, 0);
  rc.block_length = common::load_be32(data, 8);
  rc.p_type = (common::load_u8(data, 12) >> 1) & 0x07;
  rc.prot_en = (common::load_u8(data, 12) & 0x01) != 0;
  rc.logical_per_physical_exponent = common::load_u8(data, 13) & 0x0F;
  rc.lbpme = (common::load_u8(data, 14) & 0x80) != 0;
  rc.lbprz = (common::load_u8(data, 14) & 0x40) != 0;
  rc.lowest_aligned_lba = common::load_be16(data, 14) & 0x3FFF;
  return rc;
}

}  // namespace scsi
