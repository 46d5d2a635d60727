#include "mpio/hedged_read.hpp"

#include <algorithm>

namespace mpio {

void PathLatency::observe(std::chrono::nanoseconds latency) {
  if (!sampled_) {
    sampled_ = true;  // RFC 6298 §2.2: the first measurement is the mean
    smoothed_ = latency;
    return;
  }
  smoothed_ += (latency - smoothed_) / 8;
}

std::optional<std::chrono::nanoseconds> PathLatency::recent() const {
  if (!sampled_) return std::nullopt;
  return smoothed_;
}

std::chrono::nanoseconds hedge_after(const HedgedReadPolicy& policy, const PathLatency& path) {
  const std::chrono::nanoseconds floor = policy.floor();
  const auto recent = path.recent();
  if (!recent) return floor;
  return std::max(floor, *recent * static_cast<int64_t>(policy.latency_factor));
}

HedgeDecision decide_hedge(const HedgedReadPolicy& policy, const HedgeCandidate& candidate) {
  if (!policy.enabled || !candidate.client_read || candidate.pinned || candidate.already_hedged)
    return HedgeDecision::never;
  // No other path now: one may come back before the read is answered; look again.
  if (candidate.outstanding < candidate.threshold || !candidate.other_path_usable)
    return HedgeDecision::wait;
  return HedgeDecision::send;
}

void ReadRace::hedge_sent() {
  hedge_sent_ = true;
  hedge_out_ = true;
}

RaceStep ReadRace::done(Attempt attempt, bool good) {
  using Action = RaceStep::Action;
  const bool first = attempt == Attempt::first;
  (first ? first_out_ : hedge_out_) = false;
  if (over_) return {Action::discard};
  const bool other_out = first ? hedge_out_ : first_out_;
  if (good) {
    over_ = true;
    winner_ = attempt;
    return {.action = Action::win, .detach_first = !first && first_out_};
  }
  if (other_out) {
    if (first) first_failed_ = true;
    return {Action::wait_for_other};
  }
  over_ = true;
  // Both attempts failed. The first's own outcome decides when it failed last; when the hedge
  // failed last, the first's outcome was set aside, and the read is sent again from scratch.
  if (first) return {Action::carry_out};
  return {first_failed_ ? Action::reissue_first : Action::discard};
}

}  // namespace mpio
