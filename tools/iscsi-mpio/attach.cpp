#include "attach.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio.hpp>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <utility>
#include <vector>

#include <common_asio/busy_poll.hpp>
#include <iscsi_io/path_session.hpp>
#include <iscsi_io/route_watch.hpp>
#include <mpio/lun_device.hpp>
#include <nbd_kernel/kernel_device.hpp>
#include <nbd_server/server.hpp>

#include "errors.hpp"
#include "options.hpp"
#include "service.hpp"
#include "status.hpp"
#include "systemd_notify.hpp"

namespace iscsi_mpio::attach {

namespace asio = boost::asio;

namespace {

// The common mistake of two NICs on one subnet: the kernel routes both sessions out of one
// interface, and one cable pulled takes both paths down.
void warn_shared_interfaces(const mpio::LunConfig& lun) {
  std::vector<std::pair<std::string, std::string>> interfaces;
  for (const auto& [pc, priority] : lun.paths) {
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
}

}  // namespace

struct Attachment::Signals {
  explicit Signals(asio::io_context& io) : set(io, SIGINT, SIGTERM, SIGHUP) {}
  asio::signal_set set;
};

int run(const std::string& config_path) {
  Attachment attachment;
  if (!attachment.open(config_path)) return attachment.exit_status();
  return attachment.run();
}

Attachment::Attachment() : io_(std::make_unique<asio::io_context>()) {}

Attachment::~Attachment() = default;

// ---------------------------------------------------------------- open

bool Attachment::open(const std::string& config_path) {
  auto loaded = config::load_file(config_path);
  if (!loaded) {
    std::cerr << loaded.error_report();
    status_ = exit_usage;
    return false;
  }
  cfg_ = std::move(loaded.config());
  config_path_ = config_path;
  for (const auto& warning : loaded.warnings()) spdlog::warn("{}", warning.to_string());
  if (cfg_.initiator.name_generated)
    spdlog::warn("no initiator.name in {}; using {} (add it to the target's ACL, or set it)",
                 config_path, cfg_.initiator.name);

  const mpio::LunConfig lun = options::lun_config(cfg_);
  runtime_ = std::make_unique<service::Runtime>(*io_, cfg_);
  // Caught from here on; handled once run() starts the io_context.
  signals_ = std::make_unique<Signals>(*io_);
  notifier_ = std::make_unique<systemd::Notifier>(*io_);
  std::error_code activation_error;
  std::string activation_detail;
  inherited_listener_ =
      systemd::inherited_listening_socket(cfg_.nbd.listen, activation_error, activation_detail);
  if (activation_error) {
    spdlog::error("{}", activation_detail);
    status_ = exit_usage;
    return false;
  }

  // Before any login: a second attach on the same sockets must not disturb the first's sessions.
  if (std::string detail; runtime_->preflight(detail, inherited_listener_.has_value())) {
    spdlog::error("{}", detail);
    status_ = exit_failure;
    return false;
  }
  runtime_->logging_in();
  for (const auto& path : lun.paths)
    spdlog::info("logging in to {} LUN {} via {}", cfg_.target.iqn, cfg_.target.lun,
                 iscsi_io::describe(path.login));
  warn_shared_interfaces(lun);
  mpio::LunDevice::open(
      *io_, lun,
      [this](std::error_code ec, const std::string& detail, std::shared_ptr<mpio::LunDevice> dev) {
        opened(ec, detail, std::move(dev));
      });
  return true;
}

void Attachment::opened(std::error_code ec, const std::string& detail,
                        std::shared_ptr<mpio::LunDevice> device) {
  if (ec) {
    spdlog::error("{}", error_text(ec, detail));
    status_ = exit_failure;
    io_->stop();
    return;
  }
  device_ = std::move(device);
  const auto& info = device_->info();
  spdlog::info("LUN {}: {} {} WWID {} size {} ({} bytes) block {}", cfg_.target.lun, info.vendor,
               info.product, info.wwid.empty() ? "-" : info.wwid,
               status::size_text(info.size_bytes), info.size_bytes, info.logical_block_size);
  const auto command = device_->command_size();
  spdlog::info("SCSI commands of at most {} KiB ({})", command.bytes >> 10, command.source);
  device_->on_path_event([this](const std::string& path, mpio::PathState state,
                                const std::string& reason) {
    const auto level = state == mpio::PathState::active ? spdlog::level::info : spdlog::level::warn;
    spdlog::log(level, "path {} {}: {}", path, mpio::path_state_name(state), reason);
    runtime_->path_event(path, state);
    notifier_->status_changed();
  });
  // NBD has no message that tells a connected client a new size (proto.md: the size is
  // given in the handshake only): clients connected over the socket see it when they
  // connect again, while /dev/nbdN, whose size is ours to set, takes it in place.
  device_->on_capacity_change([this](uint64_t size) {
    spdlog::warn("LUN capacity changed to {} ({} bytes): new NBD clients see the new size",
                 status::size_text(size), size);
    if (!kernel_) return;
    std::string detail;
    if (auto ec = kernel_->resize(size, detail))
      spdlog::error("{} keeps its old size: {}", kernel_->path(), error_text(ec, detail));
    else
      spdlog::info("{} resized to {} bytes", kernel_->path(), size);
  });
  if (device_->grouping() == mpio::Grouping::group_by_prio && device_->identity().inquiry.tpgs == 0)
    spdlog::warn(
        "the target reports no ALUA support (INQUIRY TPGS 0): group_by_prio puts "
        "every path in one group, as multibus does");
  for (const auto& ps : device_->path_status())
    spdlog::info("path {} {}{}", ps.name, mpio::path_state_name(ps.state),
                 ps.last_error.empty() ? "" : ": " + ps.last_error);
  if (draining_) return;  // a signal came during the login: drain() has stopped the loop
  if (!serve() || !attach_kernel() || !publish()) return fail();
  notifier_->ready(
      [this] { return systemd::path_summary(cfg_.nbd.export_name, device_->path_status()); });
}

// ---------------------------------------------------------------- serve

bool Attachment::serve() {
  auto server_options = options::server_options(cfg_, device_->info());
  server_options.listening_fd = std::exchange(inherited_listener_, std::nullopt);
  server_ = std::make_unique<nbd::Server>(*io_, *device_, std::move(server_options));
  std::string detail;
  if (auto ec = server_->start(detail)) {
    spdlog::error("cannot serve NBD on {}: {}", config::to_string(cfg_.nbd.listen),
                  error_text(ec, detail));
    server_.reset();
    return false;
  }
  spdlog::info("serving export '{}' at {}", cfg_.nbd.export_name, server_->endpoint_uri());
  return true;
}

// ---------------------------------------------------------------- attach_kernel

bool Attachment::attach_kernel() {
  if (cfg_.nbd.device.mode == config::NbdDevice::Mode::none) return true;
  std::error_code ec;
  std::string detail;
  kernel_ = nbd::KernelDevice::attach(
      options::kernel_options(cfg_, device_->info(),
                              options::kernel_interface(std::getenv("ISCSI_MPIO_NBD_INTERFACE"))),
      [this](int fd, std::string& why) { return server_->serve_connected(fd, "kernel", why); }, ec,
      detail);
  if (!kernel_) {
    spdlog::error("cannot attach the export to the kernel: {}", error_text(ec, detail));
    return false;
  }
  for (const auto& note : kernel_->take_notes()) spdlog::warn("{}", note);
  spdlog::info("attached as {} (nbd {}, max_sectors_kb {})", kernel_->path(),
               nbd::kernel_interface_name(kernel_->interface()), kernel_->max_sectors_kb());
  return true;
}

bool Attachment::publish() {
  auto snapshot = [this] {
    status::Snapshot snap;
    snap.export_name = cfg_.nbd.export_name;
    snap.uri = server_ ? server_->endpoint_uri() : "";
    snap.target = cfg_.target.iqn;
    snap.lun = cfg_.target.lun;
    snap.selector = cfg_.multipath.path_selector;
    snap.grouping = std::string(mpio::grouping_name(device_->grouping()));
    snap.failback = options::failback_text(cfg_.multipath.failback);
    snap.no_path_retry = options::no_path_retry_text(cfg_.multipath.no_path_retry);
    snap.info = device_->info();
    snap.paths = device_->path_status();
    return snap;
  };
  if (std::string detail; runtime_->serving(device_, server_.get(), snapshot, detail)) {
    spdlog::error("{}", detail);
    return false;
  }
  std::cout << server_->endpoint_uri() << std::endl;
  if (kernel_) std::cout << kernel_->path() << std::endl;
  return true;
}

// ---------------------------------------------------------------- run

int Attachment::run() {
  wait_for_signal();
  // nbd.busy_poll_us: poll rather than sleep while the load is light (queue depth 1 is where a
  // wake-up per event costs most); with more requests in flight there is always work.
  constexpr size_t busy_poll_max_in_flight = 4;
  common_asio::run_busy_polling(*io_, std::chrono::microseconds(cfg_.nbd.busy_poll_us), [this] {
    return device_ && device_->requests_in_flight() <= busy_poll_max_in_flight;
  });
  return status_;
}

void Attachment::wait_for_signal() {
  signals_->set.async_wait([this](const boost::system::error_code& ec, int signo) {
    if (ec) return;
    if (signo == SIGHUP) {
      reload();
      return wait_for_signal();
    }
    if (draining_) {
      spdlog::warn("second signal: exiting without a clean logout");
      std::_Exit(exit_interrupted);
    }
    spdlog::info("received {}", signo == SIGINT ? "SIGINT" : "SIGTERM");
    wait_for_signal();
    drain();
  });
}

void Attachment::reload() {
  notifier_->reloading();
  if (auto loaded = config::load_file(config_path_); !loaded)
    spdlog::error("reload: {} has errors, a restart would fail:\n{}", config_path_,
                  loaded.error_report());
  else
    spdlog::info("reload: {} is valid; the running attach keeps its settings until a restart",
                 config_path_);
  notifier_->reloaded();
}

// ---------------------------------------------------------------- drain

void Attachment::fail() {
  status_ = exit_failure;
  drain();
}

void Attachment::drain() {
  if (draining_) return;
  draining_ = true;
  spdlog::info("shutting down: draining requests, flushing the LUN cache, logging out");
  notifier_->stopping("shutting down: draining requests, flushing the LUN cache, logging out");
  runtime_->shutting_down();
  if (device_) device_->stop_queueing();
  if (!kernel_) return stop_server();
  // /dev/nbdN lets go first, on a thread of its own: its flush and NBD_CMD_DISC still need
  // the server answering on this one.
  kernel_->detach_async([this](std::error_code ec, const std::string& detail) {
    asio::post(*io_, [this, ec, detail] {
      for (const auto& note : kernel_->take_notes()) spdlog::warn("{}", note);
      if (ec)
        spdlog::warn("detaching {}: {}", kernel_->path(), error_text(ec, detail));
      else
        spdlog::info("{} disconnected", kernel_->path());
      stop_server();
    });
  });
}

void Attachment::stop_server() {
  if (server_)
    server_->stop([this] { close_device(); });
  else
    close_device();
}

void Attachment::close_device() {
  if (!device_) {
    io_->stop();
    return;
  }
  device_->close(std::chrono::seconds(10), [this](std::error_code ec) {
    if (ec) spdlog::warn("final SYNCHRONIZE CACHE failed: {}", ec.message());
    spdlog::info("logged out");
    io_->stop();
  });
}

}  // namespace iscsi_mpio::attach
