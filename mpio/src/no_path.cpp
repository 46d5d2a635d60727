#include "mpio/no_path.hpp"

#include <algorithm>
#include <cstdint>

namespace mpio {

NoPathDecision decide_no_path(const blockdev::NoPathRetry& policy,
                              std::chrono::milliseconds polling_interval, bool closing,
                              bool failing_without_path) {
  using Mode = blockdev::NoPathRetry::Mode;
  if (closing || policy.mode == Mode::fail || failing_without_path) return {};
  NoPathDecision decision;
  decision.action = NoPathDecision::Action::queue;
  if (policy.mode == Mode::intervals)
    decision.deadline = polling_interval * std::max<uint32_t>(policy.intervals, 1);
  return decision;
}

}  // namespace mpio
