// The check-config report: findings from what each path showed, and the table. No I/O here.
#include "check_config.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <map>

namespace iscsi_mpio::check_config {
namespace {

// "A", "A and B", "A, B and C".
std::string join_names(const std::vector<PathReport>& paths, const std::vector<size_t>& indexes) {
  std::string out;
  for (size_t k = 0; k < indexes.size(); ++k) {
    if (k > 0) out += k + 1 == indexes.size() ? " and " : ", ";
    out += paths[indexes[k]].name;
  }
  return out;
}

std::string wwid_text(const std::string& wwid) {
  return wwid.empty() ? "(no identifier)" : wwid;
}

void step_findings(const std::vector<PathReport>& paths, std::vector<Finding>& errors) {
  for (size_t i = 0; i < paths.size(); ++i) {
    const auto& p = paths[i];
    if (p.connect.failed())
      errors.push_back({Finding::Severity::error,
                        {i},
                        "path " + p.name + ": connect failed: " + p.connect.detail});
    else if (p.login.failed())
      errors.push_back(
          {Finding::Severity::error, {i}, "path " + p.name + ": login failed: " + p.login.detail});
    else if (p.device.failed())
      errors.push_back({Finding::Severity::error, {i}, "path " + p.name + ": " + p.device.detail});
  }
}

// Every path must reach one logical unit: attach refuses a path that presents another device
// (target.wwid, or else the device of the first path in the file that logs in).
void device_findings(const std::vector<PathReport>& paths, const std::string& expected_wwid,
                     std::vector<Finding>& errors, std::vector<Finding>& warnings) {
  std::vector<size_t> probed;
  for (size_t i = 0; i < paths.size(); ++i)
    if (paths[i].usable()) probed.push_back(i);

  for (size_t i : probed)
    for (const auto& note : paths[i].notes)
      warnings.push_back({Finding::Severity::warning, {i}, "path " + paths[i].name + ": " + note});
  for (size_t i : probed)
    if (paths[i].wwid.empty())
      warnings.push_back({Finding::Severity::warning,
                          {i},
                          "path " + paths[i].name +
                              " presents no device identifier (no VPD 0x83 designator, no serial "
                              "number): nothing proves that the paths reach one device"});

  if (!expected_wwid.empty()) {
    for (size_t i : probed)
      if (paths[i].wwid != expected_wwid)
        errors.push_back({Finding::Severity::error,
                          {i},
                          "different devices: path " + paths[i].name + " presents " +
                              wwid_text(paths[i].wwid) + ", not target.wwid " + expected_wwid +
                              " (attach refuses this path)"});
  } else {
    // Groups by WWID in order of first appearance: the first is what attach would take.
    std::vector<std::pair<std::string, std::vector<size_t>>> groups;
    for (size_t i : probed) {
      auto g = std::find_if(groups.begin(), groups.end(),
                            [&](const auto& e) { return e.first == paths[i].wwid; });
      if (g == groups.end())
        groups.push_back({paths[i].wwid, {i}});
      else
        g->second.push_back(i);
    }
    if (groups.size() > 1) {
      Finding f{Finding::Severity::error, {}, "paths present different devices: "};
      for (size_t g = 0; g < groups.size(); ++g) {
        if (g > 0) {
          f.message += "; ";
          f.paths.insert(f.paths.end(), groups[g].second.begin(), groups[g].second.end());
        }
        f.message += join_names(paths, groups[g].second) + " " +
                     (groups[g].second.size() > 1 ? "present " : "presents ") +
                     wwid_text(groups[g].first);
      }
      f.message +=
          " (attach uses the first path's device and refuses the others; set "
          "target.wwid to the device you mean)";
      errors.push_back(std::move(f));
    }
  }

  // One WWID, two sizes: a resize seen by one path only, or two LUNs cloned with one identity.
  std::map<std::string, std::vector<size_t>> by_wwid;
  for (size_t i : probed)
    if (!paths[i].wwid.empty() && paths[i].block_size != 0) by_wwid[paths[i].wwid].push_back(i);
  for (const auto& [wwid, indexes] : by_wwid) {
    const auto differs = std::any_of(indexes.begin(), indexes.end(), [&](size_t i) {
      return paths[i].size_bytes != paths[indexes.front()].size_bytes;
    });
    if (!differs) continue;
    Finding f{Finding::Severity::warning, indexes, "device " + wwid + " has different sizes: "};
    for (size_t k = 0; k < indexes.size(); ++k)
      f.message += (k > 0 ? ", " : "") + size_text(paths[indexes[k]].size_bytes) + " (" +
                   std::to_string(paths[indexes[k]].size_bytes) + " bytes) on " +
                   paths[indexes[k]].name;
    warnings.push_back(std::move(f));
  }
}

// Two sessions that leave through one NIC fail together when its cable is pulled: the common
// mistake of two NICs on one subnet, where the kernel routes both out of one of them.
void interface_findings(const std::vector<PathReport>& paths, std::vector<Finding>& warnings) {
  std::vector<std::pair<std::string, std::vector<size_t>>> groups;
  for (size_t i = 0; i < paths.size(); ++i) {
    if (!paths[i].interface) continue;
    auto g = std::find_if(groups.begin(), groups.end(),
                          [&](const auto& e) { return e.first == *paths[i].interface; });
    if (g == groups.end())
      groups.push_back({*paths[i].interface, {i}});
    else
      g->second.push_back(i);
  }
  for (const auto& [interface, indexes] : groups) {
    if (indexes.size() < 2) continue;
    warnings.push_back(
        {Finding::Severity::warning, indexes,
         "paths " + join_names(paths, indexes) + (indexes.size() > 2 ? " all" : " both") +
             " leave through interface " + interface + ": that is one path, not " +
             (indexes.size() > 2 ? std::to_string(indexes.size()) : std::string("two")) +
             " (give each NIC its own subnet, or policy-route each source address)"});
  }
}

// Jumbo frames on one path only: I/O that moves to the other path after a failover changes
// frame size, and a switch port left at 1500 on a 9000 path drops the large frames silently.
void mtu_findings(const std::vector<PathReport>& paths, std::vector<Finding>& warnings) {
  std::vector<size_t> known;
  for (size_t i = 0; i < paths.size(); ++i)
    if (paths[i].interface && paths[i].mtu) known.push_back(i);
  const bool differs = std::any_of(known.begin(), known.end(), [&](size_t i) {
    return *paths[i].mtu != *paths[known.front()].mtu;
  });
  if (!differs) return;
  Finding f{Finding::Severity::warning, known, "MTU differs between paths: "};
  for (size_t k = 0; k < known.size(); ++k)
    f.message += (k > 0 ? ", " : "") + std::to_string(*paths[known[k]].mtu) + " on " +
                 *paths[known[k]].interface + " (" + paths[known[k]].name + ")";
  f.message +=
      ": jumbo frames on one path only (give every storage NIC the same MTU, and check "
      "it end to end with ping -M do -s MTU-28 PORTAL)";
  warnings.push_back(std::move(f));
}

bool concerns(const Finding& f, size_t i) {
  return std::find(f.paths.begin(), f.paths.end(), i) != f.paths.end();
}

std::string verdict(const PathReport& p, size_t i, const std::vector<Finding>& findings) {
  if (p.connect.outcome == Step::Outcome::not_tried) return "not probed";
  if (!p.usable()) return "FAIL";
  for (const auto& f : findings)
    if (f.severity == Finding::Severity::error && concerns(f, i)) return "OTHER DEVICE";
  for (const auto& f : findings)
    if (concerns(f, i)) return "ok, warning";
  return "ok";
}

std::string cell(const Step& step) {
  if (step.outcome == Step::Outcome::not_tried) return "-";
  return step.summary.empty() ? (step.ok() ? "ok" : "failed") : step.summary;
}

}  // namespace

std::string size_text(uint64_t bytes) {
  constexpr std::array units{"", "K", "M", "G", "T", "P"};
  double value = static_cast<double>(bytes);
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < units.size()) {
    value /= 1024;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf,
                value == static_cast<double>(static_cast<uint64_t>(value)) ? "%.0f%s" : "%.1f%s",
                value, units[unit]);
  return buf;
}

