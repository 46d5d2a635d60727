#include "reload_plan.hpp"

#include <algorithm>
#include <optional>

#include "options.hpp"

namespace iscsi_mpio::reload {
namespace {

// Why a key cannot change under a running attach, by what it is part of.
constexpr const char* kSession =
    "the sessions logged in with it, and every LUN shares them: restart the attach to change it";
constexpr const char* kLunSet =
    "the LUN set is fixed while the attach runs (under `luns: all`, `iscsi-mpio rescan` picks up "
    "new LUNs): restart the attach to change it";
constexpr const char* kExports =
    "the NBD listener and its exports are set up at attach: restart the attach to change it";
constexpr const char* kIdentity =
    "every path is checked against the device the attach identified: restart the attach to "
    "change it";
constexpr const char* kCommandSize =
    "the command size is set when each LUN opens: restart the attach to change it";
constexpr const char* kKernelTimeouts =
    "/dev/nbdN's dead-connection timeout follows it and is set when the device is attached: "
    "restart the attach to change it";
constexpr const char* kDiscovery =
    "`discover:` entries are expanded at attach: with one in the running or the new file, the "
    "path list cannot change under a running attach; restart it to change the paths";

bool same_mutual(const std::optional<config::Mutual>& a, const std::optional<config::Mutual>& b) {
  if (a.has_value() != b.has_value()) return false;
  return !a ||
         (a->username == b->username && a->secret == b->secret && a->secret_file == b->secret_file);
}

bool same_auth(const config::Auth& a, const config::Auth& b) {
  return a.method == b.method && a.username == b.username && a.secret == b.secret &&
         a.secret_file == b.secret_file && same_mutual(a.mutual, b.mutual) &&
         a.algorithms == b.algorithms;
}

bool same_tls(const config::NbdTls& a, const config::NbdTls& b) {
  return a.mode == b.mode && a.x509_dir == b.x509_dir && a.verify_peer == b.verify_peer &&
         a.psk_file == b.psk_file;
}

// A path entry is the same path when it reaches the same portal the same way; its priority is
// a setting of that path.
bool same_path(const config::Path& a, const config::Path& b) {
  return a.portal == b.portal && a.discover == b.discover && a.source == b.source &&
         a.interface == b.interface;
}

std::string describe_path(const config::Path& p) {
  std::string out =
      p.discover ? "discover " + config::to_string(*p.discover) : config::to_string(p.portal);
  if (p.source) out += " from " + *p.source;
  if (p.interface) out += " via " + *p.interface;
  return out;
}

bool has_kernel_device(const config::Config& cfg) {
  if (cfg.nbd.device.mode != config::NbdDevice::Mode::none) return true;
  if (!cfg.target.luns) return false;
  return std::any_of(cfg.target.luns->entries.begin(), cfg.target.luns->entries.end(),
                     [](const config::LunEntry& e) {
                       return e.device && e.device->mode != config::NbdDevice::Mode::none;
                     });
}

// The line of `key`, or of the nearest enclosing key the file has ("nbd.device" removed from
// the file: the line of "nbd").
int line_of(const config::KeyLines& lines, std::string key) {
  while (!key.empty()) {
    if (auto it = lines.find(key); it != lines.end()) return it->second;
    const auto cut = key.find_last_of(".[");
    if (cut == std::string::npos) break;
    key.resize(cut);
  }
  return 0;
}

class Planner {
 public:
  Planner(const config::Config& running, const config::Config& next, const config::KeyLines& lines)
      : running_(running), next_(next), lines_(lines) {}

  Plan plan() {
    fixed_keys();
    paths();
    multipath();
    timeouts();
    log();
    // The keys the file writes first, in its order: a changed nbd.export also changes the
    // sockets named after it by default, and the key the admin edited leads the list.
    std::stable_sort(plan_.refused.begin(), plan_.refused.end(),
                     [this](const Refusal& a, const Refusal& b) {
                       const bool a_written = lines_.count(a.key) > 0;
                       const bool b_written = lines_.count(b.key) > 0;
                       if (a_written != b_written) return a_written;
                       return a_written && a.line < b.line;
                     });
    return std::move(plan_);
  }

 private:
  void refuse(const std::string& key, const std::string& reason) {
    plan_.refused.push_back({key, line_of(lines_, key), reason});
  }
  void refuse_if(bool changed, const std::string& key, const char* reason) {
    if (changed) refuse(key, reason);
  }
  void change(bool changed, const std::string& key, const std::string& from,
              const std::string& to) {
    if (!changed) return;
    plan_.changes.push_back(key + ": " + from + " -> " + to);
    plan_.settings_changed = true;
  }

