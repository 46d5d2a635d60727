// The daily-operation side of a running attach: the control socket (control.hpp), the
// Prometheus listener (metrics.hpp), the check that no other attach owns our sockets, and the
// progress line while logging in and draining. Asio stays in service.cpp.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include <config/config.hpp>
#include <mpio/lun_device.hpp>

#include "status.hpp"

namespace boost::asio {
class io_context;
}
namespace nbd {
class Server;
}

namespace iscsi_mpio::service {

class Runtime {
 public:
  Runtime(boost::asio::io_context& io, const config::Config& config);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // Before logging in: refuses (std::errc::address_in_use) when a process answers on the NBD
  // unix socket or the control socket, naming it ("pid N: iscsi-mpio attach FILE"). A stale
  // socket file is left for the listeners to replace. With `nbd_socket_inherited` (systemd
  // socket activation) the NBD socket is not checked: its owner listens on it for us.
  std::error_code preflight(std::string& detail, bool nbd_socket_inherited = false) const;

  // The paths are logging in: "logging in to N paths: K up" on a terminal until none is still
  // connecting.
  void logging_in();

  // One LUN of the attach: its device, the NBD server that serves its export (may be null),
  // and its status view.
  struct ServedLun {
    std::shared_ptr<mpio::LunDevice> device;
    nbd::Server* server = nullptr;
    std::function<status::Snapshot()> snapshot;
  };

  // The devices are open and the NBD server runs: opens the control socket and, when
  // configured, the metrics listener; starts measuring command latencies. Call path_event()
  // from each device's path event handler with the LUN's index into `luns`.
  std::error_code serving(std::vector<ServedLun> luns, std::string& detail);
  void path_event(size_t lun_index, const std::string& path, mpio::PathState state);
  // A LUN a rescan found after serving(): its index is the number of LUNs before it.
  void add_lun(ServedLun lun);
  // A path added after serving (rediscovery): its portal, for fail-path/reinstate-path by portal.
  void add_path(const config::Portal& portal);
  // The control socket's `rescan` starts this; its answer goes back to the client.
  void on_rescan(std::function<std::string()> rescan);
  // The control socket's `reload [LEVEL]` runs this; its answer goes back to the client.
  void on_reload(std::function<std::string(const std::string& log_level)> reload);
  // A reload changed the paths: `portals` are theirs in path order (`paths` shows them, path IDs
  // resolve by them); a path `device` let go of at index `path` takes its series along.
  void paths_changed(std::vector<config::Portal> portals);
  void path_removed(const mpio::LunDevice& device, size_t path);
  // The control socket's `detach` starts this; its answer goes back to the client.
  void on_detach(std::function<std::string()> detach);

  // The shutdown began: closes both listeners (removing the control socket file) and shows
  // "draining N requests" on a terminal while the device still has requests.
  void shutting_down();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace iscsi_mpio::service
