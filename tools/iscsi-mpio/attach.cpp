#include "attach.hpp"

#include <unistd.h>

#include <spdlog/spdlog.h>
#include <algorithm>
#include <boost/asio.hpp>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <utility>
#include <variant>
#include <vector>

#include <common_asio/busy_poll.hpp>
#include <iscsi_io/path_session.hpp>
#include <iscsi_io/route_watch.hpp>
#include <iscsi_io/session_pool.hpp>
#include <mpio/lun_device.hpp>
#include <nbd_kernel/kernel_device.hpp>
#include <nbd_server/server.hpp>

#include "discovered_paths.hpp"
#include "errors.hpp"
#include "lun_report.hpp"
#include "options.hpp"
#include "reload_apply.hpp"
#include "reload_plan.hpp"
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

struct Attachment::Lun {
  options::LunPlan plan;
  std::string open_error;  // why its device did not open
  std::shared_ptr<mpio::LunDevice> device;
  std::unique_ptr<nbd::KernelDevice> kernel;  // plan.device
  bool retired = false;                       // not served (any more): its export removed
  bool replaced = false;                      // another device under its number: never served again
  bool opening = false;                       // found by a rescan, logging in
  uint64_t reloads_at_open = 0;  // Attachment::reloads_ when it began: a reload meanwhile missed it
};

struct Attachment::Rescans {
  explicit Rescans(asio::io_context& io) : timer(io) {}
  asio::steady_timer timer;
};

struct Attachment::Signals {
  explicit Signals(asio::io_context& io) : set(io, SIGINT, SIGTERM, SIGHUP) {}
  asio::signal_set set;
};

int run(const std::string& config_path, bool log_level_given) {
  Attachment attachment;
  if (!attachment.open(config_path, log_level_given)) return attachment.exit_status();
  return attachment.run();
}

Attachment::Attachment() : io_(std::make_unique<asio::io_context>()) {}

Attachment::~Attachment() = default;

// ---------------------------------------------------------------- open

bool Attachment::open(const std::string& config_path, bool log_level_given) {
  auto loaded = config::load_file(config_path);
  if (!loaded) {
    std::cerr << loaded.error_report();
    status_ = exit_usage;
    return false;
  }
  cfg_ = std::move(loaded.config());
  if (!log_level_given) spdlog::set_level(spdlog::level::from_str(cfg_.log.level));
  config_path_ = config_path;
  for (const auto& warning : loaded.warnings()) spdlog::warn("{}", warning.to_string());
  if (cfg_.initiator.name_generated)
    spdlog::warn("no initiator.name in {}; using {} (add it to the target's ACL, or set it)",
                 config_path, cfg_.initiator.name);

  // `discover:` entries become the paths their SendTargets answers leave (discovered_paths.hpp).
  path_entries_ = cfg_.paths;
  if (std::string detail; !discovery::discover_paths(cfg_, discovered_, detail)) {
    spdlog::error("{}", detail);
    status_ = exit_failure;
    return false;
  }
  discovery_problems_ = discovered_.problems;  // logged: a rescan repeats only new ones
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
  if (!options::needs_lun_report(cfg_)) {
    open_devices({options::single_lun_plan(cfg_)});
    return true;
  }
  // The report's session is logged out before the LUN devices log in.
  const mpio::LunConfig paths = options::lun_config(cfg_);
  std::vector<iscsi_io::PathConfig> logins;
  for (const auto& path : paths.paths) logins.push_back(path.login);
  spdlog::info("asking {} for its LUNs", cfg_.target.iqn);
  lun_report::report(*io_, std::move(logins),
                     [this](std::error_code ec, const std::string& detail,
                            std::vector<options::TargetLun> on_target) {
                       reported(ec, detail, std::move(on_target));
                     });
  return true;
}

void Attachment::reported(std::error_code ec, const std::string& detail,
                          std::vector<options::TargetLun> on_target) {
  std::vector<options::LunPlan> plans;
  std::string problem = detail;
  std::vector<std::string> skipped;
  if (!ec) ec = options::lun_plans(cfg_, on_target, plans, problem, skipped);
  for (const auto& line : skipped) spdlog::info("{}", line);
  if (ec) {
    spdlog::error("{}", error_text(ec, problem));
    status_ = exit_failure;
    io_->stop();
    return;
  }
  known_luns_ = lun_report::known_from(on_target);
  if (draining_) return;  // a signal came during the report: drain() has stopped the loop
  open_devices(std::move(plans));
}

