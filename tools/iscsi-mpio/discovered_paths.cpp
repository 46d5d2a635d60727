#include "discovered_paths.hpp"

#include <algorithm>
#include <cctype>

#include "options.hpp"

namespace iscsi_mpio::discovery {
namespace {

bool same_name(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// Host names compare without regard to case (RFC 4343); IP literals have one spelling here
// (the parser keeps IPv6 without brackets).
bool same_portal(const config::Portal& a, const config::Portal& b) {
  return a.port == b.port && same_name(a.host, b.host);
}

std::string with_tag(const iscsi::TargetPortal& p) {
  return config::to_string(config::Portal{p.host, p.port}) + "," +
         std::to_string(p.portal_group_tag);
}

// What the answer held, for a message that says why nothing was usable.
std::string answer_text(const std::vector<iscsi::DiscoveredTarget>& answer) {
  if (answer.empty()) return "no target at all";
  std::string out;
  for (const auto& target : answer) {
    out += (out.empty() ? "" : "; ") + target.name;
    if (target.portals.empty()) out += " (no TargetAddress)";
    for (size_t i = 0; i < target.portals.size(); ++i)
      out += (i == 0 ? " at " : ", ") + with_tag(target.portals[i]);
  }
  return out;
}

bool unspecified_address(const std::string& host) {
  return host == "0.0.0.0" || host == "::" || host == "0:0:0:0:0:0:0:0";
}

}  // namespace

std::string entry_origin(const config::Path& entry) {
  if (entry.source && entry.interface)
    return "source " + *entry.source + " on interface " + *entry.interface;
  if (entry.source) return "source " + *entry.source;
  if (entry.interface) return "interface " + *entry.interface;
  return "the default route";
}

PortalChoice choose_portals(const std::vector<iscsi::DiscoveredTarget>& answer,
                            std::string_view target_iqn, const config::Path& entry,
                            const ReachabilityCheck& reachable) {
  PortalChoice choice;
  const config::Portal discovery_portal = entry.discover.value_or(entry.portal);
  const std::string via = config::to_string(discovery_portal);
  const std::string from = entry_origin(entry);
  // The target may be listed in several records (one per portal group); their portals add up.
  std::vector<config::Portal> reported;
  bool named = false;
  for (const auto& target : answer) {
    if (!same_name(target.name, target_iqn)) continue;
    named = true;
    // RFC 7143 Appendix C: a record with no TargetAddress is reached where it was discovered.
    if (target.portals.empty()) reported.push_back(discovery_portal);
    for (const auto& p : target.portals) reported.push_back(config::Portal{p.host, p.port});
  }
  if (!named) {
    choice.problem = "the SendTargets answer of " + via + " (from " + from + ") does not list " +
                     std::string(target_iqn) + "; it lists " + answer_text(answer);
    return choice;
  }
  // "IPv4", "IPv6", or "" for none or a host name.
  const auto family_name = [](const std::string& host) -> std::string {
    const auto family = config::ip_literal_family(host);
    if (!family) return "";
    return *family == config::AddressFamily::ipv6 ? "IPv6" : "IPv4";
  };
  const std::string source_family = entry.source ? family_name(*entry.source) : "";
  std::vector<config::Portal> judged;
  for (const auto& portal : reported) {
    if (std::any_of(judged.begin(), judged.end(),
                    [&](const config::Portal& p) { return same_portal(p, portal); }))
      continue;
    judged.push_back(portal);
    const std::string name = config::to_string(portal);
    const std::string family = family_name(portal.host);
    std::optional<std::string> why;
    if (unspecified_address(portal.host)) {
      why = "an unspecified address";
    } else if (!family.empty() && !source_family.empty() && family != source_family) {
      why = family + ", the " + from + " is " + source_family;
    } else {
      why = reachable(portal);
    }
    if (why)
      choice.skipped.push_back(name + " (" + *why + ")");
    else
      choice.usable.push_back(portal);
  }
  if (choice.usable.empty()) {
    std::string listed;
    for (const auto& s : choice.skipped) listed += (listed.empty() ? "" : ", ") + s;
    choice.problem = "the SendTargets answer of " + via + " lists " + std::string(target_iqn) +
                     " only at portals not reachable from " + from + ": " + listed;
  }
  return choice;
}

iscsi_io::PathConfig discovery_path_config(const config::Config& cfg, const config::Path& entry) {
  config::Config for_discovery = cfg;
  for_discovery.target.auth = cfg.target.discovery_auth;
  config::Path at = entry;
  at.portal = entry.discover.value_or(entry.portal);
  at.discover.reset();
  auto pc = options::path_config(for_discovery, at, iscsi_io::random_isid());
  pc.target_name.clear();
  return pc;
}

std::vector<config::Path> expand_paths(const std::vector<config::Path>& entries,
                                       const std::vector<PortalChoice>& choices,
                                       std::vector<std::string>& origins) {
  std::vector<config::Path> out;
  origins.clear();
  const auto same_path = [](const config::Path& a, const config::Path& b) {
    return !a.discover && !b.discover && same_portal(a.portal, b.portal) && a.source == b.source &&
           a.interface == b.interface;
  };
  // A path the file writes out wins over the same one discovered, wherever it stands.
  const auto already = [&](const config::Path& path) {
    const auto same = [&](const config::Path& p) { return same_path(p, path); };
    return std::any_of(out.begin(), out.end(), same) ||
           std::any_of(entries.begin(), entries.end(), same);
  };
  for (size_t i = 0; i < entries.size(); ++i) {
    const config::Path& entry = entries[i];
    if (!entry.discover) {
      out.push_back(entry);
      origins.emplace_back();
      continue;
    }
    if (i >= choices.size()) continue;
    for (const auto& portal : choices[i].usable) {
      config::Path path = entry;
      path.discover.reset();
      path.portal = portal;
      if (already(path)) continue;
      out.push_back(std::move(path));
      origins.push_back("discovered via " + config::to_string(*entry.discover));
    }
  }
  return out;
}

}  // namespace iscsi_mpio::discovery
