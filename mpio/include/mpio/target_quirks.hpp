// Built-in per-target defaults, as dm-multipath's hardware table (multipath.conf "devices")
// keys settings on the LU's INQUIRY vendor and product. A setting in the configuration always
// wins over an entry here. Pure policy: no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace mpio {

struct TargetQuirk {
  std::string_view vendor;   // INQUIRY T10 VENDOR IDENTIFICATION, trimmed, exact match
  std::string_view product;  // INQUIRY PRODUCT IDENTIFICATION, trimmed, exact match
  std::string_view target;   // the implementation, for logs ("tgt")
  // The largest SCSI command's data when multipath.max_sectors_kb is not set; 0 = no default.
  uint32_t max_command_bytes = 0;
};

// The entry for this LU, or nullopt.
std::optional<TargetQuirk> find_target_quirk(std::string_view vendor, std::string_view product);

}  // namespace mpio