void Attachment::open_devices(std::vector<options::LunPlan> plans) {
  // Every LUN over the same sessions: one per path at the target, as open-iscsi logs in once
  // per portal and iface whatever the number of LUNs (iscsi_io::SessionPool).
  std::vector<mpio::LunConfig> configs =
      options::lun_configs(cfg_, plans, options::Sessions::shared);
  pool_ = iscsi_io::SessionPool::create(*io_);
  paths_ = configs.front().paths;
  for (auto& config : configs) config.sessions = pool_;
  std::string lun_list;
  for (const auto& plan : plans)
    lun_list += (lun_list.empty() ? "" : ", ") + std::to_string(plan.lun);
  for (const auto& path : configs.front().paths)
    spdlog::info("logging in to {} LUN{} {} via {}", cfg_.target.iqn, plans.size() > 1 ? "s" : "",
                 lun_list, iscsi_io::describe(path.login));
  warn_shared_interfaces(configs.front());
  opening_ = configs.size();
  for (auto& plan : plans) {
    luns_.push_back(std::make_unique<Lun>());
    luns_.back()->plan = std::move(plan);
  }
  for (size_t i = 0; i < configs.size(); ++i)
    mpio::LunDevice::open(*io_, std::move(configs[i]),
                          [this, i](std::error_code ec, const std::string& detail,
                                    std::shared_ptr<mpio::LunDevice> dev) {
                            device_opened(i, ec, detail, std::move(dev));
                          });
}

void Attachment::device_opened(size_t index, std::error_code ec, const std::string& detail,
                               std::shared_ptr<mpio::LunDevice> device) {
  Lun& lun = *luns_[index];
  lun.device = std::move(device);
  if (ec) {
    lun.open_error = several_luns() ? "LUN " + std::to_string(lun.plan.lun) + ": " : "";
    lun.open_error += error_text(ec, detail);
  }
  if (--opening_ == 0) opened();
}

void Attachment::opened() {
  bool failed = false;
  for (const auto& lun : luns_)
    if (!lun->open_error.empty()) {
      spdlog::error("{}", lun->open_error);
      failed = true;
    }
  if (failed) {
    status_ = exit_failure;
    const bool any_open =
        std::any_of(luns_.begin(), luns_.end(), [](const auto& lun) { return lun->device; });
    // The LUNs that did open log out again.
    if (any_open && !draining_) return drain();
    if (!any_open) io_->stop();
    return;
  }
  for (size_t i = 0; i < luns_.size(); ++i) watch(i);
  if (draining_) return;  // a signal came during the login: drain() has stopped the loop
  if (!serve() || !attach_kernel() || !publish()) return fail();
  notifier_->ready([this] {
    std::vector<systemd::LunPaths> maps;
    for (const auto& lun : luns_)
      if (!lun->retired && lun->device)
        maps.push_back({lun->plan.export_name, lun->device->path_status()});
    return systemd::status_line(maps);
  });
}

