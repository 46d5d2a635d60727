// Every LUN of one target, for `discover --luns`: a login with `pc`, REPORT LUNS, and each LUN
// probed as check-config probes a path's LUN (INQUIRY, the identity as attach reads it, READ
// CAPACITY), then a logout. Implemented in check_config_probe.cpp beside that probe.
#pragma once

#include <cstdint>
#include <string>
#include <system_error>
#include <vector>

#include <iscsi_io/path_session.hpp>

#include "check_config.hpp"

namespace iscsi_mpio::check_config {

struct LunReport {
  uint16_t lun = 0;
  PathReport report;  // vendor, product, wwid, size; device.detail when the LUN is no disk
};

// Blocks (its own io_context). An error when the login or REPORT LUNS fails, with `detail`.
std::error_code list_luns(const iscsi_io::PathConfig& pc, std::vector<LunReport>& luns,
                          std::string& detail);

}  // namespace iscsi_mpio::check_config
