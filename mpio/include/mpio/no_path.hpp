// multipath.conf no_path_retry: what happens to a command when no path of the group in use can
// take it. Pure policy: the device says whether it is closing and whether a deadline already
// ran out; the answer is whether the command fails now or waits, and for how long at most.
#pragma once

#include <chrono>
#include <optional>

#include <blockdev/no_path_retry.hpp>

namespace mpio {

struct NoPathDecision {
  enum class Action {
    fail,   // end the command now with EIO
    queue,  // hold it until a path is usable
  };
  Action action = Action::fail;
  // queue under no_path_retry N: when the held commands fail if no path is active by then
  // (N polling intervals, at least one). Armed once for all held commands, not per command.
  std::optional<std::chrono::milliseconds> deadline;
};

// `closing`: the device is shutting down, nothing will come back to carry the command.
// `failing_without_path`: a no_path_retry N deadline ran out and no path has returned since:
// commands fail at once, as dm-multipath does once its retries are exhausted.
NoPathDecision decide_no_path(const blockdev::NoPathRetry& policy,
                              std::chrono::milliseconds polling_interval, bool closing,
                              bool failing_without_path);

}  // namespace mpio
