// One SCSI command on a bare iscsi_io::PathSession, as a coroutine: what check-config's probe and
// attach's LUN report (lun_report.cpp) send before any LunDevice exists.
//
// Names boost::asio::awaitable: include it only from .cpp files that already use Asio.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <system_error>
#include <vector>

#include <iscsi/types.hpp>
#include <iscsi_io/path_session.hpp>
#include <scsi/cdb.hpp>
#include <scsi/error.hpp>

namespace boost::asio {
class io_context;
}

namespace iscsi_mpio::scsi_command {

// Starts an operation with a `done` callback that runs exactly once, maybe before `start`
// returns (PathSession::submit completes a task at once when the path is down), and resumes the
// coroutine after it ran.
boost::asio::awaitable<void> wait_for(boost::asio::io_context& io,
                                      const std::function<void(std::function<void()>)>& start);

// PathSession::start as a coroutine: the login's error (empty on success) and its detail.
boost::asio::awaitable<std::error_code> login(boost::asio::io_context& io,
                                              iscsi_io::PathSession& session, std::string& detail);

// One SCSI command with up to `allocation` bytes of Data-In; `data` keeps what arrived (short
// parameter data is normal for INQUIRY). Transient conditions (UNIT ATTENTION, BUSY, TASK SET
// FULL) are asked again on the same session a few times. `disposition`, when given, gets what
// the SCSI answer means (scsi::classify).
boost::asio::awaitable<std::error_code> command(boost::asio::io_context& io,
                                                iscsi_io::PathSession& session, iscsi::Lun lun,
                                                const scsi::Cdb& cdb, uint32_t allocation,
                                                std::vector<std::byte>& data, std::string& detail,
                                                scsi::Disposition* disposition = nullptr);

// REPORT LUNS (SPC-4 §6.33, sent to LUN 0, which every target answers): the LUNs in flat or
// peripheral addressing, in the target's order; others are not LUNs this program can serve.
boost::asio::awaitable<std::error_code> report_luns(boost::asio::io_context& io,
                                                    iscsi_io::PathSession& session,
                                                    std::vector<uint16_t>& luns,
                                                    std::string& detail);

}  // namespace iscsi_mpio::scsi_command