void Attachment::watch(size_t index) {
  mpio::LunDevice& device = *luns_[index]->device;
  const uint16_t number = luns_[index]->plan.lun;
  const auto& info = device.info();
  spdlog::info("LUN {}: {} {} WWID {} size {} ({} bytes) block {}, {}", number, info.vendor,
               info.product, info.wwid.empty() ? "-" : info.wwid,
               status::size_text(info.size_bytes), info.size_bytes, info.logical_block_size,
               info.supports_block_status ? "thin (block status from GET LBA STATUS)"
                                          : "not thin (block status: all data)");
  const auto command = device.command_size();
  spdlog::info("SCSI commands of at most {} KiB ({})", command.bytes >> 10, command.source);
  // One LUN's log lines stay as they always were; several say which LUN.
  const std::string prefix = several_luns() ? "LUN " + std::to_string(number) + ": " : "";
  device.on_path_event([this, index, prefix](const std::string& path, mpio::PathState state,
                                             const std::string& reason) {
    const auto level = state == mpio::PathState::active ? spdlog::level::info : spdlog::level::warn;
    spdlog::log(level, "{}path {} {}: {}", prefix, path, mpio::path_state_name(state), reason);
    runtime_->path_event(index, path, state);
    notifier_->status_changed();
    if (state == mpio::PathState::refused) retire_if_replaced(index);
  });
  // NBD has no message that tells a connected client a new size (proto.md: the size is
  // given in the handshake only): clients connected over the socket see it when they
  // connect again, while /dev/nbdN, whose size is ours to set, takes it in place.
  device.on_capacity_change([this, index, prefix](uint64_t size) {
    spdlog::warn("{}LUN capacity changed to {} ({} bytes): new NBD clients see the new size",
                 prefix, status::size_text(size), size);
    nbd::KernelDevice* kernel = luns_[index]->kernel.get();
    if (!kernel) return;
    std::string detail;
    if (auto ec = kernel->resize(size, detail))
      spdlog::error("{}{} keeps its old size: {}", prefix, kernel->path(), error_text(ec, detail));
    else
      spdlog::info("{}{} resized to {} bytes", prefix, kernel->path(), size);
  });
  // REPORTED LUNS DATA HAS CHANGED (3F/0E), on any path of any LUN: look at once.
  if (several_luns())
    device.on_luns_changed([this] {
      rediscover();
      rescan("the target reported a LUN inventory change");
    });
  if (device.grouping() == mpio::Grouping::group_by_prio && device.identity().inquiry.tpgs == 0)
    spdlog::warn(
        "{}the target reports no ALUA support (INQUIRY TPGS 0): group_by_prio puts "
        "every path in one group, as multibus does",
        prefix);
  for (const auto& ps : device.path_status())
    spdlog::info("{}path {} {}{}", prefix, ps.name, mpio::path_state_name(ps.state),
                 ps.last_error.empty() ? "" : ": " + ps.last_error);
}

void Attachment::retire_if_replaced(size_t index) {
  Lun& lun = *luns_[index];
  if (lun.retired || draining_ || !several_luns() || !lun.device) return;
  const auto paths = lun.device->path_status();
  if (!std::all_of(paths.begin(), paths.end(),
                   [](const mpio::PathStatus& p) { return p.state == mpio::PathState::refused; }))
    return;
  lun.replaced = true;
  spdlog::error(
      "LUN {}: every path presents another device than {} (WWID {}): the LUN was replaced "
      "under its number; export '{}' is retired, the other LUNs go on",
      lun.plan.lun, lun.device->info().vendor + " " + lun.device->info().product,
      lun.device->identity().wwid.empty() ? "-" : lun.device->identity().wwid,
      lun.plan.export_name);
  retire(index, "LUN " + std::to_string(lun.plan.lun) + " was replaced on the target");
}

void Attachment::retire(size_t index, const std::string& why) {
  Lun& lun = *luns_[index];
  lun.retired = true;
  if (!lun.device) return;
  lun.device->stop_queueing();
  auto remove_export = [this, index, why] {
    std::string detail;
    if (server_ && server_->remove_export(luns_[index]->plan.export_name, why, detail))
      spdlog::warn("removing export '{}': {}", luns_[index]->plan.export_name, detail);
  };
  if (!lun.kernel) return remove_export();
  // /dev/nbdN first, while its export still answers: its flush must not wait for a
  // connection that the removal would close.
  lun.kernel->detach_async(
      [this, index, remove_export](std::error_code ec, const std::string& detail) {
        asio::post(*io_, [this, index, remove_export, ec, detail] {
          Lun& lun = *luns_[index];
          if (ec)
            spdlog::warn("detaching {}: {}", lun.kernel->path(), error_text(ec, detail));
          else
            spdlog::info("{} disconnected: LUN {} is retired", lun.kernel->path(), lun.plan.lun);
          lun.kernel.reset();
          remove_export();
        });
      });
}

// ---------------------------------------------------------------- rescan

std::string Attachment::rescan(const std::string& why) {
  if (draining_) return "error: shutting down";
  if (rescanning_) {
    rescan_again_ = true;
    return "a rescan is running: another follows it";
  }
  auto session = pool_ ? pool_->ready_session() : nullptr;
  if (!session) return "error: no path is logged in: the target cannot be asked";
  rescanning_ = true;
  lun_report::report_on(*io_, std::move(session), known_luns_,
                        [this, why](std::error_code ec, const std::string& detail,
                                    std::vector<options::TargetLun> on_target) {
                          rescanned(why, ec, detail, std::move(on_target));
                        });
  return "rescanning " + cfg_.target.iqn + ": REPORT LUNS sent";
}

