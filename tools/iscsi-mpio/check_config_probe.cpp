// check-config's probe: every path on its own, all at once on one io_context. Per path: the
// local interface and its MTU, a bare TCP connect (so a refused or silent portal is told apart
// from a refused login), an iSCSI login through iscsi_io::PathSession as attach does it, then
// INQUIRY, the LU's identity as attach reads it (iscsi_io/lu_probe.hpp) and READ CAPACITY through
// PathSession::submit, and a logout.
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <ostream>

#include <config/config.hpp>
#include <iscsi/errors.hpp>
#include <iscsi_io/lu_probe.hpp>
#include <iscsi_io/path_session.hpp>
#include <iscsi_io/route_watch.hpp>
#include <scsi/capacity.hpp>
#include <scsi/cdb.hpp>
#include <scsi/error.hpp>
#include <scsi/identity.hpp>
#include <scsi/inquiry.hpp>
#include <scsi/report_luns.hpp>
#include <scsi/sense.hpp>
#include <scsi/status.hpp>

#include "check_config.hpp"
#include "discovered_paths.hpp"
#include "errors.hpp"
#include "lun_listing.hpp"
#include "lun_report.hpp"
#include "options.hpp"
#include "scsi_command.hpp"

namespace iscsi_mpio::check_config {
namespace {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
constexpr auto nothrow = asio::as_tuple(use_awaitable);
using scsi_command::command;
using scsi_command::wait_for;

// A probe that hangs after login (a target that stops answering) is cut off here; commands
// have their own command_timeout, which may be 0 (never).
constexpr auto device_probe_deadline = std::chrono::seconds(30);
constexpr auto logout_timeout = std::chrono::seconds(5);

// SIOCGIFMTU (netdevice(7)); works where /sys is not mounted, as in some containers.
std::optional<uint32_t> interface_mtu(const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ) return std::nullopt;
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  ifreq request{};
  std::memcpy(request.ifr_name, name.data(), name.size());
  const int rc = ::ioctl(fd, SIOCGIFMTU, &request);
  ::close(fd);
  if (rc != 0 || request.ifr_mtu <= 0) return std::nullopt;
  return static_cast<uint32_t>(request.ifr_mtu);
}

// The table cell for a socket error: short words an admin acts on.
std::string connect_summary(const std::error_code& ec) {
  if (ec == std::errc::connection_refused) return "refused";
  if (ec == std::errc::timed_out) return "timeout";
  if (ec == std::errc::network_unreachable) return "no route";
  if (ec == std::errc::host_unreachable) return "unreachable";
  if (ec == std::errc::address_not_available) return "bad source";
  if (ec == std::errc::operation_not_permitted) return "not permitted";
  if (ec == std::errc::no_such_device) return "no interface";
  return "failed";
}

void fail(Step& step, std::string summary, std::string detail) {
  step.outcome = Step::Outcome::failed;
  step.summary = std::move(summary);
  step.detail = std::move(detail);
}

void succeed(Step& step, std::string summary = "ok") {
  step.outcome = Step::Outcome::ok;
  step.summary = std::move(summary);
}

// Connects from the path's source address / interface as PathSession does, then closes: the
// connect column tells "the portal does not answer" from "the target refused the login".
awaitable<void> probe_connect(const iscsi_io::PathConfig& pc, Step& step) {
  auto executor = co_await asio::this_coro::executor;
  boost::system::error_code ec;
  tcp::endpoint endpoint;
  const auto address = asio::ip::make_address(pc.portal_host, ec);
  if (ec) {
    tcp::resolver resolver(executor);
    auto [rec, results] =
        co_await resolver.async_resolve(pc.portal_host, std::to_string(pc.portal_port), nothrow);
    if (rec || results.empty()) {
      fail(step, "no address", "cannot resolve " + pc.portal_host + ": " + rec.message());
      co_return;
    }
    endpoint = results.begin()->endpoint();
  } else {
    endpoint = tcp::endpoint(address, pc.portal_port);
  }
  tcp::socket socket(executor);
  socket.open(endpoint.protocol(), ec);
  if (ec) {
    fail(step, "failed", "socket: " + ec.message());
    co_return;
  }
  if (pc.interface_name) {
    const auto& name = *pc.interface_name;
    if (::setsockopt(socket.native_handle(), SOL_SOCKET, SO_BINDTODEVICE, name.c_str(),
                     static_cast<socklen_t>(name.size())) != 0) {
      const std::error_code err(errno, std::system_category());
      fail(step, connect_summary(err),
           "cannot bind to interface " + name + ": " + err.message() +
               (err == std::errc::operation_not_permitted ? " (needs CAP_NET_RAW)" : ""));
      co_return;
    }
  }
  if (pc.source_address) {
    const auto source = asio::ip::make_address(*pc.source_address, ec);
    if (!ec) socket.bind(tcp::endpoint(source, 0), ec);
    if (ec) {
      const std::error_code err(ec.value(), std::system_category());
      fail(step, connect_summary(err),
           "cannot bind to source address " + *pc.source_address + ": " + ec.message() +
               (err == std::errc::address_not_available ? " (no interface of this host has it)"
                                                        : ""));
      co_return;
    }
  }
  asio::steady_timer timer(executor, pc.login_timeout);
  const auto started = std::chrono::steady_clock::now();
  auto result = co_await (socket.async_connect(endpoint, nothrow) || timer.async_wait(nothrow));
  if (result.index() == 1) {
    fail(step, "timeout",
         "no answer from " + iscsi_io::describe(pc) + " within " +
             std::to_string(
                 std::chrono::duration_cast<std::chrono::seconds>(pc.login_timeout).count()) +
             " s (target.login_timeout): a firewall dropping packets, or no host at that address");
    co_return;
  }
  if (auto [cec] = std::get<0>(result); cec) {
    const std::error_code err(cec.value(), std::system_category());
    fail(step, connect_summary(err), cec.message());
    co_return;
  }
  const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::steady_clock::now() - started)
                          .count();
  char text[32];
  std::snprintf(text, sizeof text, "ok %.1fms", static_cast<double>(micros) / 1000.0);
  succeed(step, text);
  socket.close(ec);
}

