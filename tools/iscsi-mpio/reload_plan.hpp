// iscsi-mpio reload (SIGHUP, systemctl reload, `iscsi-mpio reload CONFIG`), as `multipathd
// reconfigure` applies a changed multipath.conf: what changed between the running
// configuration and the file read again, and whether the running attach can take it. Pure: two
// Configs in, one decision out; reload_apply.cpp carries it out.
//
// What changes under I/O: path entries added (they log in and join every LUN's map) or removed
// (drained first), the multipath settings mpio keeps per device (path_selector, rr_min_io,
// path_grouping_policy, failback, and, without /dev/nbdN, polling_interval and no_path_retry),
// the timeouts (target.login_timeout for the next logins; target.command_timeout and
// multipath.noop_out_interval / noop_out_timeout in the running sessions too) and log.level.
// Everything else is fixed once the attach runs (the sessions' login parameters, the LUN set,
// the NBD listener, the control socket): a changed key is refused, naming the key and its
// line, and then nothing at all is applied.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include <config/config.hpp>

namespace iscsi_mpio::reload {

// One key the running attach cannot take.
struct Refusal {
  std::string key;  // "target.iqn", "paths[1].priority"
  int line = 0;     // in the new file; 0 when the key is not in it (removed, or a default)
  std::string reason;
};

struct Plan {
  std::vector<Refusal> refused;  // not empty: nothing is applied
  // Path entries (no `discover:` entry is in either file): indices into the new file's
  // paths, and into the running configuration's, which are the running paths in order.
  std::vector<size_t> added;
  std::vector<size_t> removed;
  bool settings_changed = false;  // a multipath setting the devices take (LunDevice::reconfigure)
  // target.login_timeout, target.command_timeout, multipath.noop_out_*: LunDevice::set_timeouts
  bool timeouts_changed = false;
  std::optional<std::string> log_level;  // log.level changed: the new level
  std::vector<std::string> changes;  // one line each: what is applied, for the log and the answer

  bool accepted() const { return refused.empty(); }
  bool nothing_to_do() const { return accepted() && changes.empty(); }
};

// `running`: the configuration the attach runs with; `next`: the file as just loaded, with
// `next_lines` (config::key_lines of its text) for the refusals' lines.
Plan plan_reload(const config::Config& running, const config::Config& next,
                 const config::KeyLines& next_lines);

// The refusals as the answer gives them: "FILE:LINE: KEY: REASON", one per line (the line
// part left out when unknown).
std::string describe_refusals(const Plan& plan, const std::string& file);

// The configuration the attach runs with after the plan is applied: `next`, with its paths in
// the order of the running paths (the ones kept in their order, then the ones added), so that
// path i of the configuration is path i of every device again.
config::Config applied_config(const config::Config& running, const config::Config& next,
                              const Plan& plan);

// A LUN a rescan found logs in with the attach's paths as they were when it started; a reload
// (or a rediscovery) may change them before it is served. What brings its device's paths in
// line with the running ones, by name (iscsi_io::describe: portal, source, interface): the
// indices of its paths to remove (descending, so each removal leaves the others' indices), and
// of the running paths to add (in order: path i of the configuration is path i of every device).
struct PathSync {
  std::vector<size_t> remove;
  std::vector<size_t> add;
};
PathSync sync_paths(const std::vector<std::string>& device_paths,
                    const std::vector<std::string>& running_paths);

}  // namespace iscsi_mpio::reload
