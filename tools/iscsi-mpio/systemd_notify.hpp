// The attach under systemd: sd_notify(3) messages for Type=notify units and the listening
// socket of socket activation (sd_listen_fds(3)). Without NOTIFY_SOCKET (not started by
// systemd, or Type= other than notify) every message is a no-op; without LISTEN_FDS there is
// no inherited socket. Asio stays in systemd_notify.cpp.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <config/config.hpp>
#include <mpio/lun_device.hpp>

namespace boost::asio {
class io_context;
}

namespace iscsi_mpio::systemd {

// "lun0: 2/2 paths active" (active and ghost paths count as active: they can carry I/O), with
// " (198.18.2.1:3260 from 198.18.2.2 failed, ...)" naming the others: one LUN's part of the
// line `systemctl status` shows.
std::string path_summary(std::string_view export_name, const std::vector<mpio::PathStatus>& paths);

// The STATUS= line of several LUNs: their path_summary()s joined by "; ".
struct LunPaths {
  std::string export_name;
  std::vector<mpio::PathStatus> paths;
};
std::string status_line(const std::vector<LunPaths>& luns);

// WATCHDOG_USEC (sd_watchdog_enabled(3)) halved, as sd_watchdog_enabled recommends: nullopt
// when the unit has no WatchdogSec= or the watchdog is meant for another process.
std::optional<std::chrono::microseconds> watchdog_period();

// The socket systemd passed (LISTEN_PID, LISTEN_FDS: a .socket unit, or systemd-socket-activate),
// to serve instead of binding `listen` (nbd.listen); nullopt when none was passed. The
// environment variables are unset, so children do not take it for theirs. An error, before
// any login, when more than one socket was passed (the attach has one NBD listener) or the
// socket is not a listening stream socket at `listen` (nbd::check_listening_socket): `detail`
// names both addresses, and the exit status is exit_usage (the units do not match the
// configuration; a restart cannot help).
std::optional<int> inherited_listening_socket(const config::Listen& listen, std::error_code& ec,
                                              std::string& detail);

class Notifier {
 public:
  // Reads NOTIFY_SOCKET and WATCHDOG_USEC. With a watchdog, pings WATCHDOG=1 every
  // watchdog_period() from a timer on `io`, from the start of the login on: when the loop is
  // stuck the pings stop and systemd kills us (WatchdogSignal=, then SIGKILL).
  explicit Notifier(boost::asio::io_context& io);
  ~Notifier();
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  // False without NOTIFY_SOCKET: every message below is then skipped.
  bool enabled() const;

  // Every export is served: READY=1 with STATUS=status(). `status` is called again for every
  // status_changed() later, on the io_context thread.
  void ready(std::function<std::string()> status);
  // Something the status line shows changed (a path event): STATUS= again, at most once per
  // status_interval so a flapping path does not flood the journal's notify socket.
  void status_changed();
  // A reload began (RELOADING=1 with MONOTONIC_USEC, which Type=notify-reload requires) and
  // ended (READY=1 with the status line again).
  void reloading();
  void reloaded();
  // The clean shutdown began: STOPPING=1 and STATUS=`why`. The watchdog keeps pinging: the
  // drain is bounded by its own timeouts, and TimeoutStopSec= by systemd's.
  void stopping(const std::string& why);

  static constexpr std::chrono::milliseconds status_interval{1000};

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace iscsi_mpio::systemd