// What the logical unit behind this path is: identity as attach computes it (the same
// iscsi_io::read_identity_pages and scsi::lu_identity) and size.
awaitable<void> probe_device(asio::io_context& io, iscsi_io::PathSession& session,
                             uint16_t lun_number, PathReport& report) {
  const iscsi::Lun lun{scsi::encode_lun(lun_number)};
  const std::string lun_text = "LUN " + std::to_string(lun_number);
  std::vector<std::byte> data;
  std::string detail;
  const auto scsi_answer = [](const std::error_code& ec) {
    return ec.category() == scsi::category();
  };
  const auto runner = [&io, &session](iscsi::Lun to) -> iscsi_io::DataInCommand {
    return [&io, &session, to](const scsi::Cdb& cdb, uint32_t allocation,
                               std::vector<std::byte>& data, std::string& detail) {
      return command(io, session, to, cdb, allocation, data, detail);
    };
  };
  const auto luns_on_target = [&] { return iscsi_io::luns_on_target(runner(iscsi::Lun{0})); };

  // SPC-4 §6.6: INQUIRY answers for any LUN (PERIPHERAL QUALIFIER 3 when there is none there)
  // and never reports a unit attention.
  if (auto ec =
          co_await command(io, session, lun, scsi::inquiry(false, 0, 255), 255, data, detail)) {
    fail(report.device, "INQUIRY failed", "INQUIRY failed: " + detail);
    co_return;
  }
  const auto inquiry = scsi::parse_standard_inquiry(data);
  if (!inquiry) {
    fail(report.device, "bad INQUIRY", "malformed standard INQUIRY data");
    co_return;
  }
  if (inquiry->peripheral_qualifier != 0) {
    fail(report.device, "no such LUN",
         lun_text + " does not exist on the target" + co_await luns_on_target());
    co_return;
  }
  if (inquiry->device_type != 0x00) {
    fail(report.device, "not a disk",
         lun_text + " is not a block device (peripheral device type " +
             std::to_string(inquiry->device_type) + ")" + co_await luns_on_target());
    co_return;
  }
  report.vendor = inquiry->vendor;
  report.product = inquiry->product;

  scsi::IdentityPages pages;
  if (co_await iscsi_io::read_identity_pages(runner(lun), pages, detail)) {
    fail(report.device, "lost", detail);
    co_return;
  }
  report.wwid = scsi::lu_identity(pages);

  // SBC-3 §5.16: READ CAPACITY(16) is needed past 2 TiB; (10) for targets without it.
  auto disposition = scsi::Disposition::success;
  auto ec =
      co_await command(io, session, lun, scsi::read_capacity16(32), 32, data, detail, &disposition);
  if (ec && disposition == scsi::Disposition::path_error) {
    // An ALUA standby or unavailable port (SPC-4 §5.15.2.4): the LU is there, identified, but
    // carries I/O through this port only once the target makes its group active.
    report.notes.push_back(lun_text + " is not accessible through this port now (" + detail +
                           "): the path carries I/O only when the target activates it");
    succeed(report.device);
    co_return;
  }
  if (!ec) {
    if (const auto rc = scsi::parse_read_capacity16(data)) {
      report.size_bytes = (rc->last_lba + 1) * rc->block_length;
      report.block_size = rc->block_length;
    }
  }
  if (report.block_size == 0 && (!ec || scsi_answer(ec))) {
    ec = co_await command(io, session, lun, scsi::read_capacity10(), 8, data, detail);
    if (!ec) {
      if (const auto rc = scsi::parse_read_capacity10(data)) {
        report.size_bytes = (uint64_t{rc->last_lba} + 1) * rc->block_length;
        report.block_size = rc->block_length;
      } else {
        detail = "malformed READ CAPACITY(10) data";
        ec = iscsi::errc::protocol_violation;
      }
    }
  }
  if (report.block_size == 0) {
    fail(report.device, "no capacity", "READ CAPACITY failed: " + detail);
    co_return;
  }
  succeed(report.device);
}