  void fixed_keys() {
    const auto& a = running_;
    const auto& b = next_;
    // A name generated at each load (none in the file) is the same name as far as the user
    // is concerned: the running one stays.
    const bool both_generated = a.initiator.name_generated && b.initiator.name_generated;
    refuse_if(!both_generated && a.initiator.name != b.initiator.name, "initiator.name", kSession);
    refuse_if(a.target.iqn != b.target.iqn, "target.iqn", kSession);
    refuse_if(a.target.luns != b.target.luns, "target.luns", kLunSet);
    refuse_if(!a.target.luns && !b.target.luns && a.target.lun != b.target.lun, "target.lun",
              kLunSet);
    refuse_if(!same_auth(a.target.auth, b.target.auth), "target.auth", kSession);
    refuse_if(a.target.wwid != b.target.wwid, "target.wwid", kIdentity);
    refuse_if(a.target.digests != b.target.digests, "target.digests", kSession);
    refuse_if(!same_auth(a.target.discovery_auth, b.target.discovery_auth), "target.discovery_auth",
              kDiscovery);
    refuse_if(a.multipath.max_sectors_kb != b.multipath.max_sectors_kb, "multipath.max_sectors_kb",
              kCommandSize);
    // Each path's life cycle counts its failures under the policy it started with.
    refuse_if(a.multipath.marginal_path != b.multipath.marginal_path, "multipath.marginal_path",
              "each path counts its failures under the policy it started with: restart the "
              "attach to change it");
    refuse_if(a.control.socket != b.control.socket, "control.socket",
              "`iscsi-mpio reload` and `status` find the attach through it: restart the attach "
              "to move it");
    refuse_if(a.metrics.listen != b.metrics.listen, "metrics.listen",
              "the metrics listener is open: restart the attach to move it");
    refuse_if(a.nbd.listen != b.nbd.listen, "nbd.listen", kExports);
    refuse_if(!same_tls(a.nbd.tls, b.nbd.tls), "nbd.tls", kExports);
    refuse_if(a.nbd.export_name != b.nbd.export_name, "nbd.export", kExports);
    refuse_if(a.nbd.device != b.nbd.device, "nbd.device", kExports);
    refuse_if(a.nbd.busy_poll_us != b.nbd.busy_poll_us, "nbd.busy_poll_us", kExports);
    refuse_if(a.nbd.read_only != b.nbd.read_only, "nbd.read_only", kExports);
    refuse_if(a.nbd.description != b.nbd.description, "nbd.description", kExports);
    refuse_if(a.nbd.max_clients != b.nbd.max_clients, "nbd.max_clients", kExports);
    refuse_if(a.nbd.handshake_timeout != b.nbd.handshake_timeout, "nbd.handshake_timeout",
              kExports);
    refuse_if(a.nbd.client_buffer_mib != b.nbd.client_buffer_mib, "nbd.client_buffer_mib",
              kExports);
    refuse_if(a.nbd.total_buffer_mib != b.nbd.total_buffer_mib, "nbd.total_buffer_mib", kExports);
  }

  // Entries are matched by what they reach (portal or discover, source, interface), whatever
  // their order in the file.
  void paths() {
    const auto& before = running_.paths;
    const auto& after = next_.paths;
    std::vector<bool> kept(before.size(), false);
    std::vector<std::optional<size_t>> match(after.size());
    for (size_t j = 0; j < after.size(); ++j)
      for (size_t i = 0; i < before.size(); ++i)
        if (!kept[i] && same_path(before[i], after[j])) {
          kept[i] = true;
          match[j] = i;
          break;
        }
    for (size_t j = 0; j < after.size(); ++j)
      if (!match[j]) plan_.added.push_back(j);
    for (size_t i = 0; i < before.size(); ++i)
      if (!kept[i]) plan_.removed.push_back(i);
    const bool changed = !plan_.added.empty() || !plan_.removed.empty();
    const auto is_discover = [](const config::Path& p) { return p.discover.has_value(); };
    if (changed && (std::any_of(before.begin(), before.end(), is_discover) ||
                    std::any_of(after.begin(), after.end(), is_discover))) {
      refuse("paths", kDiscovery);
      return;
    }
    for (size_t j = 0; j < after.size(); ++j)
      if (match[j] && before[*match[j]].priority != after[j].priority)
        refuse("paths[" + std::to_string(j) + "].priority",
               "a path's priority places it when it logs in: remove the path in one reload and "
               "add it back with its new priority in the next, or restart the attach");
    if (!plan_.removed.empty() && plan_.removed.size() == before.size())
      refuse("paths",
             "every running path would be removed, leaving none to carry I/O while the new ones "
             "log in: add the new paths in one reload and remove the old ones in the next");
    for (size_t j : plan_.added)
      plan_.changes.push_back("paths[" + std::to_string(j) + "] added: " + describe_path(after[j]) +
                              " (logs in and joins every LUN's map)");
    for (size_t i : plan_.removed)
      plan_.changes.push_back("path " + describe_path(before[i]) +
                              " removed (drained first, then logged out)");
  }