void Attachment::rescanned(const std::string& why, std::error_code ec, const std::string& detail,
                           std::vector<options::TargetLun> on_target) {
  rescanning_ = false;
  if (draining_) return;
  if (ec) {
    spdlog::warn("rescan ({}): {}", why, error_text(ec, detail));
  } else {
    // A LUN gone from the list is forgotten: if its number comes back, it is asked again.
    known_luns_ = lun_report::known_from(on_target);
    auto listed = [&](uint16_t number) {
      return std::any_of(on_target.begin(), on_target.end(),
                         [&](const options::TargetLun& t) { return t.lun == number; });
    };
    for (size_t i = 0; i < luns_.size(); ++i) {
      const Lun& lun = *luns_[i];
      if (lun.retired || !lun.device || listed(lun.plan.lun)) continue;
      spdlog::error(
          "LUN {} went away on the target ({}): export '{}' is retired, the other "
          "LUNs go on",
          lun.plan.lun, why, lun.plan.export_name);
      retire(i, "LUN " + std::to_string(lun.plan.lun) + " went away on the target");
    }
    // The operator's rescan re-reads the sizes of the LUNs still there. Not before the report:
    // a LUN deleted on the target answers 25/00, which fails its path's shared session.
    if (std::exchange(capacities_asked_, false)) check_capacities();
    if (cfg_.target.luns && cfg_.target.luns->all) {
      std::vector<options::LunPlan> plans;
      std::vector<std::string> skipped;
      std::string problem;
      if (!options::lun_plans(cfg_, on_target, plans, problem, skipped)) {
        for (auto& plan : plans) {
          // A LUN replaced under its number stays retired (its identity is not the one served).
          const bool known = std::any_of(luns_.begin(), luns_.end(), [&](const auto& lun) {
            return lun->plan.lun == plan.lun && (!lun->retired || lun->replaced || lun->opening);
          });
          if (!known) add_lun(std::move(plan));
        }
      }
    }
  }
  if (rescan_again_) {
    rescan_again_ = false;
    rescan(why);
  }
}

void Attachment::check_capacities() {
  for (const auto& lun : luns_)
    if (lun->device && !lun->retired) lun->device->check_capacity();
}

void Attachment::schedule_rescan() {
  if (!rescans_ || draining_) return;
  rescans_->timer.expires_after(std::chrono::seconds(cfg_.multipath.polling_interval));
  rescans_->timer.async_wait([this](const boost::system::error_code& ec) {
    if (ec || draining_) return;
    if (std::chrono::steady_clock::now() - last_rediscovery_ >= rediscovery_period) rediscover();
    rescan("periodic REPORT LUNS");
    schedule_rescan();
  });
}

void Attachment::add_lun(options::LunPlan plan) {
  spdlog::info("LUN {} appeared on the target: logging in to it as export '{}'", plan.lun,
               plan.export_name);
  auto configs = options::lun_configs(cfg_, {plan}, options::Sessions::shared);
  mpio::LunConfig config = std::move(configs.front());
  config.paths = paths_;  // the same ISIDs: the same sessions
  config.sessions = pool_;
  const size_t index = luns_.size();
  luns_.push_back(std::make_unique<Lun>());
  luns_.back()->plan = std::move(plan);
  luns_.back()->retired = true;  // until it is served
  luns_.back()->opening = true;
  luns_.back()->reloads_at_open = reloads_;
  mpio::LunDevice::open(*io_, std::move(config),
                        [this, index](std::error_code ec, const std::string& detail,
                                      std::shared_ptr<mpio::LunDevice> device) {
                          luns_[index]->device = std::move(device);
                          added(index, ec, detail);
                        });
}

void Attachment::added(size_t index, std::error_code ec, const std::string& detail) {
  Lun& lun = *luns_[index];
  lun.opening = false;
  if (ec || draining_) {
    if (ec) spdlog::error("LUN {} is not served: {}", lun.plan.lun, error_text(ec, detail));
    if (lun.device) {
      lun.device->close(std::chrono::seconds(2), [](std::error_code) {});
    }
    return;
  }
  watch(index);
  const auto options = options::server_options(cfg_, lun.device->info(), lun.plan);
  std::string problem;
  if (auto e = server_->add_export(
          {lun.plan.export_name, options.description, options.read_only, *lun.device}, problem)) {
    spdlog::error("LUN {} is not served: {}", lun.plan.lun, error_text(e, problem));
    return;
  }
  lun.retired = false;
  catch_up(lun);
  runtime_->add_lun(served_lun(&lun));
  spdlog::info("serving export '{}' at {}", lun.plan.export_name,
               server_->endpoint_uri(lun.plan.export_name));
}

