// iscsi-mpio attach CONFIG: log in to the target on every path and serve the LUN (or, with
// target.luns, each LUN) as an NBD export (and, with nbd.device, as /dev/nbdN) until SIGINT or
// SIGTERM, then shut down cleanly.
//
// The attach goes through five phases, each a member function of Attachment:
//   open           load the configuration, (target.luns) ask the target which LUNs it has, log
//                  in on the paths, open one mpio::LunDevice per LUN
//   serve          start the NBD server on nbd.listen
//   attach_kernel  nbd.device: connect the export to the kernel's nbd driver
//   run            run the io_context, with SIGINT and SIGTERM handled, until the attach ends
//                  (SIGHUP: reload, systemctl reload)
//   drain          stop queueing, let /dev/nbdN go, drain the NBD clients, SYNCHRONIZE CACHE,
//                  log out
// How /dev/nbdN goes depends on what ended the attach (Stop): SIGTERM or SIGINT (systemctl
// stop or restart, podman stop, an upgrade) is a restart: each /dev/nbdN stays configured and
// the kernel holds its I/O for the next attach, as stopping iscsid or multipathd leaves the
// sessions and maps in the kernel. `iscsi-mpio detach CONFIG` (the control socket's `detach`)
// or a failed phase is the end: each /dev/nbdN is flushed and disconnected.
// The phases after open run on the io_context once the device is open. A phase that fails
// logs why and drains what the earlier ones started, and the exit status is exit_failure.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <config/config.hpp>

#include "discovered_paths.hpp"
#include "exit_status.hpp"
#include "service.hpp"

namespace boost::asio {
class io_context;
}
namespace mpio {
class LunDevice;
}
namespace nbd {
class Server;
class KernelDevice;
}  // namespace nbd

namespace iscsi_io {
class SessionPool;
}
namespace mpio {
struct LunPath;
}

namespace iscsi_mpio::options {
struct LunPlan;
struct TargetLun;
}  // namespace iscsi_mpio::options

namespace iscsi_mpio::systemd {
class Notifier;
}

namespace iscsi_mpio::attach {

// The whole verb: open(), then run(). Returns the exit status (exit_status.hpp).
// `log_level_given`: --log-level was on the command line, and wins over the file's log.level.
int run(const std::string& config_path, bool log_level_given = false);

class Attachment {
 public:
  Attachment();
  ~Attachment();
  Attachment(const Attachment&) = delete;
  Attachment& operator=(const Attachment&) = delete;

  // Loads `config_path` (its errors on stderr: exit_usage), refuses when another process owns
  // the NBD or control socket (exit_failure), then starts logging in on every path. False when
  // the attach cannot start; exit_status() says why.
  // The file's log.level applies unless `log_level_given` (--log-level on the command line).
  bool open(const std::string& config_path, bool log_level_given = false);

  // Runs until the attach ends: SIGINT or SIGTERM starts drain(), a second one exits at once
  // with exit_interrupted. Returns the exit status.
  int run();

  int exit_status() const { return status_; }

 private:
  struct Signals;  // Asio stays in attach.cpp
  struct Lun;      // one LUN served: its plan, device and /dev/nbdN
  struct Rescans;  // the periodic REPORT LUNS timer

  // target.luns: the target's LUN list (lun_report.hpp) checked against the file; then
  // open_devices(), or the attach fails naming the LUNs the target has.
  void reported(std::error_code ec, const std::string& detail,
                std::vector<options::TargetLun> on_target);
  // Logs in and opens one mpio::LunDevice per LUN, all over the same paths with the same ISIDs.
  void open_devices(std::vector<options::LunPlan> plans);
  // A LUN a rescan found: opened over the same sessions, then served like the others.
  void add_lun(options::LunPlan plan);
  void added(size_t index, std::error_code ec, const std::string& detail);
  void catch_up(Lun& lun);
  // One device's open ended; when the last one has, opened() goes on.
  void device_opened(size_t index, std::error_code ec, const std::string& detail,
                     std::shared_ptr<mpio::LunDevice> device);
  // open()'s end, on the io_context: every device is open (then serve, attach_kernel, publish)
  // or one of them could not be opened.
  void opened();
  // Logs what the LUN is and routes its path events to the log and the runtime.
  void watch(size_t index);
  // Of several LUNs, one whose every path presents another device was replaced under its
  // number: it is retired (its export stops, its held requests end), not served as the old one.
  void retire_if_replaced(size_t index);
  // Stops serving a LUN: held requests end with EIO, /dev/nbdN lets go, the export is removed
  // (new clients are told `why`); the other LUNs go on.
  void retire(size_t index, const std::string& why);

