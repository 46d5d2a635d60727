#include "scsi/report_luns.hpp"

#include <common/bytes.hpp>

namespace scsi {
namespace {

constexpr uint64_t first_level_mask = 0xFFFF'0000'0000'0000ull;

}  // namespace

std::optional<size_t> report_luns_total_length(std::span<const std::byte> data) {
  if (data.size() < 4) return std::nullopt;
  return size_t{8} + common::load_be32(data, 0);
}

std::optional<std::vector<uint64_t>> parse_report_luns(std::span<const std::byte> data) {
  auto total = report_luns_total_length(data);
  if (!total || data.size() < *total) return std::nullopt;
  const size_t list_length = *total - 8;
  if (list_length % 8 != 0) return std::nullopt;
  std::vector<uint64_t> luns;
  luns.reserve(list_length / 8);
  for (size_t off = 8; off < *total; off += 8) luns.push_back(common::load_be64(data, off));
  return luns;
}

uint64_t encode_lun(uint16_t lun) {
  if (lun < 256) return uint64_t{lun} << 48;
  if (lun < 16384) return (uint64_t{0x4000u | lun}) << 48;
  return (uint64_t{0xD2} << 56) | (uint64_t{lun} << 32);
}

std::optional<uint16_t> decode_lun(uint64_t lun) {
  const auto byte0 = static_cast<uint8_t>(lun >> 56);
  switch (byte0 >> 6) {
    case 0b00:  // peripheral device addressing: byte 0 is the BUS IDENTIFIER
      if (byte0 != 0 || (lun & ~first_level_mask) != 0) return std::nullopt;
      return static_cast<uint16_t>((lun >> 48) & 0xFF);
    case 0b01:  // flat space addressing: 14-bit LUN
      if ((lun & ~first_level_mask) != 0) return std::nullopt;
      return static_cast<uint16_t>((lun >> 48) & 0x3FFF);
    case 0b11: {  // extended addressing; only extended flat space (D2h: length 01b, method 2h)
      if (byte0 != 0xD2 || (lun & 0xFFFF'FFFFull) != 0) return std::nullopt;
      const auto value = static_cast<uint32_t>((lun >> 32) & 0xFFFFFF);
      if (value > 0xFFFF) return std::nullopt;
      return static_cast<uint16_t>(value);
    }
    default:  // 10b: logical unit addressing (SCSI-2 style target/bus/LUN)
      return std::nullopt;
  }
}

}  // namespace scsi
