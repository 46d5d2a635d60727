// READ CAPACITY parameter data (SBC-3 §5.15.2, §5.16.2).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace scsi {

struct ReadCapacity10 {
  // 0xFFFFFFFF means "too large for this command: use READ CAPACITY(16)".
  uint32_t last_lba = 0;
  uint32_t block_length = 0;
};

// Needs the full 8 bytes.
std::optional<ReadCapacity10> parse_read_capacity10(std::span<const std::byte> data);

struct ReadCapacity16 {
  uint64_t last_lba = 0;
  uint32_t block_length = 0;
  uint8_t logical_per_physical_exponent = 0;  // 2^n logical blocks per physical block
  bool lbpme = false;  // logical block provisioning (thin) enabled: UNMAP may be used
  bool lbprz = false;  // unmapped blocks read back as zeros
  uint16_t lowest_aligned_lba = 0;
  bool prot_en = false;  // protection information enabled (we never send it)
  uint8_t p_type = 0;
};

// Needs the first 16 bytes (everything defined through LOWEST ALIGNED LOGICAL BLOCK ADDRESS);
// targets return 32, the rest is reserved.
std::optional<ReadCapacity16> parse_read_capacity16(std::span<const std::byte> data);

}  // namespace scsi
