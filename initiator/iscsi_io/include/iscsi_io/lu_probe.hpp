// The SCSI exchanges that tell which logical unit a path reaches: its identity (VPD 0x00, 0x83,
// 0x80; SPC-4 §7.8) and the target's LUN list (REPORT LUNS, SPC-4 §6.33). They run through a
// command runner the caller provides, so a LunDevice path (commands pinned to it) and
// check-config (a bare PathSession) ask the same questions and read the answers the same way.
//
// Unlike the other iscsi_io headers this one names boost::asio::awaitable: include it only from
// .cpp files that already use Asio.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <system_error>
#include <vector>

#include <scsi/cdb.hpp>
#include <scsi/identity.hpp>

namespace iscsi_io {

// Runs one SCSI command with up to `allocation` bytes of Data-In on the path being probed and
// leaves in `data` what arrived (short parameter data is normal for INQUIRY). The result: empty
// for GOOD, the SCSI category (scsi::make_error) for the target's answer, anything else when the
// command did not complete; `detail` says what happened. The coroutines below take it by value:
// they keep their own copy however the caller made it.
using DataInCommand = std::function<boost::asio::awaitable<std::error_code>(
    const scsi::Cdb& cdb, uint32_t allocation, std::vector<std::byte>& data, std::string& detail)>;

// VPD 0x00, then 0x83 and 0x80 when scsi::identity_page_wanted says so, into `pages`; the LU's
// identity is then scsi::lu_identity(pages). A SCSI answer other than GOOD leaves that page
// nullopt (not supported); only a command that did not complete (the path failed) is returned as
// an error, with `detail`.
boost::asio::awaitable<std::error_code> read_identity_pages(DataInCommand run,
                                                            scsi::IdentityPages& pages,
                                                            std::string& detail);

// " (the target has LUNs 0, 1)" from REPORT LUNS, to make a wrong LUN in the configuration easy
// to fix; empty when the target will not say. `run_at_lun0` sends to LUN 0, which every target
// answers (SPC-4 §6.33).
boost::asio::awaitable<std::string> luns_on_target(DataInCommand run_at_lun0);

}  // namespace iscsi_io
