#include "mpio/marginal_path.hpp"

namespace mpio {

using std::chrono::duration_cast;
using std::chrono::milliseconds;

MarginalPath::MarginalPath(MarginalPathPolicy policy, milliseconds polling_interval)
    : policy_(policy), forget_period_(polling_interval * policy.san_path_err_forget_rate) {}

void MarginalPath::forget(milliseconds up_for) {
  if (failures_ == 0 || forget_period_.count() <= 0) return;
  forget_progress_ += up_for;
  while (failures_ > 0 && forget_progress_ >= forget_period_) {
    --failures_;
    forget_progress_ -= forget_period_;
  }
  // Counting starts afresh from the next first failure (multipathd resets its countdown then).
  if (failures_ == 0) forget_progress_ = milliseconds(0);
}

void MarginalPath::up(Clock::time_point now) {
  if (!enabled()) return;
  if (!up_since_) up_since_ = now;
}

void MarginalPath::failed(Clock::time_point now) {
  if (!enabled()) return;
  if (up_since_) forget(duration_cast<milliseconds>(now - *up_since_));
  up_since_.reset();
  if (marginal_) {
    // Held, and bad again: the recovery time counts from its next return, not from before.
    hold_until_.reset();
    return;
  }
  ++failures_;
  // multipath.conf: "greater than san_path_err_threshold".
  if (failures_ > policy_.san_path_err_threshold) marginal_ = true;
}

bool MarginalPath::hold(Clock::time_point now) {
  if (!marginal_) return false;
  if (!hold_until_) hold_until_ = now + recovery_time();
  if (now < *hold_until_) return true;
  hold_over();
  return false;
}

void MarginalPath::hold_over() {
  marginal_ = false;
  hold_until_.reset();
  failures_ = 0;
  forget_progress_ = milliseconds(0);
}

void MarginalPath::release() {
  hold_over();
}

milliseconds MarginalPath::time_left(Clock::time_point now) const {
  if (!hold_until_ || now >= *hold_until_) return milliseconds(0);
  // Rounded up: "1 ms left" rather than "0" while the hold still runs.
  return std::chrono::ceil<milliseconds>(*hold_until_ - now);
}

uint32_t MarginalPath::failures(Clock::time_point now) const {
  if (!up_since_ || failures_ == 0 || forget_period_.count() <= 0) return failures_;
  const auto progress = forget_progress_ + duration_cast<milliseconds>(now - *up_since_);
  const auto forgotten = static_cast<uint64_t>(progress / forget_period_);
  return forgotten >= failures_ ? 0 : failures_ - static_cast<uint32_t>(forgotten);
}

}  // namespace mpio
