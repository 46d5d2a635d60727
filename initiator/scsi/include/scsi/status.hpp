// SCSI status codes (SAM-5 §5.3.1). Obsolete codes (INTERMEDIATE, COMMAND TERMINATED) are not
// named; an unknown byte still fits the enum and is reported by its value.
#pragma once

#include <cstdint>
#include <string_view>

namespace scsi {

enum class Status : uint8_t {
  good = 0x00,
  check_condition = 0x02,
  condition_met = 0x04,
  busy = 0x08,
  reservation_conflict = 0x18,
  task_set_full = 0x28,
  aca_active = 0x30,
  task_aborted = 0x40,
};

// Upper-case names as the standard spells them ("CHECK CONDITION"); "UNKNOWN STATUS" otherwise.
std::string_view status_name(Status status);

}  // namespace scsi
