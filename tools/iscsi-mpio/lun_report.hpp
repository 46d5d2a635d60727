// target.luns at attach: which LUNs the target has. One path's session (the first in the
// file that logs in) asks REPORT LUNS (SPC-4 §6.33, sent to LUN 0, which every target answers)
// and each listed LUN's standard INQUIRY for its PERIPHERAL DEVICE TYPE, then logs out before
// the LUN devices log in. Asio stays in lun_report.cpp.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <system_error>
#include <vector>

#include <iscsi_io/path_session.hpp>

#include "options.hpp"

namespace boost::asio {
class io_context;
}

namespace iscsi_mpio::lun_report {

// The LUNs present (PERIPHERAL QUALIFIER 0) with their device types, or an error naming each
// path's failure when no path logs in or the target does not answer REPORT LUNS.
using Handler = std::function<void(std::error_code, const std::string& detail,
                                   std::vector<options::TargetLun> luns)>;

// Tries `paths` in order; `done` runs on the io_context once.
void report(boost::asio::io_context& io, std::vector<iscsi_io::PathConfig> paths, Handler done);

// What a rescan already knows: each LUN an earlier report listed, with its PERIPHERAL DEVICE
// TYPE.
using KnownLuns = std::map<uint16_t, uint8_t>;

// The same questions on a session the LUN devices already use (a rescan): no login, no logout.
// Only LUN numbers missing from `known` get an INQUIRY; a known one keeps its type, so a rescan
// of N unchanged LUNs is one REPORT LUNS, not N + 1 commands. (A LUN replaced under its number
// is each LunDevice's identity check to find, not this report's.) A command that hangs is the
// session's to time out (PathConfig::command_timeout).
void report_on(boost::asio::io_context& io, std::shared_ptr<iscsi_io::PathSession> session,
               KnownLuns known, Handler done);

// The report's answer as what the next rescan knows.
KnownLuns known_from(const std::vector<options::TargetLun>& luns);

}  // namespace iscsi_mpio::lun_report
