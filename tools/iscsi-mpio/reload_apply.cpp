#include "reload_apply.hpp"

#include <spdlog/spdlog.h>
#include <algorithm>
#include <fstream>
#include <sstream>

#include "options.hpp"
#include "reload_plan.hpp"

namespace iscsi_mpio::reload {
namespace {

constexpr const char* kLevels[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};

// The text load_file() would read, read once here: the lines of refused keys come from the
// same text that was checked.
bool read_text(const std::string& path, std::string& text) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream content;
  content << in.rdbuf();
  text = content.str();
  return !in.bad();
}

std::string refused(const std::string& why) {
  spdlog::error("reload refused, the attach goes on unchanged: {}", why);
  return "error: " + why + (why.empty() || why.back() == '\n' ? "" : "\n");
}

// A removal must leave every served LUN a path that carries I/O now: the paths added by the
// same reload are still logging in.
std::string usable_after(const Running& running, const Plan& plan) {
  for (const auto& d : running.devices) {
    if (!d.served) continue;
    const auto paths = d.device->path_status();
    bool usable = false;
    for (size_t i = 0; i < paths.size(); ++i)
      if (std::find(plan.removed.begin(), plan.removed.end(), i) == plan.removed.end())
        usable = usable || paths[i].state == mpio::PathState::active;
    if (!usable)
      return "removing " + std::to_string(plan.removed.size()) + " path(s) would leave LUN " +
             std::to_string(d.lun) +
             " no path that carries I/O now (the others are failed or still logging in): add "
             "or repair a path first, then remove";
  }
  return {};
}

}  // namespace

bool valid_log_level(const std::string& level) {
  return std::find(std::begin(kLevels), std::end(kLevels), level) != std::end(kLevels);
}

std::string apply(Running running, const std::string& config_path, const std::string& log_level) {
  if (!log_level.empty() && !valid_log_level(log_level))
    return refused("unknown log level '" + log_level +
                   "' (trace, debug, info, warn, error, critical, off)");
  for (const auto& d : running.devices)
    if (d.device->paths_draining() > 0)
      return refused("a previous reload is still draining " +
                     std::to_string(d.device->paths_draining()) +
                     " path(s): try again once they are gone");
  std::string text;
  if (!read_text(config_path, text)) {
    // load_file() says why (missing, unreadable) with the file's name.
    return refused(config_path + " cannot be read:\n" +
                   config::load_file(config_path).error_report());
  }
  const auto loaded = config::load_string(text, config_path);
  if (!loaded)
    return refused(config_path + " has errors, nothing applied:\n" + loaded.error_report());
  for (const auto& warning : loaded.warnings()) spdlog::warn("reload: {}", warning.to_string());

  const config::Config& next = loaded.config();
  const Plan plan = plan_reload(running.config, next, config::key_lines(text));
  if (!plan.accepted())
    return refused(config_path +
                   ": the running attach cannot take these changes, nothing "
                   "applied (restart it for them):\n" +
                   describe_refusals(plan, config_path));
  if (!plan.removed.empty())
    if (auto why = usable_after(running, plan); !why.empty()) return refused(why);

  const config::Config applied = applied_config(running.config, next, plan);
  if (plan.settings_changed) {
    const mpio::LunConfig settings = options::lun_config(applied);
    for (const auto& d : running.devices) {
      std::string detail;
      if (auto ec = d.device->reconfigure(settings, detail))
        spdlog::error("reload: LUN {}: {}", d.lun, detail);  // the schema checked the names
    }
  }
  if (plan.timeouts_changed) {
    // Every device, and the paths later LUNs open with (one ISID each: the same sessions).
    const auto timeouts = options::session_timeouts(applied);
    for (auto& path : running.paths) iscsi_io::set_timeouts(path.login, timeouts);
    for (const auto& d : running.devices) d.device->set_timeouts(timeouts);
  }
  for (size_t j : plan.added) {
    // One ISID for every LUN: one session per path at the target, shared through the pool.
    const mpio::LunPath path{options::path_config(applied, next.paths[j], iscsi_io::random_isid()),
                             next.paths[j].priority.value_or(0)};
    running.paths.push_back(path);
    for (const auto& d : running.devices) d.device->add_path(path);
  }
  // From the last: a path removed at once (nothing in flight) moves up only those after it.
  std::vector<size_t> removed = plan.removed;
  std::sort(removed.rbegin(), removed.rend());
  for (size_t index : removed) {
    const std::string name = iscsi_io::describe(running.paths[index].login);
    running.paths.erase(running.paths.begin() + static_cast<std::ptrdiff_t>(index));
    auto left = std::make_shared<size_t>(running.devices.size());
    for (const auto& d : running.devices) {
      std::string detail;
      auto device = d.device;
      const auto released = [left, name](std::error_code ec) {
        if (ec) spdlog::warn("reload: path {}: logout: {}", name, ec.message());
        if (--*left == 0)
          spdlog::info("reload: path {} removed: drained, no LUN uses its session any more", name);
      };
      auto ec = device->remove_path(
          index, detail,
          [device, path_removed = running.path_removed](size_t at) {
            if (path_removed) path_removed(*device, at);
          },
          released);
      if (ec) {
        spdlog::warn("reload: LUN {}: {}", d.lun, detail);
        released({});
      }
    }
  }
  running.config = applied;
  if (running.paths_changed) running.paths_changed();
  std::string answer = "ok: " + config_path;
  // `reload --log-level` wins over the file's log.level for this reload.
  if (!log_level.empty()) {
    spdlog::set_level(spdlog::level::from_str(log_level));
    answer += "\n  log level: " + log_level;
  } else if (plan.log_level) {
    spdlog::set_level(spdlog::level::from_str(*plan.log_level));
  }
  if (plan.changes.empty() && log_level.empty()) answer += ": nothing changed";
  for (const auto& line : plan.changes) answer += "\n  " + line;
  // Said at warning level too, so that a reload to a quieter level still leaves its trace.
  spdlog::log(plan.log_level ? spdlog::level::warn : spdlog::level::info, "reload applied: {}",
              answer.substr(4));
  return answer + "\n";
}

}  // namespace iscsi_mpio::reload