std::vector<Finding> assess(const std::vector<PathReport>& paths,
                            const std::string& expected_wwid) {
  std::vector<Finding> errors;
  std::vector<Finding> warnings;
  step_findings(paths, errors);
  device_findings(paths, expected_wwid, errors, warnings);
  interface_findings(paths, warnings);
  mtu_findings(paths, warnings);
  errors.insert(errors.end(), std::make_move_iterator(warnings.begin()),
                std::make_move_iterator(warnings.end()));
  return errors;
}

int exit_code(const std::vector<Finding>& findings, bool strict) {
  for (const auto& f : findings)
    if (f.severity == Finding::Severity::error || strict) return exit_problem;
  return exit_ok;
}

std::string render(const std::vector<PathReport>& paths, const std::vector<Finding>& findings) {
  constexpr size_t columns = 8;
  using Row = std::array<std::string, columns>;
  std::vector<Row> rows{
      {"PATH", "INTERFACE", "MTU", "CONNECT", "LOGIN", "WWID", "SIZE", "VERDICT"}};
  for (size_t i = 0; i < paths.size(); ++i) {
    const auto& p = paths[i];
    rows.push_back({p.name, p.interface.value_or("-"), p.mtu ? std::to_string(*p.mtu) : "-",
                    cell(p.connect), cell(p.login),
                    p.device.ok()       ? wwid_text(p.wwid)
                    : p.device.failed() ? "?"
                                        : "-",
                    p.device.ok() && p.block_size != 0 ? size_text(p.size_bytes) : "-",
                    verdict(p, i, findings)});
  }
  std::array<size_t, columns> width{};
  for (const auto& row : rows)
    for (size_t c = 0; c < columns; ++c) width[c] = std::max(width[c], row[c].size());

  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < columns; ++c) {
      line += row[c];
      if (c + 1 < columns) line += std::string(width[c] - row[c].size() + 2, ' ');
    }
    out += line + "\n";
  }

  size_t errors = 0;
  size_t warnings = 0;
  for (const auto& f : findings) {
    const bool is_error = f.severity == Finding::Severity::error;
    (is_error ? errors : warnings) += 1;
    out += std::string(is_error ? "error: " : "warning: ") + f.message + "\n";
  }
  const auto reachable = static_cast<size_t>(
      std::count_if(paths.begin(), paths.end(), [](const PathReport& p) { return p.usable(); }));
  const bool probed = std::any_of(paths.begin(), paths.end(), [](const PathReport& p) {
    return p.connect.outcome != Step::Outcome::not_tried;
  });
  const auto plural = [](size_t n, const char* word) {
    return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
  };
  if (!probed && errors == 0)
    out += "configuration valid, " + plural(paths.size(), "path") + " not probed";
  else if (errors == 0)
    out += "all " + plural(paths.size(), "path") + " usable and consistent";
  else
    out += std::to_string(reachable) + " of " + plural(paths.size(), "path") + " reachable, " +
           plural(errors, "error");
  out += warnings > 0 ? ", " + plural(warnings, "warning") + "\n" : "\n";
  return out;
}

}  // namespace iscsi_mpio::check_config