// A LUN that logged in while a reload or a rediscovery changed the running paths or settings
// opened with those of before, and neither reached it (it had no device yet): its paths are
// brought in line with paths_ by name, removed or added as a reload does, so that every LUN
// uses the same paths and the next LUN found is no different.
void Attachment::catch_up(Lun& lun) {
  if (lun.reloads_at_open != reloads_) {
    std::string detail;
    if (auto ec = lun.device->reconfigure(options::lun_config(cfg_), detail))
      spdlog::error("LUN {}: the reloaded settings: {}", lun.plan.lun, detail);
    lun.device->set_timeouts(options::session_timeouts(cfg_));
  }
  std::vector<std::string> has, wanted;
  for (const auto& status : lun.device->path_status()) has.push_back(status.name);
  for (const auto& path : paths_) wanted.push_back(iscsi_io::describe(path.login));
  const auto sync = reload::sync_paths(has, wanted);
  for (size_t index : sync.remove) {
    std::string detail;
    auto device = lun.device;
    const auto ec = device->remove_path(
        index, detail, [this, device](size_t at) { runtime_->path_removed(*device, at); },
        [](std::error_code) {});
    if (ec) spdlog::warn("LUN {}: {}", lun.plan.lun, detail);
  }
  for (size_t index : sync.add) lun.device->add_path(paths_[index]);
}

// ---------------------------------------------------------------- rediscovery

void Attachment::rediscover() {
  if (draining_ || rediscovering_ || !discovery::has_discover_entry(path_entries_)) return;
  rediscovering_ = true;
  last_rediscovery_ = std::chrono::steady_clock::now();
  discovery::rediscover(*io_, cfg_, path_entries_,
                        [this](std::vector<config::Path> found, discovery::Outcome outcome) {
                          rediscovered(std::move(found), std::move(outcome));
                        });
}

void Attachment::rediscovered(std::vector<config::Path> found, discovery::Outcome outcome) {
  rediscovering_ = false;
  if (draining_) return;
  const auto same = [](const config::Path& a, const config::Path& b) {
    return a.portal == b.portal && a.source == b.source && a.interface == b.interface;
  };
  const auto origin_in = [](const discovery::Outcome& o, const std::string& name) {
    for (const auto& [path, origin] : o.origin_of_path)
      if (path == name) return origin;
    return std::string();
  };
  const auto name_of = [this](const config::Path& path) {
    return iscsi_io::describe(options::path_config(cfg_, path, iscsi::Isid{}));
  };
  for (const auto& path : found)
    if (std::none_of(cfg_.paths.begin(), cfg_.paths.end(),
                     [&](const config::Path& p) { return same(p, path); }))
      add_path(path, origin_in(outcome, name_of(path)));
  // A portal no longer reported keeps its path, as open-iscsi keeps the node record and
  // multipathd the path: a session that works goes on, one that fails is retried as any failed
  // path is. Said once, and again when it is reported again.
  for (const auto& path : cfg_.paths) {
    const std::string name = name_of(path);
    if (origin_in(discovered_, name).empty()) continue;  // written in the file
    const bool reported = std::any_of(found.begin(), found.end(),
                                      [&](const config::Path& p) { return same(p, path); });
    const auto was = std::find(unreported_.begin(), unreported_.end(), name);
    if (!reported && was == unreported_.end()) {
      spdlog::warn(
          "path {}: discovery no longer reports its portal; the path stays (a working session "
          "goes on, a failed one is retried)",
          name);
      unreported_.push_back(name);
    } else if (reported && was != unreported_.end()) {
      spdlog::info("path {}: discovery reports its portal again", name);
      unreported_.erase(was);
    }
  }
  // Each problem (a discovery that fails, a portal unreachable) once, not every rescan.
  for (const auto& problem : outcome.problems)
    if (std::find(discovery_problems_.begin(), discovery_problems_.end(), problem) ==
        discovery_problems_.end())
      spdlog::warn("rediscovery: {}", problem);
  discovery_problems_ = std::move(outcome.problems);
  discovered_.skipped = std::move(outcome.skipped);
}

