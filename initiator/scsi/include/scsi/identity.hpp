// The identity of a logical unit: the string that decides whether two paths reach one device.
// One rule for every place that asks (the first path's probe, a path joining later, check-config),
// so that they cannot disagree about the same LU.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "scsi/inquiry.hpp"

namespace scsi {

// The VPD pages that identify a LU, as one path showed them (SPC-4 §7.8). Each is nullopt when
// the path did not give it: the page is not listed in VPD 0x00, the target answered CHECK
// CONDITION (SPC-4 §6.6.1: a target rejects a page it does not support with ILLEGAL REQUEST,
// INVALID FIELD IN CDB), or the data is malformed.
struct IdentityPages {
  std::optional<std::vector<uint8_t>> supported{};       // VPD 0x00
  std::optional<std::vector<Designator>> designators{};  // VPD 0x83
  std::optional<std::string> serial{};                   // VPD 0x80 PRODUCT SERIAL NUMBER
};

// Whether to ask for VPD `page`: when VPD 0x00 lists it, or when VPD 0x00 gave no list at all
// (the page is asked anyway, and a CHECK CONDITION then means "not supported").
bool identity_page_wanted(const std::optional<std::vector<uint8_t>>& supported, uint8_t page);

// The LU's identity:
//   1. the WWID of its VPD 0x83 designators (wwid_from_designators) when one qualifies;
//   2. else "S" + its VPD 0x80 serial number without surrounding blanks (spaces, NULs: SPC-4
//      §7.8.15 pads the ASCII field), when anything is left;
//   3. else "": the LU has no identity. Nothing tells it apart from another LU, so paths that
//      all show "" are taken as one device, and "" differs from every real identity: a path
//      showing one where the first showed none (or the reverse) reaches another device.
std::string lu_identity(const IdentityPages& pages);

}  // namespace scsi
