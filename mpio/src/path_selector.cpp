#include "mpio/path_selector.hpp"

#include <algorithm>

namespace mpio {
namespace {

class RoundRobin final : public PathSelector {
 public:
  explicit RoundRobin(uint32_t rr_min_io) : rr_min_io_(std::max<uint32_t>(rr_min_io, 1)) {}
  std::string_view name() const override { return "round-robin"; }

  size_t select(std::span<const PathLoad> usable, uint64_t) override {
    // Stay on the current path for rr_min_io commands if it is still usable; otherwise move to
    // the next usable path after it (by index), so a returning path rejoins the rotation.
    auto current = std::find_if(usable.begin(), usable.end(),
                                [&](const PathLoad& p) { return p.path == current_; });
    if (current != usable.end() && sent_ < rr_min_io_ && started_) {
      ++sent_;
      return current_;
    }
    auto next = std::find_if(usable.begin(), usable.end(),
                             [&](const PathLoad& p) { return !started_ || p.path > current_; });
    if (next == usable.end()) next = usable.begin();
    current_ = next->path;
    started_ = true;
    sent_ = 1;
    return current_;
  }

 private:
  uint32_t rr_min_io_;
  size_t current_ = 0;
  uint32_t sent_ = 0;
  bool started_ = false;
};

class QueueLength final : public PathSelector {
 public:
  std::string_view name() const override { return "queue-length"; }
  size_t select(std::span<const PathLoad> usable, uint64_t) override {
    return std::min_element(
               usable.begin(), usable.end(),
               [](const PathLoad& a, const PathLoad& b) { return a.in_flight < b.in_flight; })
        ->path;
  }
};

class ServiceTime final : public PathSelector {
 public:
  std::string_view name() const override { return "service-time"; }
  size_t select(std::span<const PathLoad> usable, uint64_t bytes) override {
    // Compare (load_a + bytes) / tp_a < (load_b + bytes) / tp_b without division.
    auto cost_less = [bytes](const PathLoad& a, const PathLoad& b) {
      const auto ta = std::max<uint32_t>(a.relative_throughput, 1);
      const auto tb = std::max<uint32_t>(b.relative_throughput, 1);
      return static_cast<__uint128_t>(a.in_flight_bytes + bytes) * tb <
             static_cast<__uint128_t>(b.in_flight_bytes + bytes) * ta;
    };
    return std::min_element(usable.begin(), usable.end(), cost_less)->path;
  }
};

}  // namespace

std::unique_ptr<PathSelector> make_path_selector(std::string_view name, uint32_t rr_min_io) {
  if (name == "round-robin") return std::make_unique<RoundRobin>(rr_min_io);
  if (name == "queue-length") return std::make_unique<QueueLength>();
  if (name == "service-time") return std::make_unique<ServiceTime>();
  return nullptr;
}

}  // namespace mpio
