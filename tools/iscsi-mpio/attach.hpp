// iscsi-mpio attach CONFIG: log in to the target on every path and serve the LUN as an NBD
// export (and, with nbd.device, as /dev/nbdN) until SIGINT or SIGTERM, then shut down cleanly.
//
// The attach goes through five phases, each a member function of Attachment:
//   open           load the configuration, log in on the paths, open the mpio::LunDevice
//   serve          start the NBD server on nbd.listen
//   attach_kernel  nbd.device: connect the export to the kernel's nbd driver
//   run            run the io_context, with SIGINT and SIGTERM handled, until the attach ends
//                  (SIGHUP: reload, systemctl reload)
//   drain          stop queueing, let /dev/nbdN go, drain the NBD clients, SYNCHRONIZE CACHE,
//                  log out
// The phases after open run on the io_context once the device is open. A phase that fails
// logs why and drains what the earlier ones started, and the exit status is exit_failure.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <system_error>

#include <config/config.hpp>

#include "exit_status.hpp"

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

namespace iscsi_mpio::service {
class Runtime;
}
namespace iscsi_mpio::systemd {
class Notifier;
}

namespace iscsi_mpio::attach {

// The whole verb: open(), then run(). Returns the exit status (exit_status.hpp).
int run(const std::string& config_path);

class Attachment {
 public:
  Attachment();
  ~Attachment();
  Attachment(const Attachment&) = delete;
  Attachment& operator=(const Attachment&) = delete;

  // Loads `config_path` (its errors on stderr: exit_usage), refuses when another process owns
  // the NBD or control socket (exit_failure), then starts logging in on every path. False when
  // the attach cannot start; exit_status() says why.
  bool open(const std::string& config_path);

  // Runs until the attach ends: SIGINT or SIGTERM starts drain(), a second one exits at once
  // with exit_interrupted. Returns the exit status.
  int run();

  int exit_status() const { return status_; }

 private:
  struct Signals;  // Asio stays in attach.cpp

  // open()'s end, on the io_context: the device is open (then serve, attach_kernel, publish)
  // or every path failed.
  void opened(std::error_code ec, const std::string& detail,
              std::shared_ptr<mpio::LunDevice> device);
  // Starts the NBD server; false (logged) when it cannot listen.
  bool serve();
  // nbd.device: attaches the export to the kernel's nbd driver; false (logged) when the driver
  // refuses. Does nothing without nbd.device.
  bool attach_kernel();
  // The attach is up: opens the control socket and the metrics listener, then prints the URI
  // (and the /dev/nbdN) on stdout for whoever started us.
  bool publish();

  void wait_for_signal();
  // SIGHUP (ExecReload=): checks the configuration file again and says whether a restart
  // would take it; nothing is applied to the running attach yet.
  void reload();
  // A phase failed: exit_failure once drain() is done.
  void fail();
  // The clean shutdown, at most once. Held requests end first, or the server's drain would
  // wait for a path for ever; then /dev/nbdN, the NBD server and the device in that order.
  void drain();
  void stop_server();
  void close_device();

  // Destroyed in reverse: the signals and the listeners first, the io_context last.
  config::Config cfg_;
  std::unique_ptr<boost::asio::io_context> io_;
  std::shared_ptr<mpio::LunDevice> device_;
  std::unique_ptr<nbd::Server> server_;
  std::unique_ptr<nbd::KernelDevice> kernel_;  // nbd.device
  std::unique_ptr<service::Runtime> runtime_;  // control socket, metrics, progress line
  std::unique_ptr<Signals> signals_;
  std::unique_ptr<systemd::Notifier> notifier_;  // sd_notify: READY, STATUS, WATCHDOG
  std::optional<int> inherited_listener_;        // socket activation: served instead of binding
  std::string config_path_;
  int status_ = exit_ok;
  bool draining_ = false;
};

}  // namespace iscsi_mpio::attach
