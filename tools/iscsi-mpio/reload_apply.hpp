// iscsi-mpio reload, carried out: reads the configuration file again, asks plan_reload()
// (reload_plan.hpp) what changed, and applies it to the running devices, all or nothing. Runs on
// the io_context's thread (SIGHUP, or the control socket's `reload`). No Asio here.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <config/config.hpp>
#include <mpio/lun_device.hpp>

namespace iscsi_mpio::reload {

// The running attach as a reload changes it.
struct Running {
  config::Config& config;             // replaced by the applied configuration
  std::vector<mpio::LunPath>& paths;  // every LUN's paths in order, ISIDs included
  struct Device {
    std::shared_ptr<mpio::LunDevice> device;
    uint16_t lun = 0;
    bool served = true;  // false: retired (still holding its sessions until the attach ends)
  };
  std::vector<Device> devices;
  // A path left the device (LunDevice::remove_path's `drained`): the per-path series move up.
  std::function<void(const mpio::LunDevice&, size_t path)> path_removed;
  // The path list changed (after `paths` and `config` are updated).
  std::function<void()> paths_changed;
};

// Reads `config_path` and applies it; `log_level` (empty: unchanged) is spdlog's level name,
// applied with the file. Returns the control socket's answer, newline-terminated: "ok: ..."
// with one line per change, or "error: ..." naming why nothing was applied (the file does not
// load, a key the running attach cannot take, with its file and line, the last usable path
// removed, a previous reload still draining).
std::string apply(Running running, const std::string& config_path, const std::string& log_level);

// spdlog's level names that `reload --log-level` takes.
bool valid_log_level(const std::string& level);

}  // namespace iscsi_mpio::reload
