#include "lun_report.hpp"

#include <boost/asio.hpp>
#include <chrono>
#include <memory>

#include <iscsi/errors.hpp>
#include <scsi/cdb.hpp>
#include <scsi/error.hpp>
#include <scsi/inquiry.hpp>
#include <scsi/report_luns.hpp>

#include "errors.hpp"
#include "scsi_command.hpp"

namespace iscsi_mpio::lun_report {
namespace {

namespace asio = boost::asio;
using asio::awaitable;
using scsi_command::command;
using scsi_command::wait_for;

constexpr uint32_t inquiry_allocation = 255;
// A session that logs in but then stops answering is cut off here (command_timeout may be 0).
constexpr auto report_deadline = std::chrono::seconds(30);
constexpr auto logout_timeout = std::chrono::seconds(5);

struct Outcome {
  std::error_code ec;
  std::string detail;
  std::vector<options::TargetLun> luns;
};

// REPORT LUNS and an INQUIRY per LUN not in `known` on a logged-in session.
awaitable<void> ask(asio::io_context& io, iscsi_io::PathSession& session, const KnownLuns& known,
                    Outcome& out) {
  std::vector<uint16_t> listed;
  if ((out.ec = co_await scsi_command::report_luns(io, session, listed, out.detail))) co_return;
  std::vector<std::byte> data;
  for (const uint16_t lun : listed) {
    if (const auto found = known.find(lun); found != known.end()) {
      out.luns.push_back({lun, found->second});
      continue;
    }
    std::string detail;
    if (auto ec =
            co_await command(io, session, iscsi::Lun{scsi::encode_lun(lun)},
                             scsi::inquiry(false, 0, 255), inquiry_allocation, data, detail)) {
      if (ec.category() == scsi::category()) continue;  // the LU refuses INQUIRY: not a disk
      out.ec = ec;
      out.detail = "INQUIRY of LUN " + std::to_string(lun) + ": " + detail;
      co_return;
    }
    const auto inquiry = scsi::parse_standard_inquiry(data);
    // SPC-4 §6.6.2: qualifier 0 is a LU connected to this port; others are not there now.
    if (!inquiry || inquiry->peripheral_qualifier != 0) continue;
    out.luns.push_back({lun, inquiry->device_type});
  }
}

// One path: login, the questions under a deadline, logout. False when the login failed.
awaitable<bool> on_path(asio::io_context& io, const iscsi_io::PathConfig& pc, Outcome& out,
                        std::string& failures) {
  auto session = iscsi_io::PathSession::create(io, pc);
  std::string login_detail;
  if (const auto login_error = co_await scsi_command::login(io, *session, login_detail)) {
    failures += (failures.empty() ? "" : "; ") + iscsi_io::describe(pc) + ": " +
                error_text(login_error, login_detail);
    session->close();
    co_return false;
  }
  auto expired = std::make_shared<bool>(false);
  asio::steady_timer watchdog(io, report_deadline);
  watchdog.async_wait([expired, session](boost::system::error_code ec) {
    if (ec) return;
    *expired = true;
    session->close();
  });
  co_await ask(io, *session, {}, out);
  watchdog.cancel();
  if (*expired) {
    out.ec = std::make_error_code(std::errc::timed_out);
    out.detail = "REPORT LUNS via " + iscsi_io::describe(pc) + " did not finish within " +
                 std::to_string(report_deadline.count()) + " s";
    co_return true;
  }
  // Logged out before the LUN devices log in with the same ISID: no session is left behind.
  co_await wait_for(io, [&](std::function<void()> done) {
    session->logout(logout_timeout, [done = std::move(done)](std::error_code) { done(); });
  });
  co_return true;
}

awaitable<void> run(asio::io_context& io, std::vector<iscsi_io::PathConfig> paths, Handler done) {
  Outcome out;
  std::string failures;
  bool answered = false;
  for (const auto& pc : paths) {
    if ((answered = co_await on_path(io, pc, out, failures))) break;
  }
  if (!answered) {
    out.ec = std::make_error_code(std::errc::host_unreachable);
    out.detail = "cannot ask the target for its LUNs: no path logs in (" + failures + ")";
  }
  done(out.ec, out.detail, std::move(out.luns));
}

}  // namespace

void report(asio::io_context& io, std::vector<iscsi_io::PathConfig> paths, Handler done) {
  asio::co_spawn(io, run(io, std::move(paths), std::move(done)), asio::detached);
}

void report_on(asio::io_context& io, std::shared_ptr<iscsi_io::PathSession> session,
               KnownLuns known, Handler done) {
  asio::co_spawn(
      io,
      [&io, session = std::move(session), known = std::move(known),
       done = std::move(done)]() -> awaitable<void> {
        Outcome out;
        co_await ask(io, *session, known, out);
        done(out.ec, out.detail, std::move(out.luns));
      },
      asio::detached);
}

KnownLuns known_from(const std::vector<options::TargetLun>& luns) {
  KnownLuns known;
  for (const auto& lun : luns) known.emplace(lun.lun, lun.device_type);
  return known;
}

}  // namespace iscsi_mpio::lun_report
