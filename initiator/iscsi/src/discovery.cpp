#include "iscsi/discovery.hpp"

#include <charconv>

namespace iscsi {
namespace {

bool parse_u16(std::string_view s, uint16_t& out) {
  if (s.empty()) return false;
  unsigned value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc{} || end != s.data() + s.size() || value > 0xffff) return false;
  out = static_cast<uint16_t>(value);
  return true;
}

}  // namespace

bool parse_target_address(std::string_view value, TargetPortal& out) {
  TargetPortal portal;
  if (auto comma = value.rfind(','); comma != std::string_view::npos) {
    if (!parse_u16(value.substr(comma + 1), portal.portal_group_tag)) return false;
    value = value.substr(0, comma);
  }
  if (!value.empty() && value.front() == '[') {  // [IPv6]:port
    auto close = value.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    portal.host = std::string(value.substr(1, close - 1));
    auto rest = value.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':' || !parse_u16(rest.substr(1), portal.port)) return false;
    }
  } else {
    auto colon = value.rfind(':');
    if (colon != std::string_view::npos && value.find(':') == colon) {
      if (!parse_u16(value.substr(colon + 1), portal.port)) return false;
      value = value.substr(0, colon);
    }
    if (value.empty()) return false;
    portal.host = std::string(value);
  }
  if (portal.port == 0) return false;
  out = std::move(portal);
  return true;
}

std::vector<DiscoveredTarget> parse_send_targets(const std::vector<TextPair>& pairs,
                                                 size_t* skipped) {
  std::vector<DiscoveredTarget> targets;
  size_t bad = 0;
  for (const auto& pair : pairs) {
    if (pair.key == "TargetName") {
      targets.push_back({pair.value, {}});
    } else if (pair.key == "TargetAddress") {
      TargetPortal portal;
      if (targets.empty() || !parse_target_address(pair.value, portal)) {
        ++bad;
        continue;
      }
      targets.back().portals.push_back(std::move(portal));
    }
  }
  if (skipped != nullptr) *skipped = bad;
  return targets;
}

}  // namespace iscsi