// What this host alone says about a path: the routing table's choice of interface (a lookup
// that sends nothing) and its MTU.
void local_facts(const iscsi_io::PathConfig& pc, PathReport& report) {
  report.name = iscsi_io::describe(pc);
  report.interface = iscsi_io::outgoing_interface(
      {pc.portal_host, pc.portal_port, pc.source_address, pc.interface_name});
  if (report.interface) report.mtu = interface_mtu(*report.interface);
}

awaitable<void> probe_path(asio::io_context& io, iscsi_io::PathConfig pc, uint16_t lun,
                           PathReport& report) {
  local_facts(pc, report);
  co_await probe_connect(pc, report.connect);
  if (!report.connect.ok()) co_return;

  auto session = iscsi_io::PathSession::create(io, pc);
  std::string login_detail;
  if (const auto login_error = co_await scsi_command::login(io, *session, login_detail)) {
    const std::string detail = error_text(login_error, login_detail);
    if (login_error.category() == std::system_category() ||
        login_error.category() == std::generic_category()) {
      // The portal answered the bare connect a moment ago but not this one.
      fail(report.connect, connect_summary(login_error), detail);
    } else if (login_error.category() == iscsi::login_status_category()) {
      // The Login Response's status (RFC 7143 §11.13.5), e.g. "authentication failure (0201)".
      fail(report.login, login_error.message(), detail);
    } else {
      fail(report.login, login_error == iscsi::errc::login_timeout ? "timeout" : "failed", detail);
    }
    session->close();
    co_return;
  }
  succeed(report.login);

  auto expired = std::make_shared<bool>(false);
  asio::steady_timer watchdog(io, device_probe_deadline);
  watchdog.async_wait([expired, session](boost::system::error_code ec) {
    if (ec) return;
    *expired = true;
    session->close();
  });
  co_await probe_device(io, *session, lun, report);
  watchdog.cancel();
  if (*expired)
    fail(report.device, "timeout",
         "the device probe did not finish within " + std::to_string(device_probe_deadline.count()) +
             " s");

  co_await wait_for(io, [&](std::function<void()> done) {
    session->logout(logout_timeout, [done = std::move(done)](std::error_code) { done(); });
  });
}

// `discover --luns`: REPORT LUNS, then probe_device for each LUN, on one logged-in session.
awaitable<void> list_target_luns(asio::io_context& io, iscsi_io::PathConfig pc,
                                 std::vector<LunReport>& luns, std::error_code& error,
                                 std::string& detail) {
  auto session = iscsi_io::PathSession::create(io, pc);
  error = co_await scsi_command::login(io, *session, detail);
  if (error) {
    session->close();
    co_return;
  }
  std::vector<uint16_t> listed;
  error = co_await scsi_command::report_luns(io, *session, listed, detail);
  if (!error) {
    for (const uint16_t number : listed) {
      luns.push_back(LunReport{.lun = number, .report = {}});
      co_await probe_device(io, *session, number, luns.back().report);
    }
  }
  co_await wait_for(io, [&](std::function<void()> done) {
    session->logout(logout_timeout, [done = std::move(done)](std::error_code) { done(); });
  });
}

