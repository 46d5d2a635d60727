#include "scsi/identity.hpp"

#include <algorithm>
#include <string_view>

namespace scsi {

bool identity_page_wanted(const std::optional<std::vector<uint8_t>>& supported, uint8_t page) {
  return !supported || std::find(supported->begin(), supported->end(), page) != supported->end();
}

std::string lu_identity(const IdentityPages& pages) {
  if (pages.designators)
    if (auto wwid = wwid_from_designators(*pages.designators); !wwid.empty()) return wwid;
  if (!pages.serial) return {};
  std::string_view serial = *pages.serial;
  const auto blank = [](char c) { return c == ' ' || c == '\0'; };
  while (!serial.empty() && blank(serial.front())) serial.remove_prefix(1);
  while (!serial.empty() && blank(serial.back())) serial.remove_suffix(1);
  if (serial.empty()) return {};
  return "S" + std::string(serial);
}

}  // namespace scsi
