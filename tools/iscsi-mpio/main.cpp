// iscsi-mpio: log in to an iSCSI target and serve the LUN as an NBD export.
//
// Exit status: 0 clean shutdown; 1 the target or network failed (login refused, portal
// unreachable, LUN missing); 2 bad command line or configuration; 130 a second signal
// interrupted the shutdown.
#include <unistd.h>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <boost/asio.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include <common_asio/busy_poll.hpp>
#include <config/config.hpp>
#include <config/names.hpp>
#include <iscsi_io/path_session.hpp>
#include <iscsi_io/route_watch.hpp>
#include <mpio/lun_device.hpp>
#include <nbd/export.hpp>
#include <nbd_io/kernel_device.hpp>
#include <nbd_io/server.hpp>

#include "check_config.hpp"
#include "logging.hpp"
#include "options.hpp"
#include "service.hpp"
#include "status.hpp"
#include "verbs.hpp"

namespace iscsi_mpio {
namespace {

namespace asio = boost::asio;

constexpr int exit_ok = 0;
constexpr int exit_failure = 1;
constexpr int exit_usage = 2;
constexpr int exit_interrupted = 130;

using local = asio::local::stream_protocol;

int attach(const std::string& config_path) {
  auto loaded = config::load_file(config_path);
  if (!loaded) {
    std::cerr << loaded.error_report();
    return exit_usage;
  }
  const config::Config& cfg = loaded.config();
  for (const auto& warning : loaded.warnings()) spdlog::warn("{}", warning.to_string());
  if (cfg.initiator.name_generated)
    spdlog::warn("no initiator.name in {}; using {} (add it to the target's ACL, or set it)",
                 config_path, cfg.initiator.name);

  asio::io_context io;
  const mpio::LunConfig lun_config = options::lun_config(cfg);

  std::shared_ptr<mpio::LunDevice> device;
  std::unique_ptr<nbd::Server> server;
  std::unique_ptr<nbd::KernelDevice> kernel;  // nbd.device
  int status = exit_ok;
  bool stopping = false;

  service::Runtime runtime(io, cfg);  // control socket, metrics, progress line
  asio::signal_set signals(io, SIGINT, SIGTERM);
  auto shutdown = [&] {
    if (stopping) return;
    stopping = true;
    spdlog::info("shutting down: draining requests, flushing the LUN cache, logging out");
    runtime.shutting_down();
    auto close_device = [&] {
      if (!device) {
        io.stop();
        return;
      }
      device->close(std::chrono::seconds(10), [&](std::error_code ec) {
        if (ec) spdlog::warn("final SYNCHRONIZE CACHE failed: {}", ec.message());
        spdlog::info("logged out");
        io.stop();
      });
    };
    // Held requests end first, or the server's drain would wait for a path forever.
    if (device) device->stop_queueing();
    auto stop_server = [&server, close_device] {
      if (server)
        server->stop(close_device);
      else
        close_device();
    };
    if (!kernel) return stop_server();
    // /dev/nbdN lets go first, on a thread of its own: its flush and NBD_CMD_DISC still need
    // the server answering on this one.
    kernel->detach_async([&, stop_server](std::error_code ec, const std::string& detail) {
      asio::post(io, [&, stop_server, ec, detail] {
        for (const auto& note : kernel->take_notes()) spdlog::warn("{}", note);
        if (ec)
          spdlog::warn("detaching {}: {}", kernel->path(), detail.empty() ? ec.message() : detail);
        else
          spdlog::info("{} disconnected", kernel->path());
        stop_server();
      });
    });
  };
  std::function<void(const boost::system::error_code&, int)> on_signal =
      [&](const boost::system::error_code& ec, int signo) {
        if (ec) return;
        if (stopping) {
          spdlog::warn("second signal: exiting without a clean logout");
          std::_Exit(exit_interrupted);
        }
        spdlog::info("received {}", signo == SIGINT ? "SIGINT" : "SIGTERM");
        signals.async_wait(on_signal);
        shutdown();
      };
  signals.async_wait(on_signal);

  // Before any login: a second attach on the same sockets must not disturb the first's sessions.
  if (std::string detail; runtime.preflight(detail)) {
    spdlog::error("{}", detail);
    return exit_failure;
  }
  runtime.logging_in();
  for (const auto& path : lun_config.paths)
    spdlog::info("logging in to {} LUN {} via {}", cfg.target.iqn, cfg.target.lun,
                 iscsi_io::describe(path.login));
  // The common mistake of two NICs on one subnet: the kernel routes both sessions out of one
  // interface, and one cable pulled takes both paths down.
  std::vector<std::pair<std::string, std::string>> interfaces;
  for (const auto& [pc, priority] : lun_config.paths) {
    auto dev = iscsi_io::outgoing_interface(
        {pc.portal_host, pc.portal_port, pc.source_address, pc.interface_name});
    if (!dev) continue;
    for (const auto& [other, other_dev] : interfaces)
      if (other_dev == *dev)
        spdlog::warn(
            "paths {} and {} both leave through interface {}: that is one path, not "
            "two (give each NIC its own subnet, or policy-route each source address)",
            other, iscsi_io::describe(pc), *dev);
    interfaces.emplace_back(iscsi_io::describe(pc), *dev);
  }
  mpio::LunDevice::open(
      io, lun_config,
      [&](std::error_code ec, const std::string& detail, std::shared_ptr<mpio::LunDevice> dev) {
        if (ec) {
          spdlog::error("{}", detail.empty() ? ec.message() : detail);
          status = exit_failure;
          io.stop();
          return;
        }
        device = std::move(dev);
        const auto& info = device->info();
        spdlog::info("LUN {}: {} {} WWID {} size {} ({} bytes) block {}", cfg.target.lun,
                     info.vendor, info.product, info.wwid.empty() ? "-" : info.wwid,
                     status::size_text(info.size_bytes), info.size_bytes, info.logical_block_size);
        const auto command = device->command_size();
        spdlog::info("SCSI commands of at most {} KiB ({})", command.bytes >> 10, command.source);
        device->on_path_event(
            [&](const std::string& path, mpio::PathState state, const std::string& reason) {
              const auto level =
                  state == mpio::PathState::active ? spdlog::level::info : spdlog::level::warn;
              spdlog::log(level, "path {} {}: {}", path, mpio::path_state_name(state), reason);
              runtime.path_event(path, state);
            });
        device->on_capacity_change([&](uint64_t size) {
          spdlog::warn("LUN capacity changed to {} ({} bytes): new NBD clients see the new size",
                       status::size_text(size), size);
        });
        if (device->grouping() == mpio::Grouping::group_by_prio &&
            device->identity().inquiry.tpgs == 0)
          spdlog::warn(
              "the target reports no ALUA support (INQUIRY TPGS 0): group_by_prio puts "
              "every path in one group, as multibus does");
        for (const auto& ps : device->path_status())
          spdlog::info("path {} {}{}", ps.name, mpio::path_state_name(ps.state),
                       ps.last_error.empty() ? "" : ": " + ps.last_error);
        if (stopping) {
          shutdown();
          return;
        }
        server = std::make_unique<nbd::Server>(io, *device, options::server_options(cfg, info));
        std::string server_detail;
        if (auto sec = server->start(&server_detail)) {
          spdlog::error("cannot serve NBD on {}: {}", config::to_string(cfg.nbd.listen),
                        server_detail.empty() ? sec.message() : server_detail);
          status = exit_failure;
          server.reset();
          stopping = false;
          shutdown();
          return;
        }
        spdlog::info("serving export '{}' at {}", cfg.nbd.export_name, server->endpoint_uri());
        if (cfg.nbd.device.mode != config::NbdDevice::Mode::none) {
          std::error_code kec;
          std::string kdetail;
          kernel = nbd::KernelDevice::attach(
              options::kernel_options(
                  cfg, info, options::kernel_interface(std::getenv("ISCSI_MPIO_NBD_INTERFACE"))),
              [&](int fd) { return server->serve_connected(fd, "kernel"); }, kec, kdetail);
          if (!kernel) {
            spdlog::error("cannot attach the export to the kernel: {}",
                          kdetail.empty() ? kec.message() : kdetail);
            status = exit_failure;
            shutdown();
            return;
          }
          for (const auto& note : kernel->take_notes()) spdlog::warn("{}", note);
          spdlog::info("attached as {} (nbd {}, max_sectors_kb {})", kernel->path(),
                       nbd::kernel_interface_name(kernel->interface()), kernel->max_sectors_kb());
        }
        auto snapshot = [&] {
          status::Snapshot snap;
          snap.export_name = cfg.nbd.export_name;
          snap.uri = server ? server->endpoint_uri() : "";
          snap.target = cfg.target.iqn;
          snap.lun = cfg.target.lun;
          snap.selector = cfg.multipath.path_selector;
          snap.grouping = std::string(mpio::grouping_name(device->grouping()));
          snap.failback = options::failback_text(cfg.multipath.failback);
          snap.no_path_retry = options::no_path_retry_text(cfg.multipath.no_path_retry);
          snap.info = device->info();
          snap.paths = device->path_status();
          return snap;
        };
        if (std::string detail; runtime.serving(device, server.get(), snapshot, detail)) {
          spdlog::error("{}", detail);
          status = exit_failure;
          shutdown();
          return;
        }
        std::cout << server->endpoint_uri() << std::endl;
        if (kernel) std::cout << kernel->path() << std::endl;
      });
  // nbd.busy_poll_us: poll rather than sleep while the load is light (queue depth 1 is where a
  // wake-up per event costs most); with more requests in flight there is always work.
  constexpr size_t busy_poll_max_in_flight = 4;
  common_asio::run_busy_polling(io, std::chrono::microseconds(cfg.nbd.busy_poll_us), [&] {
    return device && device->requests_in_flight() <= busy_poll_max_in_flight;
  });
  return status;
}

int show_status(const std::string& config_path, bool json) {
  auto loaded = config::load_file(config_path);
  if (!loaded) {
    std::cerr << loaded.error_report();
    return exit_usage;
  }
  const auto& path = loaded.config().control.socket;
  asio::io_context io;
  local::socket socket(io);
  boost::system::error_code ec;
  socket.connect(local::endpoint(path), ec);
  if (ec) {
    std::cerr << "no running attach answers on " << path << ": " << ec.message() << "\n";
    return exit_failure;
  }
  const std::string request = json ? "json\n" : "tree\n";
  asio::write(socket, asio::buffer(request), ec);
  std::string answer;
  asio::read(socket, asio::dynamic_buffer(answer, 1 << 20), ec);
  if (answer.empty()) {
    std::cerr << "the attach on " << path << " gave no answer: " << ec.message() << "\n";
    return exit_failure;
  }
  std::cout << answer;
  return answer.rfind("error:", 0) == 0 ? exit_failure : exit_ok;
}

int discover(const std::string& portal_text, const std::optional<std::string>& source,
             const std::string& initiator_name) {
  auto parsed = config::parse_portal(portal_text);
  if (auto* problem = std::get_if<std::string>(&parsed)) {
    std::cerr << "portal '" << portal_text << "': " << *problem << "\n";
    return exit_usage;
  }
  if (source && !config::ip_literal_family(*source)) {
    std::cerr << "--source '" << *source << "' is not an IPv4 or IPv6 address\n";
    return exit_usage;
  }
  auto portal = std::get<config::Portal>(parsed);
  iscsi_io::PathConfig pc;
  pc.portal_host = portal.host;
  pc.portal_port = portal.port;
  pc.source_address = source;
  pc.initiator_name = initiator_name.empty() ? config::generate_initiator_name() : initiator_name;
  pc.isid = iscsi_io::random_isid();
  asio::io_context io;
  auto path = iscsi_io::PathSession::create(io, pc);
  int status = exit_ok;
  path->discover([&](std::error_code ec, const std::string& detail,
                     std::vector<iscsi::DiscoveredTarget> targets) {
    if (ec) {
      std::cerr << "discovery on " << iscsi_io::describe(pc)
                << " failed: " << (detail.empty() ? ec.message() : detail) << "\n";
      status = exit_failure;
      return;
    }
    // One line per portal, as `iscsiadm -m discovery` prints: ADDRESS:PORT,TPGT TARGET
    for (const auto& t : targets) {
      if (t.portals.empty()) std::cout << "-  " << t.name << "\n";
      for (const auto& p : t.portals)
        std::cout << config::to_string(config::Portal{p.host, p.port}) << "," << p.portal_group_tag
                  << " " << t.name << "\n";
    }
  });
  io.run();
  return status;
}

}  // namespace
}  // namespace iscsi_mpio