// target.luns: asks the target for its LUNs as attach does and prints the ones attach would
// serve, with their export names. False (printed) when attach would refuse to start.
bool plan_luns(asio::io_context& io, const config::Config& cfg,
               std::vector<options::LunPlan>& plans, std::ostream& out) {
  std::vector<iscsi_io::PathConfig> logins;
  for (const auto& path : cfg.paths)
    logins.push_back(options::path_config(cfg, path, iscsi_io::random_isid()));
  std::error_code ec;
  std::string detail;
  std::vector<options::TargetLun> on_target;
  lun_report::report(
      io, std::move(logins),
      [&](std::error_code e, const std::string& d, std::vector<options::TargetLun> luns) {
        ec = e;
        detail = d;
        on_target = std::move(luns);
        io.stop();
      });
  io.run();
  io.restart();
  std::vector<std::string> skipped;
  if (!ec) ec = options::lun_plans(cfg, on_target, plans, detail, skipped);
  for (const auto& line : skipped) out << line << "\n";
  if (ec) {
    out << "error: " << error_text(ec, detail) << "\n";
    return false;
  }
  std::string served;
  for (const auto& plan : plans)
    served +=
        (served.empty() ? "" : ", ") + std::to_string(plan.lun) + " as '" + plan.export_name + "'";
  out << "serves LUN" << (plans.size() > 1 ? "s " : " ") << served
      << "; the paths are probed with LUN " << plans.front().lun << "\n";
  return true;
}

}  // namespace

std::error_code list_luns(const iscsi_io::PathConfig& pc, std::vector<LunReport>& luns,
                          std::string& detail) {
  asio::io_context io;
  std::error_code error;
  asio::co_spawn(io, list_target_luns(io, pc, luns, error, detail),
                 [&](std::exception_ptr) { io.stop(); });
  io.run();
  return error;
}

int run(const std::string& config_path, const Options& options, std::ostream& out,
        std::ostream& err) {
  auto loaded = config::load_file(config_path);
  if (!loaded) {
    err << loaded.error_report();
    return exit_usage;
  }
  for (const auto& warning : loaded.warnings()) err << "warning: " << warning.to_string() << "\n";
  config::Config& cfg = loaded.config();

  std::string luns_text = "LUN " + std::to_string(cfg.target.lun);
  if (cfg.target.luns) {
    luns_text = cfg.target.luns->all ? "all LUNs" : "LUNs ";
    for (const auto lun : config::listed_luns(cfg))
      luns_text += (luns_text.ends_with(' ') ? "" : ", ") + std::to_string(lun);
  }
  out << "target " << cfg.target.iqn << " " << luns_text << ", initiator " << cfg.initiator.name
      << (cfg.initiator.name_generated
              ? " (generated: set initiator.name when the target has an ACL)"
              : "")
      << "\n";

  // `discover:` entries: the paths attach would log in on; offline, their discovery portals.
  discovery::Outcome discovered;
  if (!options.offline) {
    if (std::string detail; !discovery::discover_paths(cfg, discovered, detail)) {
      err << detail << "\n";
      return exit_problem;
    }
    for (const auto& skipped : discovered.skipped) out << "discovery: " << skipped << "\n";
    for (const auto& problem : discovered.problems) out << "error: " << problem << "\n";
  }
  const int discovery_status = discovered.problems.empty() ? exit_ok : exit_problem;

  std::vector<PathReport> reports(cfg.paths.size());
  if (options.offline) {
    for (size_t i = 0; i < cfg.paths.size(); ++i) {
      config::Path path = cfg.paths[i];
      if (path.discover) path.portal = *path.discover;
      local_facts(options::path_config(cfg, path, iscsi_io::random_isid()), reports[i]);
    }
    const auto findings = assess(reports, cfg.target.wwid);
    out << render(reports, findings);
    return exit_code(findings, options.strict);
  }

  asio::io_context io;
  options::LunPlan probed = options::single_lun_plan(cfg);
  if (options::needs_lun_report(cfg)) {
    std::vector<options::LunPlan> plans;
    if (!plan_luns(io, cfg, plans, out)) return exit_problem;
    probed = plans.front();
  }
  // Stopped when the last probe is done: a logout answered early still leaves its timeout timer
  // armed inside PathSession, and nothing else is left to wait for.
  size_t running = cfg.paths.size();
  for (size_t i = 0; i < cfg.paths.size(); ++i)
    asio::co_spawn(io,
                   probe_path(io, options::path_config(cfg, cfg.paths[i], iscsi_io::random_isid()),
                              probed.lun, reports[i]),
                   [&](std::exception_ptr) {
                     if (--running == 0) io.stop();
                   });
  io.run();

  const auto findings = assess(reports, probed.wwid);
  out << render(reports, findings);
  return std::max(exit_code(findings, options.strict), discovery_status);
}

}  // namespace iscsi_mpio::check_config
