// Path selectors with dm-multipath's meaning (multipath.conf path_selector). Pure policy: the
// device tells them the load of each usable path, they pick one. No I/O, no clock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace mpio {

struct PathLoad {
  size_t path = 0;                   // the device's index of the path
  uint32_t in_flight = 0;            // commands outstanding on it
  uint64_t in_flight_bytes = 0;      // their data
  uint32_t relative_throughput = 1;  // service-time's weight (1 = all paths alike)
};

class PathSelector {
 public:
  virtual ~PathSelector() = default;
  // `usable` is never empty; returns one of its `path` values.
  virtual size_t select(std::span<const PathLoad> usable, uint64_t bytes) = 0;
  virtual std::string_view name() const = 0;
};

// "round-robin": rr_min_io commands to a path before moving to the next.
// "queue-length": the path with the fewest commands in flight.
// "service-time": the path with the least (in-flight bytes + this request) / relative throughput.
// Ties go to the lowest path index, which keeps the choice deterministic.
std::unique_ptr<PathSelector> make_path_selector(std::string_view name, uint32_t rr_min_io = 1);

// Names make_path_selector accepts, for config validation and messages.
inline constexpr std::string_view path_selector_names[] = {"round-robin", "queue-length",
                                                           "service-time"};

}  // namespace mpio
