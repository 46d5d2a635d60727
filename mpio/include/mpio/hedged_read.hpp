// Hedged reads: a read outstanding on one path much longer than that path usually takes is sent
// again on another usable path, and the first good answer is the reply. A black-holed path
// (packets dropped, no RST) is silent until the NOP-Out ping times out (noop_out_interval +
// noop_out_timeout, 10 s with the defaults); a hedge ends the read's stall after a fraction of a
// second instead, while the path itself is still judged by the liveness rules alone (a slow
// path is not failed for being slow).
//
// Pure policy: the device says how long each path's commands take and how long a read has been
// out; these say when to hedge and which attempt's answer is the reply. No I/O, no clock.
//
// Only reads are hedged: a read changes nothing at the target, so a second copy, or a late first
// one, is harmless. Writes never are: two copies of a write in flight could land in either order
// (the write proof, write_proof.hpp, exists to prevent exactly that).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

namespace mpio {

// multipath.hedged_reads.
struct HedgedReadPolicy {
  bool enabled = true;
  // Never hedge a read younger than this: below it, a hedge would mostly duplicate reads that
  // were merely queued behind others (a QD32 burst on a healthy path).
  uint32_t floor_ms = 100;
  // Hedge a read outstanding this many times the path's recent mean latency (PathLatency).
  uint32_t latency_factor = 3;

  std::chrono::milliseconds floor() const { return std::chrono::milliseconds(floor_ms); }
  friend bool operator==(const HedgedReadPolicy&, const HedgedReadPolicy&) = default;
};

// The recent latency of one path, from the commands it answered: a smoothed mean with TCP's
// gain for its round-trip time (RFC 6298 §2.3, 1/8), so a path slowing down raises it within a
// few commands and one outlier barely moves it. The mean, not a tail estimate: under load a
// path's latency spreads widely, and a threshold that followed the spread (as the RTO's four
// deviations do) would grow to the very stalls hedging is there to cut.
class PathLatency {
 public:
  void observe(std::chrono::nanoseconds latency);
  // nullopt before the first answer.
  std::optional<std::chrono::nanoseconds> recent() const;

 private:
  bool sampled_ = false;
  std::chrono::nanoseconds smoothed_{0};
};

// How long a read may stay outstanding on a path before it is hedged: latency_factor times the
// path's recent mean latency, never less than the floor (the floor alone on a path that has
// answered nothing yet).
std::chrono::nanoseconds hedge_after(const HedgedReadPolicy& policy, const PathLatency& path);

// One read outstanding, as the device sees it at a check.
struct HedgeCandidate {
  // A READ whose data goes to the client's buffer. Probes (pinned to their path), parameter
  // data (GET LBA STATUS) and anything that writes are not hedged.
  bool client_read = false;
  bool pinned = false;
  bool already_hedged = false;  // one hedge per read: a second would only add load
  std::chrono::nanoseconds outstanding{0};
  std::chrono::nanoseconds threshold{0};  // hedge_after() of its path
  bool other_path_usable = false;         // an active, ready path in the group in use
};

enum class HedgeDecision {
  never,  // not hedged whatever happens (off, not a client read, pinned, hedged already)
  wait,   // not yet: look again at the next check
  send,   // send it again on another usable path now
};
HedgeDecision decide_hedge(const HedgedReadPolicy& policy, const HedgeCandidate& candidate);

// The two attempts of a hedged read: the one sent first, which reads into the client's buffer,
// and the hedge, which reads into a buffer of its own (so the loser never writes where the reply
// is sent from).
enum class Attempt { first, hedge };

// What to do with an attempt that completed.
struct RaceStep {
  enum class Action {
    // This attempt's answer is the reply. When the hedge wins, its data is copied into the
    // client's buffer, after the first attempt stops placing data there (detach_first).
    win,
    // This attempt failed and the other is still out: wait for it (the other is the retry).
    wait_for_other,
    // The race is over (this attempt lost, or failed after the other did and the read was
    // taken back): forget this attempt, answer nothing.
    discard,
    // The first attempt failed and no hedge is out: what decide_completion() said applies to
    // it, as if there had been no race.
    carry_out,
    // The hedge failed after the first attempt had failed: send the first attempt again, as a
    // read lost with its path is (decide_completion re-issues those).
    reissue_first,
  };
  Action action = Action::discard;
  // The hedge won while the first attempt is still outstanding on its session: that session
  // must drop the first attempt's Data-In from now on (iscsi::Session::discard_data) before the
  // hedge's data is copied in.
  bool detach_first = false;
  // The losing attempt is left to finish or fail on its path, never aborted: a read costs the
  // target little, and ABORT TASK on a black-holed path goes unanswered and escalates to
  // LOGICAL UNIT RESET (iscsi::TimeoutPolicy), which would end every other initiator's tasks on
  // the LU for a read that no longer matters. The path's liveness (NOP-Out, connection,
  // command_timeout) judges the path, as it would without hedging.
  bool abort_loser = false;
  friend bool operator==(const RaceStep&, const RaceStep&) = default;
};

// One read and its hedge: the order of their completions decides the reply.
class ReadRace {
 public:
  // The first attempt is out; hedge_sent() when the hedge goes out too.
  void hedge_sent();
  // An attempt completed; `good` when it completed with GOOD status and its data (anything
  // else, a transport failure or a CHECK CONDITION, is not good: the other attempt may still
  // bring the data).
  RaceStep done(Attempt attempt, bool good);

  bool hedged() const { return hedge_sent_; }
  bool outstanding(Attempt attempt) const {
    return attempt == Attempt::first ? first_out_ : hedge_out_;
  }
  bool over() const { return over_; }
  std::optional<Attempt> winner() const { return winner_; }

 private:
  bool first_out_ = true;
  bool hedge_out_ = false;
  bool hedge_sent_ = false;
  bool first_failed_ = false;
  bool over_ = false;
  std::optional<Attempt> winner_;
};

}  // namespace mpio
