// REPORT LUNS parameter data (SPC-4 §6.27.2) and single-level LUN encoding (SAM-5 §4.7).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace scsi {

// LUN LIST LENGTH + 8: the allocation length needed for the whole list; nullopt if fewer than
// 4 bytes.
std::optional<size_t> report_luns_total_length(std::span<const std::byte> data);

// The raw 8-byte LUN values, in the target's order. nullopt if the data is shorter than the list
// it declares or the LUN LIST LENGTH is not a multiple of 8.
std::optional<std::vector<uint64_t>> parse_report_luns(std::span<const std::byte> data);

// SAM-5 §4.7: peripheral device addressing (00b) for LUNs below 256, flat space addressing
// (01b) below 16384, extended flat space addressing (byte 0 = D2h, 24-bit LUN) above. The iSCSI
// LUN field carries these 8 bytes as they are.
uint64_t encode_lun(uint16_t lun);

// The inverse for single-level LUNs in those three forms (peripheral only with BUS IDENTIFIER 0);
// nullopt for logical unit addressing, multi-level LUNs and anything else.
std::optional<uint16_t> decode_lun(uint64_t lun);

}  // namespace scsi