  // Rescan (iscsiadm -m session --rescan): REPORT LUNS over a session the devices use, on
  // the control socket's `rescan`, a 3F/0E unit attention or event, and every polling
  // interval. LUNs gone are retired; under `luns: all` new disk LUNs are served. Returns the
  // control socket's answer.
  std::string rescan(const std::string& why);
  void rescanned(const std::string& why, std::error_code ec, const std::string& detail,
                 std::vector<options::TargetLun> on_target);
  void schedule_rescan();
  // The operator's rescan also re-reads each served LUN's capacity at once (one READ CAPACITY
  // each), once its REPORT LUNS has retired the LUNs gone; the periodic and the 3F/0E rescans
  // leave that to each device's own capacity poll.
  void check_capacities();
  bool capacities_asked_ = false;  // by the operator's rescan: checked when its report is in

  // Discovery again (`discover:` entries; on the operator's rescan, on 3F/0E, and with the
  // periodic rescan every rediscovery_period): a portal the target reports now becomes a new
  // path of every LUN; a portal no longer reported keeps its path (said once in the log).
  void rediscover();
  void rediscovered(std::vector<config::Path> found, discovery::Outcome outcome);
  void add_path(const config::Path& path, const std::string& origin);
  // iscsid.conf's discovery.sendtargets.discoveryd_poll_inval default: a discovery session per
  // entry every polling interval (1 s by default) would be a login storm at the target.
  static constexpr std::chrono::seconds rediscovery_period{30};
  // Starts the NBD server with every LUN's export; false (logged) when it cannot listen.
  bool serve();
  // nbd.device: attaches the exports to the kernel's nbd driver; false (logged) when the driver
  // refuses. Does nothing for a LUN without a device.
  bool attach_kernel();
  // The attach is up: opens the control socket and the metrics listener, then prints the URI
  // (and the /dev/nbdN) of each export on stdout for whoever started us.
  bool publish();
  // What the runtime (status, metrics, control) serves of one LUN.
  service::Runtime::ServedLun served_lun(Lun* lun);
  bool several_luns() const { return cfg_.target.luns.has_value(); }

  void wait_for_signal();
  // SIGHUP (ExecReload=) and the control socket's `reload [LEVEL]`: the configuration file read
  // again and applied without dropping I/O, or refused as a whole (reload_apply.hpp). Returns
  // the answer.
  std::string reload(const std::string& log_level = {});
  // A phase failed: exit_failure once drain() is done.
  void fail();
  // What the shutdown does with each /dev/nbdN.
  enum class Stop {
    leave,   // SIGTERM, SIGINT: left configured for the next attach (KernelDevice::leave)
    detach,  // `iscsi-mpio detach`, a failed phase: flushed and disconnected
  };
  // The clean shutdown, at most once. Held requests end first, or the server's drain would
  // wait for a path for ever; then every /dev/nbdN, the NBD server and the devices in that
  // order.
  void drain(Stop how = Stop::detach);
  // Stop::leave: the kernel's connections end at a quiet moment, then each /dev/nbdN is let go
  // without a disconnect (one that cannot outlive us is detached instead).
  void leave_kernel_devices();
  void detach_kernel_devices();
  void stop_servers();
  void close_devices();

  // Destroyed in reverse: the signals and the listeners first, the io_context last.
  config::Config cfg_;
  discovery::Outcome discovered_;           // where `discover:` paths came from, for status
  std::vector<config::Path> path_entries_;  // the file's `paths`, `discover` entries included
  bool rediscovering_ = false;
  std::chrono::steady_clock::time_point last_rediscovery_;
  std::vector<std::string> unreported_;          // discovered paths discovery reports no more
  std::vector<std::string> discovery_problems_;  // the last rediscovery's, logged once each
  std::unique_ptr<boost::asio::io_context> io_;
  std::vector<std::unique_ptr<Lun>> luns_;       // in the order of the plans
  std::unique_ptr<nbd::Server> server_;          // every LUN's export; goes before the devices
  std::shared_ptr<iscsi_io::SessionPool> pool_;  // one session per path for every LUN
  std::vector<mpio::LunPath> paths_;             // the LUNs' paths, ISIDs included
  std::unique_ptr<Rescans> rescans_;
  bool rescanning_ = false;
  bool rescan_again_ = false;               // asked while one ran: once more when it ends
  std::map<uint16_t, uint8_t> known_luns_;  // the last report's LUNs and device types: a
                                            // rescan asks INQUIRY of new numbers only
  uint64_t reloads_ = 0;  // reloads applied: a LUN opening across one catches up (catch_up)
  size_t opening_ = 0;    // devices still logging in
  std::unique_ptr<service::Runtime> runtime_;  // control socket, metrics, progress line
  std::unique_ptr<Signals> signals_;
  std::unique_ptr<systemd::Notifier> notifier_;  // sd_notify: READY, STATUS, WATCHDOG
  std::optional<int> inherited_listener_;        // socket activation: served instead of binding
  std::string config_path_;
  int status_ = exit_ok;
  bool draining_ = false;
};

}  // namespace iscsi_mpio::attach