void Attachment::add_path(const config::Path& path, const std::string& origin) {
  const mpio::LunPath added{options::path_config(cfg_, path, iscsi_io::random_isid()),
                            path.priority.value_or(0)};
  const std::string name = iscsi_io::describe(added.login);
  spdlog::info("path {} {}: a new path of every LUN", name,
               origin.empty() ? "found by rediscovery" : origin);
  cfg_.paths.push_back(path);
  paths_.push_back(added);
  discovered_.origin_of_path.emplace_back(name, origin);
  runtime_->add_path(path.portal);
  // Every LUN's device gets it with the same ISID: one session at the target for all of them.
  for (auto& lun : luns_)
    if (lun->device && !lun->retired) lun->device->add_path(added);
}

// ---------------------------------------------------------------- serve

bool Attachment::serve() {
  // One listener for every LUN, each its own export (NBD_OPT_LIST lists them); the first
  // LUN's export is the default one.
  auto server_options =
      options::server_options(cfg_, luns_.front()->device->info(), luns_.front()->plan);
  server_options.listening_fd = std::exchange(inherited_listener_, std::nullopt);
  // The reserve covers every LUN's /dev/nbdN and every path, not the first LUN's alone.
  server_options.fd_reserve = options::fd_reserve(
      cfg_, static_cast<size_t>(std::count_if(luns_.begin(), luns_.end(), [](const auto& lun) {
        return lun->plan.device.mode != config::NbdDevice::Mode::none;
      })));
  server_ = std::make_unique<nbd::Server>(*io_, std::move(server_options));
  std::string detail;
  for (auto& lun : luns_) {
    const auto options = options::server_options(cfg_, lun->device->info(), lun->plan);
    if (auto ec = server_->add_export(
            {lun->plan.export_name, options.description, options.read_only, *lun->device},
            detail)) {
      spdlog::error("cannot serve export '{}': {}", lun->plan.export_name, error_text(ec, detail));
      return false;
    }
  }
  if (auto ec = server_->start(detail)) {
    spdlog::error("cannot serve NBD on {}: {}", config::to_string(cfg_.nbd.listen),
                  error_text(ec, detail));
    server_.reset();
    return false;
  }
  for (const auto& lun : luns_)
    spdlog::info("serving export '{}' at {}", lun->plan.export_name,
                 server_->endpoint_uri(lun->plan.export_name));
  return true;
}

// ---------------------------------------------------------------- attach_kernel

bool Attachment::attach_kernel() {
  for (auto& lun : luns_) {
    if (lun->plan.device.mode == config::NbdDevice::Mode::none) continue;
    std::error_code ec;
    std::string detail;
    nbd::Server* server = server_.get();
    const std::string export_name = lun->plan.export_name;
    const auto options =
        options::kernel_options(cfg_, lun->device->info(), lun->plan,
                                options::kernel_interface(std::getenv("ISCSI_MPIO_NBD_INTERFACE")));
    const auto serve = [server, export_name](int fd, std::string& why) {
      return server->serve_connected(fd, export_name, "kernel", why);
    };
    // A previous attach of this export that was killed left its device configured, holding
    // I/O: take it over, so that what is mounted on it goes on.
    lun->kernel = nbd::KernelDevice::adopt(options, serve, ec, detail);
    if (!lun->kernel && !ec) lun->kernel = nbd::KernelDevice::attach(options, serve, ec, detail);
    if (!lun->kernel) {
      spdlog::error("cannot attach the export {}to the kernel: {}",
                    several_luns() ? "'" + lun->plan.export_name + "' " : "",
                    error_text(ec, detail));
      return false;
    }
    for (const auto& note : lun->kernel->take_notes()) spdlog::warn("{}", note);
    spdlog::info("{}{} {} (nbd {}, max_sectors_kb {})",
                 several_luns() ? "'" + lun->plan.export_name + "' " : "",
                 lun->kernel->adopted() ? "reconnected, left by a previous attach:" : "attached as",
                 lun->kernel->path(), nbd::kernel_interface_name(lun->kernel->interface()),
                 lun->kernel->max_sectors_kb());
  }
  return true;
}

service::Runtime::ServedLun Attachment::served_lun(Lun* lun) {
  auto snapshot = [this, lun] {
    status::Snapshot snap;
    snap.export_name = lun->plan.export_name;
    snap.uri = server_ ? server_->endpoint_uri(lun->plan.export_name) : "";
    snap.target = cfg_.target.iqn;
    snap.lun = lun->plan.lun;
    snap.selector = cfg_.multipath.path_selector;
    snap.grouping = std::string(mpio::grouping_name(lun->device->grouping()));
    snap.failback = options::failback_text(cfg_.multipath.failback);
    snap.no_path_retry = options::no_path_retry_text(cfg_.multipath.no_path_retry);
    snap.info = lun->device->info();
    snap.paths = lun->device->path_status();
    snap.path_origins = discovered_.origin_of_path;
    snap.discovery_skipped = discovered_.skipped;
    return snap;
  };
  return {lun->device, server_.get(), snapshot};
}

