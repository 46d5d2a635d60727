// Shaky ("marginal") path detection with multipath.conf's san_path_err_* meaning: a path that
// keeps failing and coming back is not put back to work on its next good login, but held out
// until it has stayed good for a while. Pure policy: the path's life cycle tells it when the
// path came up, failed and came back, with the time; it answers whether to hold the path out
// and until when. No I/O, no clock of its own (tests drive it with made-up time points).
//
// multipath.conf(5), "Shaky paths detection", "san_path_err" failure tracking:
// - a failure is a path at work going bad (a good -> bad transition); attempts to come back
//   that fail are not counted again (the path was bad all along);
// - one past failure is forgotten every san_path_err_forget_rate checks (polling intervals)
//   the path spends up, so failures rarer than that never add up;
// - once the count is greater than san_path_err_threshold, the path is not reinstated for
//   san_path_err_recovery_time seconds; it must stay good that long: failing again during the
//   hold starts it over from its next return;
// - after the hold the path is reinstated and its count starts from zero;
// - a held path is reinstated at once when no other path carries I/O (multipathd's "reinstating
//   path early"): a marginal path is better than none.
// The feature is on only when all three are set (greater than 0), as in multipathd.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

namespace mpio {

// multipath.marginal_path: the three multipath.conf keys, under their own names.
struct MarginalPathPolicy {
  uint32_t san_path_err_threshold = 0;      // failures tolerated within the window
  uint32_t san_path_err_forget_rate = 0;    // polling intervals up per failure forgotten
  uint32_t san_path_err_recovery_time = 0;  // seconds a marginal path must stay good
  bool enabled() const {
    return san_path_err_threshold > 0 && san_path_err_forget_rate > 0 &&
           san_path_err_recovery_time > 0;
  }
  friend bool operator==(const MarginalPathPolicy&, const MarginalPathPolicy&) = default;
};

class MarginalPath {
 public:
  using Clock = std::chrono::steady_clock;

  MarginalPath() = default;  // off: never holds a path out
  MarginalPath(MarginalPathPolicy policy, std::chrono::milliseconds polling_interval);

  // The path started carrying I/O (or standing by): its time up starts, and with it forgetting.
  void up(Clock::time_point now);
  // A path that was up failed. Counts one failure, or, while marginal, starts the hold over.
  void failed(Clock::time_point now);
  // The path is good again (logged in, same identity, ALUA read): true if it stays out of use
  // until hold_until(); false if it may carry I/O now (its count then starts over after a hold).
  bool hold(Clock::time_point now);
  // The hold ran out with the path still good: it is reinstated with a clean count.
  void hold_over();
  // Reinstated before its time (the operator's reinstate-path, or no other path carries I/O).
  void release();

  bool enabled() const { return policy_.enabled(); }
  // Over the threshold: held out now, or failed while held and to be held on its return.
  bool marginal() const { return marginal_; }
  std::optional<Clock::time_point> hold_until() const { return hold_until_; }
  // Until the end of the hold; zero when not held (or the hold is over).
  std::chrono::milliseconds time_left(Clock::time_point now) const;
  // Failures counted towards the threshold, with those the time up until `now` forgot.
  uint32_t failures(Clock::time_point now) const;
  // The time up that forgets one failure: san_path_err_forget_rate polling intervals.
  std::chrono::milliseconds forget_period() const { return forget_period_; }
  std::chrono::seconds recovery_time() const {
    return std::chrono::seconds(policy_.san_path_err_recovery_time);
  }

 private:
  // Failures forgotten after `up_for` more time up, and the progress towards the next one.
  void forget(std::chrono::milliseconds up_for);

  MarginalPathPolicy policy_;
  std::chrono::milliseconds forget_period_{0};
  uint32_t failures_ = 0;
  std::chrono::milliseconds forget_progress_{0};  // time up since the last failure forgotten
  std::optional<Clock::time_point> up_since_;
  bool marginal_ = false;
  std::optional<Clock::time_point> hold_until_;  // set while held out (good, waiting)
};

}  // namespace mpio