  void multipath() {
    const auto& a = running_.multipath;
    const auto& b = next_.multipath;
    change(a.path_selector != b.path_selector, "multipath.path_selector", a.path_selector,
           b.path_selector);
    change(a.rr_min_io != b.rr_min_io, "multipath.rr_min_io", std::to_string(a.rr_min_io),
           std::to_string(b.rr_min_io));
    change(a.path_grouping_policy != b.path_grouping_policy, "multipath.path_grouping_policy",
           std::string(mpio::grouping_name(a.path_grouping_policy)),
           std::string(mpio::grouping_name(b.path_grouping_policy)));
    change(a.failback != b.failback, "multipath.failback", options::failback_text(a.failback),
           options::failback_text(b.failback));
    change(a.hedged_reads != b.hedged_reads, "multipath.hedged_reads",
           options::hedged_reads_text(a.hedged_reads), options::hedged_reads_text(b.hedged_reads));
    // The kernel's device mirrors these two in its timeouts (nbd::kernel_timeouts).
    const bool kernel = has_kernel_device(running_);
    if (kernel) {
      refuse_if(a.polling_interval != b.polling_interval, "multipath.polling_interval",
                kKernelTimeouts);
      refuse_if(a.no_path_retry != b.no_path_retry, "multipath.no_path_retry", kKernelTimeouts);
      return;
    }
    change(a.polling_interval != b.polling_interval, "multipath.polling_interval",
           std::to_string(a.polling_interval), std::to_string(b.polling_interval));
    change(a.no_path_retry != b.no_path_retry, "multipath.no_path_retry",
           options::no_path_retry_text(a.no_path_retry),
           options::no_path_retry_text(b.no_path_retry));
  }

  // The sessions take them (iscsi_io::SessionTimeouts): logins from now on, and the running
  // sessions in place.
  void timeouts() {
    const auto seconds = [](std::uint32_t s) { return std::to_string(s) + " s"; };
    const auto timeout = [&](std::uint32_t a, std::uint32_t b, const char* key) {
      if (a == b) return;
      plan_.changes.push_back(std::string(key) + ": " + seconds(a) + " -> " + seconds(b));
      plan_.timeouts_changed = true;
    };
    timeout(running_.target.login_timeout, next_.target.login_timeout,
            "target.login_timeout (the next logins)");
    timeout(running_.target.command_timeout, next_.target.command_timeout,
            "target.command_timeout (the running sessions too)");
    timeout(running_.multipath.noop_out_interval, next_.multipath.noop_out_interval,
            "multipath.noop_out_interval (the running sessions too)");
    timeout(running_.multipath.noop_out_timeout, next_.multipath.noop_out_timeout,
            "multipath.noop_out_timeout (the running sessions too)");
  }

  void log() {
    if (running_.log.level == next_.log.level) return;
    plan_.changes.push_back("log.level: " + running_.log.level + " -> " + next_.log.level);
    plan_.log_level = next_.log.level;
  }

  const config::Config& running_;
  const config::Config& next_;
  const config::KeyLines& lines_;
  Plan plan_;
};

}  // namespace

Plan plan_reload(const config::Config& running, const config::Config& next,
                 const config::KeyLines& next_lines) {
  return Planner(running, next, next_lines).plan();
}

std::string describe_refusals(const Plan& plan, const std::string& file) {
  std::string out;
  for (const auto& r : plan.refused) {
    out += file + ":";
    if (r.line > 0) out += std::to_string(r.line) + ":";
    out += " " + r.key + ": " + r.reason + "\n";
  }
  return out;
}

config::Config applied_config(const config::Config& running, const config::Config& next,
                              const Plan& plan) {
  config::Config out = next;
  if (running.initiator.name_generated && next.initiator.name_generated)
    out.initiator = running.initiator;
  out.paths.clear();
  for (size_t i = 0; i < running.paths.size(); ++i) {
    if (std::find(plan.removed.begin(), plan.removed.end(), i) != plan.removed.end()) continue;
    // The new file's entry for it: the same path, perhaps elsewhere in the file.
    const auto it = std::find_if(next.paths.begin(), next.paths.end(),
                                 [&](const auto& p) { return same_path(p, running.paths[i]); });
    out.paths.push_back(it != next.paths.end() ? *it : running.paths[i]);
  }
  for (size_t j : plan.added) out.paths.push_back(next.paths[j]);
  return out;
}

PathSync sync_paths(const std::vector<std::string>& device_paths,
                    const std::vector<std::string>& running_paths) {
  PathSync sync;
  const auto has = [](const std::vector<std::string>& list, const std::string& name) {
    return std::find(list.begin(), list.end(), name) != list.end();
  };
  for (size_t i = device_paths.size(); i-- > 0;)
    if (!has(running_paths, device_paths[i])) sync.remove.push_back(i);
  for (size_t j = 0; j < running_paths.size(); ++j)
    if (!has(device_paths, running_paths[j])) sync.add.push_back(j);
  return sync;
}

}  // namespace iscsi_mpio::reload