bool Attachment::publish() {
  if (several_luns())
    runtime_->on_rescan([this] {
      capacities_asked_ = true;  // after the REPORT LUNS: a LUN gone is not asked
      rediscover();
      return rescan("asked by `iscsi-mpio rescan`");
    });
  runtime_->on_reload([this](const std::string& log_level) { return reload(log_level); });
  runtime_->on_detach([this] {
    if (draining_) return std::string("error: already shutting down");
    spdlog::info("asked by `iscsi-mpio detach`: the end of this attach");
    std::string devices;
    for (const auto& lun : luns_)
      if (lun->kernel && !lun->retired) devices += " " + lun->kernel->path();
    // After the answer: the shutdown closes the control socket.
    asio::post(*io_, [this] { drain(Stop::detach); });
    return "ok: detaching: " + (devices.empty() ? "" : devices.substr(1) + " disconnected, ") +
           "logging out (pid " + std::to_string(::getpid()) + ")";
  });
  std::vector<service::Runtime::ServedLun> served;
  for (auto& lun : luns_) served.push_back(served_lun(lun.get()));
  if (std::string detail; runtime_->serving(std::move(served), detail)) {
    spdlog::error("{}", detail);
    return false;
  }
  for (const auto& lun : luns_) {
    std::cout << server_->endpoint_uri(lun->plan.export_name) << std::endl;
    if (lun->kernel) std::cout << lun->kernel->path() << std::endl;
  }
  if (several_luns()) {
    rescans_ = std::make_unique<Rescans>(*io_);
    schedule_rescan();
  }
  return true;
}

// ---------------------------------------------------------------- run

int Attachment::run() {
  wait_for_signal();
  // nbd.busy_poll_us: poll rather than sleep while the load is light (queue depth 1 is where a
  // wake-up per event costs most); with more requests in flight there is always work.
  constexpr size_t busy_poll_max_in_flight = 4;
  common_asio::run_busy_polling(*io_, std::chrono::microseconds(cfg_.nbd.busy_poll_us), [this] {
    size_t in_flight = 0;
    for (const auto& lun : luns_)
      if (lun->device) in_flight += lun->device->requests_in_flight();
    return !luns_.empty() && in_flight <= busy_poll_max_in_flight;
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
    spdlog::info(
        "received {}: stopping for a restart, /dev/nbdN stays configured (`iscsi-mpio "
        "detach` ends it)",
        signo == SIGINT ? "SIGINT" : "SIGTERM");
    wait_for_signal();
    drain(Stop::leave);
  });
}

std::string Attachment::reload(const std::string& log_level) {
  if (draining_) return "error: shutting down\n";
  if (!server_ || opening_ > 0) {
    spdlog::warn("reload: the attach is still starting; nothing applied");
    return "error: the attach is still starting: nothing applied\n";
  }
  notifier_->reloading();
  reload::Running running{cfg_, paths_, {}, nullptr, nullptr};
  for (const auto& lun : luns_)
    if (lun->device) running.devices.push_back({lun->device, lun->plan.lun, !lun->retired});
  running.path_removed = [this](const mpio::LunDevice& device, size_t path) {
    runtime_->path_removed(device, path);
  };
  running.paths_changed = [this] {
    std::vector<config::Portal> portals;
    for (const auto& path : paths_)
      portals.push_back({path.login.portal_host, path.login.portal_port});
    runtime_->paths_changed(std::move(portals));
  };
  auto answer = reload::apply(std::move(running), config_path_, log_level);
  if (answer.starts_with("ok")) ++reloads_;
  notifier_->reloaded();
  return answer;
}

// ---------------------------------------------------------------- drain

void Attachment::fail() {
  status_ = exit_failure;
  drain();
}