int main(int argc, char** argv) {
  // A closed stderr (a log pipe whose reader went away) must not kill a daemon holding a LUN;
  // sockets already send with MSG_NOSIGNAL.
  std::signal(SIGPIPE, SIG_IGN);
  using namespace iscsi_mpio;
  CLI::App app{
      "iscsi-mpio: userspace iSCSI initiator with multipath I/O, serving the LUN over NBD"};
  app.require_subcommand(1);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  std::string log_format = "text";
  app.add_option("--log-format", log_format, "text, or json: one JSON object per line")
      ->check(CLI::IsMember({"text", "json"}));

  std::string config_path;
  auto* attach_cmd = app.add_subcommand("attach", "log in and serve the LUN as an NBD export");
  attach_cmd->add_option("config", config_path, "YAML configuration file")->required();

  std::string portal;
  std::optional<std::string> source;
  std::string initiator_name;
  auto* discover_cmd =
      app.add_subcommand("discover", "list the targets a portal reports (SendTargets=All)");
  discover_cmd->add_option("portal", portal, "HOST[:PORT], [IPv6][:PORT]")->required();
  discover_cmd->add_option("--source", source, "local address to connect from");
  discover_cmd->add_option("--initiator-name", initiator_name, "iSCSI initiator name to present");

  bool status_json = false;
  auto* status_cmd =
      app.add_subcommand("status", "show the paths of a running attach, like multipath -ll");
  status_cmd->add_option("config", config_path, "the attach's YAML configuration file")->required();
  status_cmd->add_flag("--json", status_json, "machine-readable output");

  check_config::Options check_options;
  auto* check_cmd = app.add_subcommand(
      "check-config", "validate a configuration and probe each of its paths on its own");
  check_cmd->add_option("config", config_path, "YAML configuration file")->required();
  check_cmd->add_flag("--strict", check_options.strict, "warnings fail too (exit 1)");
  check_cmd->add_flag("--offline", check_options.offline,
                      "no traffic: validate, then check interfaces and MTUs only");

  const verbs::ControlVerbs control_verbs(app);  // paths, fail-path, reinstate-path

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? exit_ok : exit_usage;
  }
  // Logs go to stderr; stdout carries only results (the NBD URI, discovered targets).
  logging::setup(spdlog::level::from_str(log_level), *logging::parse_format(log_format));

  if (*attach_cmd) return attach(config_path);
  if (*discover_cmd) return discover(portal, source, initiator_name);
  if (*status_cmd) return show_status(config_path, status_json);
  if (const auto code = control_verbs.run()) return *code;
  if (*check_cmd) return check_config::run(config_path, check_options, std::cout, std::cerr);
  return exit_usage;
}
