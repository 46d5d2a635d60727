// SendTargets results (RFC 7143 §4.3, Appendix C): TargetName keys each followed by the
// TargetAddress keys of that target's portals.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "iscsi/text.hpp"

namespace iscsi {

struct TargetPortal {
  std::string host;  // IPv6 literals without brackets
  uint16_t port = 3260;
  uint16_t portal_group_tag = 1;
};

struct DiscoveredTarget {
  std::string name;
  std::vector<TargetPortal> portals;
};

// Parses "domainname[:port][,portal-group-tag]" (§13.8). A target address with no port uses
// 3260 (§13.8); false on malformed input.
bool parse_target_address(std::string_view value, TargetPortal& out);

// Groups the pairs of a SendTargets response. Addresses before any TargetName and malformed
// ones are skipped (and counted in `skipped`).
std::vector<DiscoveredTarget> parse_send_targets(const std::vector<TextPair>& pairs,
                                                 size_t* skipped = nullptr);

}  // namespace iscsi
