// GET LBA STATUS parameter data (SBC-4 §5.8.2): which blocks of a thin LU are mapped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace scsi {

// SBC-4 Table 54, PROVISIONING STATUS (the low 4 bits of byte 12).
enum class ProvisioningStatus : uint8_t {
  mapped = 0,             // mapped (or, for a fully provisioned LU, unknown)
  deallocated = 1,        // no physical blocks: reads give the LBPRZ pattern or undefined data
  anchored = 2,           // anchored: space reserved, no data
  mapped_or_unknown = 3,  // SBC-4 later revisions: "mapped or unknown"
};

// One 16-byte LBA status descriptor (SBC-4 Table 53).
struct LbaStatusDescriptor {
  uint64_t lba = 0;
  uint32_t blocks = 0;
  uint8_t provisioning_status = 0;  // ProvisioningStatus, or a value we do not know (4..15)
  friend bool operator==(const LbaStatusDescriptor&, const LbaStatusDescriptor&) = default;
};

// The 8-byte header and each descriptor (SBC-4 §5.8.2).
inline constexpr size_t kLbaStatusHeaderSize = 8;
inline constexpr size_t kLbaStatusDescriptorSize = 16;

// Parses the Data-In of a GET LBA STATUS that asked for `starting_lba` with
// `allocation_length`. Strict, since every descriptor becomes a promise to the client about
// which blocks hold data:
//  - the header is present and PARAMETER DATA LENGTH is 4 + 16n (n >= 1);
//  - the data holds exactly the declared length, or is cut short by the allocation length
//    (then only whole descriptors count), never more than the allocation length;
//  - the first descriptor contains `starting_lba` (SBC-4 §5.8.2: "the LBA status descriptor
//    that contains the STARTING LOGICAL BLOCK ADDRESS" comes first; it may begin below it);
//  - every descriptor has a nonzero count, does not wrap past 2^64, and begins at or after the
//    end of the one before (in order, non-overlapping; gaps are left to the caller).
// On failure returns false with `error` saying what was wrong; `out` is then unspecified.
bool parse_lba_status(std::span<const std::byte> data, uint64_t starting_lba,
                      uint32_t allocation_length, std::vector<LbaStatusDescriptor>& out,
                      std::string& error);

}  // namespace scsi