void Attachment::drain(Stop how) {
  if (draining_) return;
  draining_ = true;
  const bool leaving = how == Stop::leave;
  const char* what = leaving ? "stopping for a restart: draining requests, flushing the LUN cache, "
                               "logging out; /dev/nbdN stays configured"
                             : "shutting down: draining requests, flushing the LUN cache, "
                               "disconnecting /dev/nbdN, logging out";
  spdlog::info("{}", what);
  notifier_->stopping(what);
  runtime_->shutting_down();
  if (rescans_) rescans_->timer.cancel();
  for (auto& lun : luns_)
    if (lun->device) lun->device->stop_queueing();
  if (leaving) return leave_kernel_devices();
  detach_kernel_devices();
}

// How long the kernel's connections get to reach a quiet moment (every request answered, none
// unread) before they are closed anyway; what is then unanswered the kernel sends again after
// its block-layer timeout.
constexpr auto kQuietWithin = std::chrono::seconds(5);

void Attachment::leave_kernel_devices() {
  std::vector<std::string> exports;
  for (const auto& lun : luns_)
    if (lun->kernel && !lun->retired && lun->kernel->can_leave())
      exports.push_back(lun->plan.export_name);
  if (exports.empty() || !server_) return detach_kernel_devices();
  server_->release_connected(exports, kQuietWithin, [this](nbd::Server::Released released) {
    asio::post(*io_, [this, released] {
      for (auto& lun : luns_) {
        if (!lun->kernel || lun->retired || !lun->kernel->can_leave()) continue;
        std::string detail;
        if (auto ec = lun->kernel->leave(detail)) {
          spdlog::warn("{}", error_text(ec, detail));
          continue;
        }
        const auto hold = lun->kernel->dead_connection_timeout();
        const std::string holds =
            hold >= nbd::kDeadConnectionForever
                ? std::string("holds its I/O until the next attach (no_path_retry queue)")
            : hold.count() == 0
                ? std::string("fails its I/O with EIO until the next attach (no_path_retry fail)")
                : "holds its I/O for " + std::to_string(hold.count()) +
                      " s (no_path_retry x polling_interval), then fails it with EIO until the "
                      "next attach";
        spdlog::info(
            "{} left configured{}: the kernel {}; `iscsi-mpio attach` of the same "
            "target and LUN takes it over",
            lun->kernel->path(),
            released.forced > 0 ? " (some requests unanswered: sent again after the "
                                  "takeover)"
                                : "",
            holds);
        lun->kernel.reset();  // left: the destructor no longer disconnects it
      }
      // Devices that cannot outlive us (the ioctl interface's) are detached as before.
      detach_kernel_devices();
    });
  });
}

void Attachment::detach_kernel_devices() {
  auto detaching = std::make_shared<size_t>(0);
  // A retired LUN's /dev/nbdN is let go by retire() itself.
  for (auto& lun : luns_) *detaching += lun->kernel && !lun->retired ? 1 : 0;
  if (*detaching == 0) return stop_servers();
  // Each /dev/nbdN lets go first, on a thread of its own: its flush and NBD_CMD_DISC still need
  // the server answering on this one.
  for (auto& owned : luns_) {
    if (!owned->kernel || owned->retired) continue;
    Lun* lun = owned.get();
    lun->kernel->detach_async(
        [this, lun, detaching](std::error_code ec, const std::string& detail) {
          asio::post(*io_, [this, lun, detaching, ec, detail] {
            for (const auto& note : lun->kernel->take_notes()) spdlog::warn("{}", note);
            if (ec)
              spdlog::warn("detaching {}: {}", lun->kernel->path(), error_text(ec, detail));
            else
              spdlog::info("{} disconnected", lun->kernel->path());
            if (--*detaching == 0) stop_servers();
          });
        });
  }
}

void Attachment::stop_servers() {
  if (!server_) return close_devices();
  server_->stop([this] { close_devices(); });
}

void Attachment::close_devices() {
  auto closing = std::make_shared<size_t>(0);
  for (auto& lun : luns_) *closing += lun->device ? 1 : 0;
  if (*closing == 0) {
    io_->stop();
    return;
  }
  for (auto& lun : luns_) {
    if (!lun->device) continue;
    const std::string prefix = several_luns() ? "LUN " + std::to_string(lun->plan.lun) + ": " : "";
    lun->device->close(std::chrono::seconds(10), [this, closing, prefix](std::error_code ec) {
      if (ec) spdlog::warn("{}final SYNCHRONIZE CACHE failed: {}", prefix, ec.message());
      if (--*closing > 0) return;
      spdlog::info("logged out");
      io_->stop();
    });
  }
}

}  // namespace iscsi_mpio::attach
