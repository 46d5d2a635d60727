#include "status.hpp"

#include <algorithm>
#include <cstdio>
#include <vector>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include "json_text.hpp"

namespace iscsi_mpio::status {
namespace {

// multipath -ll's dm state / checker state words for each path state.
const char* path_words(mpio::PathState state) {
  switch (state) {
    case mpio::PathState::active:
      return "active ready  ";
    case mpio::PathState::ghost:
      return "active ghost  ";
    case mpio::PathState::connecting:
      return "active pending";
    case mpio::PathState::failed:
      return "failed faulty ";
    case mpio::PathState::refused:
      return "failed refused";
    case mpio::PathState::marginal:
      return "failed marginal";
  }
  return "unknown       ";
}

// "discovered via HOST:PORT" for a path from a `discover:` entry, else "".
std::string origin_of(const Snapshot& s, const std::string& path) {
  for (const auto& [name, origin] : s.path_origins)
    if (name == path) return origin;
  return {};
}

}  // namespace

std::string marginal_text(const mpio::PathStatus& p) {
  if (!p.marginal) return {};
  const auto failures = " (" + std::to_string(p.marginal_failures) + " failures)";
  if (p.state != mpio::PathState::marginal) return " marginal: held out once back" + failures;
  char left[32];
  std::snprintf(left, sizeof left, "%.1f s",
                static_cast<double>(p.marginal_time_left.count()) / 1000);
  return std::string(" marginal: held out, reinstated in ") + left + failures;
}

std::string size_text(uint64_t bytes) {
  const char* units[] = {"", "K", "M", "G", "T", "P"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, v == static_cast<uint64_t>(v) ? "%.0f%s" : "%.1f%s", v, units[u]);
  return buf;
}

std::string render_tree(const Snapshot& s) {
  std::string out = s.export_name + " (" + (s.info.wwid.empty() ? "-" : s.info.wwid) + ") " +
                    s.info.vendor + "," + s.info.product + "\n";
  out += "size=" + size_text(s.info.size_bytes) + " features='" +
         (s.no_path_retry == "fail" ? std::string("0") : "queue_if_no_path") +
         "' grouping=" + s.grouping + " failback=" + s.failback +
         " no_path_retry=" + s.no_path_retry + " uri=" + s.uri + "\n";
  out += s.target + " lun " + std::to_string(s.lun) + "\n";
  // Path groups as multipath -ll lists them: the highest priority first.
  std::vector<uint32_t> groups;
  for (const auto& p : s.paths)
    if (std::find(groups.begin(), groups.end(), p.group) == groups.end()) groups.push_back(p.group);
  auto priority_of = [&](uint32_t g) {
    uint32_t prio = 0;
    for (const auto& p : s.paths)
      if (p.group == g) prio = std::max(prio, p.priority);
    return prio;
  };
  std::stable_sort(groups.begin(), groups.end(), [&](uint32_t a, uint32_t b) {
    return priority_of(a) != priority_of(b) ? priority_of(a) > priority_of(b) : a < b;
  });
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    const uint32_t g = groups[gi];
    const bool last_group = gi + 1 == groups.size();
    bool in_use = false, usable = false;
    std::vector<const mpio::PathStatus*> members;
    for (const auto& p : s.paths) {
      if (p.group != g) continue;
      members.push_back(&p);
      in_use = in_use || (p.group_in_use && p.state == mpio::PathState::active);
      usable = usable || p.state == mpio::PathState::active || p.state == mpio::PathState::ghost;
    }
    out += std::string(last_group ? "`-+- " : "|-+- ") + "policy='" + s.selector +
           " 0' prio=" + std::to_string(priority_of(g)) + " status=" +
           (in_use   ? "active"
            : usable ? "enabled"
                     : "disabled") +
           "\n";
    for (size_t i = 0; i < members.size(); ++i) {
      const auto& p = *members[i];
      char line[512];
      std::snprintf(line, sizeof line,
                    "%s %s %-36s %s in-flight %u iops %llu cmds %llu bytes %s errors %llu",
                    last_group ? " " : "|", i + 1 == members.size() ? "`-" : "|-", p.name.c_str(),
                    path_words(p.state), p.in_flight, static_cast<unsigned long long>(p.iops),
                    static_cast<unsigned long long>(p.commands), size_text(p.bytes).c_str(),
                    static_cast<unsigned long long>(p.errors));
      out += line;
      if (!p.alua_state.empty()) out += " alua " + p.alua_state;
      if (!p.alua_activation.empty()) out += "  [" + p.alua_activation + "]";
      out += marginal_text(p);
      if (p.state != mpio::PathState::active && !p.last_error.empty())
        out += "  (" + p.last_error + ")";
      if (const auto origin = origin_of(s, p.name); !origin.empty()) out += "  [" + origin + "]";
      out += "\n";
    }
  }
  for (const auto& skipped : s.discovery_skipped) out += "discovery: " + skipped + "\n";
  return out;
}

namespace {

boost::json::object json_object(const Snapshot& s) {
  using json_text::utf8;
  boost::json::array paths;
  for (const auto& p : s.paths)
    paths.push_back({{"path", utf8(p.name)},
                     {"state", mpio::path_state_name(p.state)},
                     {"in_flight", p.in_flight},
                     {"commands", p.commands},
                     {"bytes", p.bytes},
                     {"errors", p.errors},
                     {"iops", p.iops},
                     {"group", p.group},
                     {"priority", p.priority},
                     {"group_in_use", p.group_in_use},
                     {"alua_state", utf8(p.alua_state)},
                     {"alua_activation", utf8(p.alua_activation)},
                     {"marginal", p.marginal},
                     {"marginal_failures", p.marginal_failures},
                     {"marginal_ms_left", p.marginal_time_left.count()},
                     {"hedges_sent", p.hedges_sent},
                     {"hedges_won", p.hedges_won},
                     {"last_error", utf8(p.last_error)},
                     {"origin", utf8(origin_of(s, p.name))}});
  boost::json::array skipped;
  for (const auto& text : s.discovery_skipped) skipped.emplace_back(utf8(text));
  // NBD block status: from GET LBA STATUS on a thin LU, else every extent is data.
  const char* block_status = s.info.supports_block_status ? "get_lba_status" : "all_data";
  return {{"export", utf8(s.export_name)},     {"uri", utf8(s.uri)},
          {"wwid", utf8(s.info.wwid)},         {"vendor", utf8(s.info.vendor)},
          {"product", utf8(s.info.product)},   {"size_bytes", s.info.size_bytes},
          {"target", utf8(s.target)},          {"lun", s.lun},
          {"path_selector", utf8(s.selector)}, {"path_grouping_policy", utf8(s.grouping)},
          {"failback", utf8(s.failback)},      {"no_path_retry", utf8(s.no_path_retry)},
          {"paths", std::move(paths)},         {"discovery_skipped", std::move(skipped)},
          {"block_status", block_status}};
}

}  // namespace

std::string render_json(const Snapshot& s) {
  return json_text::line(json_object(s));
}

std::string render_trees(const std::vector<Snapshot>& maps) {
  std::string out;
  for (const auto& map : maps) out += render_tree(map);
  return out;
}

std::string render_json(const std::vector<Snapshot>& maps) {
  boost::json::array out;
  for (const auto& map : maps) out.push_back(json_object(map));
  return json_text::line(out);
}

}  // namespace iscsi_mpio::status
