// SCSI outcomes as std::error_code, and the one decision the multipath layer needs from them:
// retry here, try another path, or hand the error to the NBD client.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <system_error>

#include "scsi/sense.hpp"
#include "scsi/status.hpp"

namespace scsi {

// Category "scsi". An error_code's value packs the whole outcome:
//   value = status << 24 | sense key << 16 | ASC << 8 | ASCQ
// message() renders it ("CHECK CONDITION: MEDIUM ERROR, unrecovered read error (11/00)") and
// default_error_condition() maps it to the std::errc the NBD side turns into an errno.
const std::error_category& category();

// GOOD and CONDITION MET are successes and give an empty error_code; any other status packs the
// sense (if any) beside it. A CHECK CONDITION without sense data packs key/ASC/ASCQ 0.
std::error_code make_error(Status status, const std::optional<Sense>& sense);

// Unpack an error_code of category(); for any other category they return GOOD / NO SENSE / 0.
Status status_of(const std::error_code& ec);
SenseKey sense_key_of(const std::error_code& ec);
uint8_t asc_of(const std::error_code& ec);
uint8_t ascq_of(const std::error_code& ec);

// What to do with a completed command (see classify() in error.cpp for each case and why).
enum class Disposition {
  success,          // the command did its work (GOOD, CONDITION MET, RECOVERED ERROR)
  retry_same_path,  // transient: UNIT ATTENTION, BUSY, TASK SET FULL, ALUA transitioning, ...
  path_error,       // this path cannot serve the LU now: ALUA standby/unavailable,
                    // ABORTED COMMAND, LU not accessible or not mapped behind this port
  target_error,     // the LU's answer, the same on every path: returned to the client (MEDIUM
                    // ERROR, ILLEGAL REQUEST, DATA PROTECT, RESERVATION CONFLICT, ...)
};

std::string_view disposition_name(Disposition disposition);

// Facts from Linux (scsi_error.c scsi_check_sense / scsi_decide_disposition, scsi_lib.c
// scsi_io_completion_action, and dm-multipath's blk_path_error()) and multipath-tools
// (checkers/tur.c). Retry budgets belong to the caller.
Disposition classify(Status status, const std::optional<Sense>& sense);

}  // namespace scsi
