#include "mpio/lun_device.hpp"

#include <algorithm>
#include <boost/asio.hpp>
#include <cstring>
#include <deque>
#include <optional>

#include <iscsi/errors.hpp>
#include <iscsi_io/lu_probe.hpp>
#include <iscsi_io/route_watch.hpp>
#include <scsi/alua.hpp>
#include <scsi/capacity.hpp>
#include <scsi/cdb.hpp>
#include <scsi/error.hpp>
#include <scsi/identity.hpp>
#include <scsi/mode_sense.hpp>
#include <scsi/report_luns.hpp>

#include "mpio/command_outcome.hpp"
#include "mpio/hedged_read.hpp"
#include "mpio/no_path.hpp"
#include "mpio/path_selector.hpp"
#include "mpio/placement.hpp"
#include "mpio/request_plan.hpp"
#include "mpio/target_quirks.hpp"
#include "mpio/write_proof.hpp"

namespace mpio {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;

struct Path;
struct Operation;

// One SCSI command on its way, with what to do when it completes.
struct Command : iscsi::ScsiTask {
  std::function<void(Command&)> then;
  std::vector<std::byte> owned;  // parameter data we built (UNMAP list, WRITE SAME block)
  int retries = 0;               // same-path retries (unit attention, BUSY)
  int transition_retries = 0;    // retries after ALUA transitioning (their own budget)
  Path* path = nullptr;          // where the current attempt runs
  Path* pinned = nullptr;        // probes of one path run there or nowhere
  std::chrono::steady_clock::time_point sent_at;  // of the current attempt
  bool to_lun0 = false;  // REPORT LUNS goes to LUN 0, which every target has (SPC-4)
  // Hedged reads (hedged_read.hpp). A READ whose data goes to the client's buffer, the
  // operation it belongs to, and while two attempts race, the other one (`twin`): the first
  // attempt keeps the race. A hedge reads into `owned`; an attempt that lost is `lost`, left to
  // finish on its path and forgotten when it does.
  bool client_read = false;
  Operation* operation = nullptr;
  Command* twin = nullptr;
  ReadRace race;
  bool is_hedge = false;
  bool lost = false;
  static constexpr size_t not_watched = SIZE_MAX;
  size_t watch_index = not_watched;  // in LunDevice::Impl::reads_out
  // Writes, UNMAP and WRITE SAME change the medium: a copy whose fate is unknown must be proven
  // dead before another copy is sent (else a stale write may land after a newer one).
  bool mutating() const { return direction == iscsi::DataDirection::write; }
  uint64_t data_bytes() const { return expected_length(); }
};

// One I_T nexus: a session on one portal from one source address.
struct Path {
  size_t index = 0;  // into LunDevice::Impl::paths: moves up when an earlier path is removed
  // Never reused, unlike `index`: the failover group a path makes of its own
  // (place_path's path_index), so a path added by a reload never shares one with an older path.
  size_t id = 0;
  bool removing = false;  // a reload removes it: no new commands, drained, then released
  iscsi_io::PathConfig config;
  std::string name;
  std::shared_ptr<iscsi_io::PathSession> session;
  // The pool's number of `session`, which held writes went out on (SessionPool::prove_ended).
  iscsi_io::SessionGeneration generation = 0;
  iscsi_io::SessionGeneration watched = 0;  // the session whose handlers this device added
  uint64_t login_attempt = 0;               // results of earlier session requests are stale
  bool joined = false;                      // counted among the pool's users of this path
  // Its place in the path life cycle (path_lifecycle.hpp); `state` is what status shows of it,
  // kept by LunDevice::Impl::perform() and read wherever the path's use is decided.
  PathLifecycle life{std::chrono::milliseconds(1000)};
  PathState state = PathState::connecting;
  uint32_t configured_priority = 0;  // LunPath::priority
  // Its path group and the group's priority (path_grouping_policy); set when the path joins.
  uint32_t group = 0;
  uint32_t priority = 0;
  std::optional<scsi::AluaState> alua;  // group_by_prio on an ALUA target
  std::optional<uint16_t> port_group;   // its target port group, with `alua`
  // Explicit ALUA: the last SET TARGET PORT GROUPS sent through this path and how it went.
  std::string alua_activation;
  uint64_t commands_sampled = 0, iops = 0;
  uint32_t in_flight = 0;
  uint64_t in_flight_bytes = 0;
  uint64_t commands = 0, bytes = 0, errors = 0;
  PathLatency latency;  // of the commands it answered: when its reads are hedged
  uint64_t hedges_sent = 0, hedges_won = 0;
  std::string last_error;
  std::optional<uint16_t> portal_group_tag;
  // Mutating commands whose attempt on this path may still be alive at the target.
  std::vector<Command*> unproven;
  std::chrono::steady_clock::time_point last_proof_attempt;
  bool rereading_alua = false;  // the periodic ALUA re-read runs one at a time per path
  std::unique_ptr<asio::steady_timer> timer;  // reconnect
};

// A block request split into commands; completes when the last one does. Operations and
// their Command objects are reused (LunDevice::Impl::spare_operations), so a request costs no
// heap allocation once the device has seen as many requests in flight at once.
struct Operation {
  IoRequest* request = nullptr;
  std::vector<std::unique_ptr<Command>> commands;  // the first `used` belong to this request
  size_t used = 0;
  size_t remaining = 0;
  std::error_code error;
  std::string detail;
};

// The same command object for another request: every field as new, no memory kept that a
// request could not need again.
void reset_command(Command& cmd) {
  static_cast<iscsi::ScsiTask&>(cmd) = iscsi::ScsiTask{};
  cmd.owned.clear();
  cmd.retries = 0;
  cmd.transition_retries = 0;
  cmd.path = nullptr;
  cmd.pinned = nullptr;
  cmd.to_lun0 = false;
  cmd.client_read = false;
  cmd.operation = nullptr;
  cmd.twin = nullptr;
  cmd.race = ReadRace{};
  cmd.is_hedge = false;
  cmd.lost = false;
  cmd.watch_index = Command::not_watched;
}

struct LunDevice::Impl : std::enable_shared_from_this<LunDevice::Impl> {
  Impl(asio::io_context& io, LunConfig c) : io(io), config(std::move(c)) {}

  asio::io_context& io;
  LunConfig config;
  std::shared_ptr<iscsi_io::SessionPool> pool;  // config.sessions, or the device's own
  std::vector<std::unique_ptr<Path>> paths;
  // Paths a reload removed: kept alive, since handlers of their session and coroutines still
  // hold them by reference (each finds it no longer counts: login_attempt, session).
  std::vector<std::unique_ptr<Path>> removed_paths;
  size_t next_path_id = 0;
  size_t draining = 0;  // paths being removed
  std::unique_ptr<PathSelector> selector;
  DeviceInfo info;
  LunIdentity identity;
  bool identified = false;  // the first path's probe finished
  iscsi::Lun lun;
  CommandLimits limits;  // how requests become commands (map_lu)
  std::string command_bytes_source;
  size_t in_flight = 0;
  bool closing = false;
  std::function<void(const std::string&, PathState, const std::string&)> path_event;
  std::function<void()> on_idle;
  std::function<void(uint64_t)> capacity_event;
  std::function<void()> luns_changed_event;
  std::function<void(size_t, std::chrono::nanoseconds)> command_observer;
  bool rereading_capacity = false;
  IoRequest final_flush;  // the SYNCHRONIZE CACHE that close() sends

  std::shared_ptr<void> route_watch;  // the pool's RouteWatch, while this device listens

  // Open: who gets the device or the error, and what went wrong on the way. Until it ends the
  // device owns itself: no LunDevice exists yet, and a probe interrupted by its path going away
  // waits on timers and callbacks that hold the device only by raw or weak pointers.
  OpenHandler open_done;
  std::shared_ptr<Impl> keep_while_opening;
  bool probing = false;
  int probe_interruptions = 0;  // probes cut short by their path going away
  std::error_code open_error;
  std::string open_failures;
  std::vector<scsi::Designator> probe_designators;  // VPD 0x83 of the probed path

  // The path group whose active paths carry I/O (path_grouping_policy), and the timer of a
  // delayed failback to a better group.
  std::optional<uint32_t> group_in_use;
  std::unique_ptr<asio::steady_timer> failback_timer;
  std::vector<GroupMember> members;  // scratch space of reconsider_groups
  // Explicit ALUA: one SET TARGET PORT GROUPS at a time, at most one per polling interval.
  bool activating = false;
  std::chrono::steady_clock::time_point last_activation;
  std::vector<ActivationCandidate> activation_candidates;  // maybe_activate's scratch space
  // The periodic jobs, each on its own timer (start_periodic_jobs).
  std::unique_ptr<asio::steady_timer> iops_timer;
  std::unique_ptr<asio::steady_timer> alua_timer;
  std::unique_ptr<asio::steady_timer> proof_timer;
  std::unique_ptr<asio::steady_timer> capacity_timer;

  // Commands waiting for a usable path (no_path_retry queue / N intervals).
  std::deque<Command*> waiting;
  std::unique_ptr<asio::steady_timer> no_path_timer;
  bool failing_without_path = false;  // no_path_retry N ran out: fail until a path returns

  // ---------------------------------------------------------------- path choice

  std::vector<PathLoad> usable;  // select_path's scratch space, kept to avoid reallocating

  // `avoid`: a hedge goes anywhere but where its read is stuck.
  Path* select_path(const Command& cmd, const Path* avoid = nullptr) {
    usable.clear();
    if (group_in_use)
      for (auto& p : paths)
        if (usable_path(*p) && p.get() != avoid)
          usable.push_back({p->index, p->in_flight, p->in_flight_bytes, 1});
    if (usable.empty()) return nullptr;
    return paths[selector->select(usable, cmd.data_bytes())].get();
  }

  bool usable_path(const Path& p) const {
    return p.state == PathState::active && group_in_use && p.group == *group_in_use &&
           p.session->ready();
  }

  bool any_active() const {
    return std::any_of(paths.begin(), paths.end(),
                       [](const auto& p) { return p->state == PathState::active; });
  }

  void emit(Path& p, const std::string& reason) {
    if (path_event) path_event(p.name, p.state, reason);
  }

  void open_step();
  void first_login(Path& p);
  std::optional<size_t> add_path(LunPath path);
  Path& new_path(const LunPath& path);
  std::error_code remove_path(size_t index, std::string& detail,
                              std::function<void(size_t)> drained,
                              std::function<void(std::error_code)> released);
  void drain_path(Path& p, std::function<void(size_t)> drained,
                  std::function<void(std::error_code)> released);
  std::error_code reconfigure(const LunConfig& settings, std::string& detail);
  std::error_code fail_path(size_t index, std::string& detail);
  std::error_code reinstate_path(size_t index, std::string& detail);
  static awaitable<void> probe_and_open(std::shared_ptr<Impl> self, Path& p);
  void fail_open(std::error_code ec, const std::string& detail);

  // ---------------------------------------------------------------- path groups

  // Which group carries I/O, after any change of a path's state or priority.
  void reconsider_groups(const std::string& why) {
    members.clear();
    for (auto& p : paths) members.push_back({p->group, p->priority, p->state == PathState::active});
    const auto decision = decide_group(members, group_in_use, config.failback);
    const auto best = best_group(members);
    switch (decision.action) {
      case GroupDecision::Action::keep:
        if (best == group_in_use) failback_timer.reset();
        break;
      case GroupDecision::Action::switch_now:
        use_group(*best, why);
        break;
      case GroupDecision::Action::switch_later:
        if (failback_timer) break;
        failback_timer =
            std::make_unique<asio::steady_timer>(io, std::chrono::seconds(decision.delay_seconds));
        failback_timer->async_wait(
            [this, seconds = decision.delay_seconds](boost::system::error_code ec) {
              if (ec || closing) return;
              members.clear();
              for (auto& p : paths)
                members.push_back({p->group, p->priority, p->state == PathState::active});
              if (auto b = best_group(members); b && b != group_in_use)
                use_group(*b, "failback after " + std::to_string(seconds) + " s");
            });
        break;
    }
    if (!best) maybe_activate();
  }

  // ---------------------------------------------------------------- explicit ALUA

  // No path carries I/O: with explicit ALUA a standby group is made active/optimized through
  // one of its ghosts (choose_activation). Tried again every polling interval while that lasts
  // (reread_alua_states), since the target may refuse or the ghost may go away meanwhile.
  void maybe_activate() {
    if (activating || closing || !identified ||
        !needs_port_groups(config.grouping, identity.inquiry.tpgs))
      return;
    const auto now = std::chrono::steady_clock::now();
    if (last_activation != std::chrono::steady_clock::time_point{} &&
        now - last_activation < config.polling_interval)
      return;
    const auto chosen = choose_activation(activation_paths());
    if (!chosen) return;
    activating = true;
    last_activation = now;
    asio::co_spawn(io, activate(shared_from_this(), *paths[chosen->via], chosen->port_group),
                   asio::detached);
  }

  // SPC-4 §6.39 SET TARGET PORT GROUPS through `p` (a standby port takes it, §5.16.2.4.4),
  // then every logged-in path's state read again: the ghosts of that group become active. Only
  // if the target's INQUIRY says explicit ALUA now (TPGS 1xb): an array's access type can
  // change while attached, and an implicit-only target moves its groups itself.
  static awaitable<void> activate(std::shared_ptr<Impl> self, Path& p, uint16_t port_group) {
    std::string detail;
    std::vector<std::byte> data;
    if (!co_await self->read_data(scsi::inquiry(false, 0, 255), 255, data, detail, &p))
      if (const auto inquiry = scsi::parse_standard_inquiry(data); inquiry && inquiry->tpgs != 0)
        self->identity.inquiry.tpgs = inquiry->tpgs;
    if (self->closing || !scsi::explicit_alua(self->identity.inquiry.tpgs)) {
      self->activating = false;
      co_return;
    }
    // The target's word now, not our last placement: a group just made active by the target
    // itself must not be undone (the next try is a polling interval away).
    const auto report_ec =
        co_await self->read_data(scsi::report_target_port_groups(4096), 4096, data, detail, &p);
    const auto groups = report_ec ? std::nullopt : scsi::parse_report_target_port_groups(data);
    if (self->closing || !groups || reachable_group_active(self->activation_paths(), *groups)) {
      self->activating = false;
      if (!self->closing) self->reread_logged_in();
      co_return;
    }
    const scsi::TargetPortGroupSetting setting{.state = scsi::AluaState::active_optimized,
                                               .group_id = port_group};
    const std::string what = "SET TARGET PORT GROUPS: target port group " +
                             std::to_string(port_group) + " to active/optimized";
    p.alua_activation = what + ", sent (no path carries I/O)";
    self->emit(p, p.alua_activation);
    Command cmd;
    cmd.pinned = &p;
    cmd.owned = scsi::encode_set_target_port_groups({&setting, 1});
    cmd.cdb = scsi::set_target_port_groups(static_cast<uint32_t>(cmd.owned.size())).bytes;
    cmd.direction = iscsi::DataDirection::write;
    cmd.write_buffer = cmd.owned;
    const auto ec = co_await self->run(cmd, detail);
    self->activating = false;
    if (self->closing) co_return;
    p.alua_activation = what + (ec ? ", refused: " + detail : ", done");
    self->emit(p, p.alua_activation);
    if (!ec) self->reread_logged_in();
  }

  // What choose_activation() and reachable_group_active() know of each path.
  std::span<const ActivationCandidate> activation_paths() {
    activation_candidates.clear();
    for (auto& p : paths)
      activation_candidates.push_back({.state = p->state,
                                       .ready = p->session && p->session->ready(),
                                       .alua = p->alua,
                                       .port_group = p->port_group});
    return activation_candidates;
  }

  // A command's answer named its port's ALUA state (decide_completion, under group_by_prio):
  // a standby or unavailable port stops carrying I/O at once, and the target's own report
  // (REPORT TARGET PORT GROUPS) places it from there.
  void alua_answered(Path& p, scsi::AluaState state) {
    if (state != scsi::AluaState::transitioning && p.state == PathState::active) {
      const Placement ghost{.group = alua_priority(state),
                            .priority = alua_priority(state),
                            .alua = state,
                            .port_group = p.port_group,
                            .state = PathState::ghost};
      place(p, ghost, Event::Kind::alua_reread);
    }
    if (!p.rereading_alua && p.session && p.session->ready())
      asio::co_spawn(io, recheck_alua(shared_from_this(), p), asio::detached);
  }

  void use_group(uint32_t group, const std::string& why) {
    failback_timer.reset();
    const bool first_choice = !group_in_use;
    group_in_use = group;
    // Requests held while the group in use had no ready path go to the new one.
    if (!waiting.empty())
      asio::post(io, [this] {
        if (!closing) path_available();
      });
    if (first_choice || config.grouping == Grouping::multibus) return;
    for (auto& p : paths)
      if (p->group == group && p->state == PathState::active) {
        emit(*p,
             "its path group (prio " + std::to_string(p->priority) + ") carries I/O now: " + why);
        break;
      }
  }

  // A path's placement changes in one step, once the target's answer is in: while a REPORT
  // TARGET PORT GROUPS is outstanding the path keeps carrying I/O in the group it had, so a
  // command selected meanwhile finds it (a half-classified path in no group in use would leave
  // that command waiting for a path that never "comes back"). `kind`: probe_done, alua_read
  // or alua_reread; the life cycle says whether the path takes the placement.
  void place(Path& p, const Placement& placement, Event::Kind kind) {
    auto event = placement_event(kind, placement, p.priority);
    event.at = std::chrono::steady_clock::now();
    auto actions = p.life.on(event);
    if (actions.place) {
      p.group = placement.group;
      p.priority = placement.priority;
      p.alua = placement.alua;
      p.port_group = placement.port_group;
    }
    perform(p, std::move(actions));
  }

  // group_by_prio asks the target through the path itself (REPORT TARGET PORT GROUPS, SPC-4
  // §6.36): ALUA states belong to target port groups, and a path reaches the LU through one
  // target port (place_path). An error means the path itself failed; `placement` is then
  // meaningless.
  awaitable<std::error_code> classify(Path& p, const std::vector<scsi::Designator>& designators,
                                      Placement& placement) {
    std::optional<std::vector<scsi::TargetPortGroup>> groups;
    if (needs_port_groups(config.grouping, identity.inquiry.tpgs)) {
      std::vector<std::byte> data;
      std::string detail;
      auto ec = co_await read_data(scsi::report_target_port_groups(4096), 4096, data, detail, &p);
      if (ec && ec.category() != scsi::category()) co_return ec;  // the path itself failed
      if (!ec) groups = scsi::parse_report_target_port_groups(data);
    }
    placement = place_path({.grouping = config.grouping,
                            .path_index = p.id,
                            .configured_priority = p.configured_priority,
                            .tpgs = identity.inquiry.tpgs,
                            .designators = designators},
                           groups);
    co_return std::error_code{};
  }

  // Every polling interval under group_by_prio: the target may have moved its port groups
  // (SPC-4 §5.16.2.6 implicit transitions); re-read each logged-in path's state. `regrouping`:
  // a reload changed path_grouping_policy, and the path's group (which may change where its
  // state and priority do not, multibus to failover) decides again which group carries I/O.
  static awaitable<void> recheck_alua(std::shared_ptr<Impl> self, Path& p,
                                      bool regrouping = false) {
    p.rereading_alua = true;
    std::string detail;
    std::vector<scsi::Designator> designators;
    if (auto vpd = co_await self->vpd_page(scsi::vpd::device_identification, detail, &p);
        !vpd.empty())
      if (auto d = scsi::parse_device_identification(vpd)) designators = std::move(*d);
    Placement placement;
    auto ec = co_await self->classify(p, designators, placement);
    p.rereading_alua = false;
    if (self->closing || ec) co_return;
    self->place(p, placement, Event::Kind::alua_reread);
    if (regrouping)
      self->reconsider_groups("path_grouping_policy " +
                              std::string(grouping_name(self->config.grouping)) + " reloaded");
  }

  // Runs `job` after `first`, then every `period`, until the device closes. A failed or slow
  // job delays no other: each has its own timer.
  void every(std::unique_ptr<asio::steady_timer>& timer, std::chrono::milliseconds first,
             std::chrono::milliseconds period, void (Impl::*job)()) {
    if (!timer) timer = std::make_unique<asio::steady_timer>(io);
    timer->expires_after(first);
    timer->async_wait([this, &timer, period, job](boost::system::error_code ec) {
      if (ec || closing) return;
      (this->*job)();
      every(timer, period, period, job);
    });
  }

  // Once the device is identified: IOPS once a second; ALUA states and the capacity a second
  // after open, then every polling interval but not more often than once a second (what one
  // sampler tick driving them all used to give). Held writes are looked at once a second, each
  // path's proof tried again a polling interval after its last attempt.
  void start_periodic_jobs() {
    using std::chrono::milliseconds;
    const milliseconds second(1000);
    const auto period = std::max(config.polling_interval, second);
    every(iops_timer, second, second, &Impl::sample_iops);
    if (needs_port_groups(config.grouping, identity.inquiry.tpgs))
      every(alua_timer, second, period, &Impl::reread_alua_states);
    every(proof_timer, second, second, &Impl::retry_proofs);
    every(capacity_timer, second, period, &Impl::poll_capacity);
  }

  void stop_periodic_jobs() {
    iops_timer.reset();
    alua_timer.reset();
    proof_timer.reset();
    capacity_timer.reset();
  }

  void sample_iops() {
    for (auto& p : paths) {
      p->iops = p->commands - p->commands_sampled;
      p->commands_sampled = p->commands;
    }
  }

  void reread_alua_states() {
    reread_logged_in();
    if (!any_active()) maybe_activate();
  }

  void reread_logged_in() {
    for (auto& p : paths)
      if ((p->state == PathState::active || p->state == PathState::ghost ||
           p->state == PathState::marginal) &&
          !p->rereading_alua && p->session && p->session->ready())
        asio::co_spawn(io, recheck_alua(shared_from_this(), *p), asio::detached);
  }

  // Writes still held for proof after a failed attempt (the LU reset refused, the proof login
  // refused, no healthy path then): the path's own login may never succeed again (a portal
  // group taken offline), so the proof is tried again every polling interval.
  void retry_proofs() {
    const auto now = std::chrono::steady_clock::now();
    for (auto& p : paths)
      if (!p->unproven.empty() && p->state == PathState::failed &&
          now - p->last_proof_attempt >= config.polling_interval)
        prove_dead(*p);
  }

  // Not every target tells of a resize with 2A/09 (tgtd never resizes; LIO's iblock and
  // block-device fileio backstores report the new size in READ CAPACITY without a unit
  // attention): one READ CAPACITY(16) per polling interval notices it anyway.
  void poll_capacity() {
    if (any_active()) asio::co_spawn(io, reread_capacity(shared_from_this()), asio::detached);
  }

  // ---------------------------------------------------------------- one command

  void execute(Command& cmd) {
    Path* p = nullptr;
    if (cmd.pinned != nullptr) {
      if (cmd.pinned->session && cmd.pinned->session->ready()) p = cmd.pinned;
      if (p == nullptr) {
        cmd.transport_error = iscsi::errc::session_failed;
        cmd.transport_detail = "path " + cmd.pinned->name + " is not logged in";
        cmd.then(cmd);
        return;
      }
    } else {
      p = select_path(cmd);
      if (p == nullptr) {
        wait_for_path(cmd);
        return;
      }
    }
    send_on(cmd, *p);
  }

  void send_on(Command& cmd, Path& p) {
    cmd.lun = cmd.to_lun0 ? iscsi::Lun{0} : lun;
    cmd.path = &p;
    ++p.in_flight;
    p.in_flight_bytes += cmd.data_bytes();
    cmd.on_complete = [this](iscsi::ScsiTask& t) { command_done(static_cast<Command&>(t)); };
    cmd.sent_at = std::chrono::steady_clock::now();
    // Watched before it goes: a path that is down completes it within submit().
    if (cmd.client_read && !cmd.is_hedge && !cmd.race.hedged() && config.hedged_reads.enabled)
      watch_read(cmd);
    p.session->submit(cmd);
  }

  // Carries out decide_completion(): the path's counters, its failure, then the action.
  void command_done(Command& c) {
    Path& p = *c.path;
    --p.in_flight;
    p.in_flight_bytes -= c.data_bytes();
    unwatch_read(c);
    const auto d = decide_completion(
        c, {.pinned = c.pinned != nullptr,
            .mutating = c.mutating(),
            .retries = c.retries,
            .max_retries = config.max_retries,
            .transition_retries = c.transition_retries,
            .alua_placed = needs_port_groups(config.grouping, identity.inquiry.tpgs)});
    if (d.clear_transport_error) {
      c.transport_error = {};
      c.transport_detail.clear();
    }
    if (d.count_path_error) ++p.errors;
    if (d.answered) {
      ++p.commands;
      p.bytes += c.data_bytes();
      const auto latency = std::chrono::steady_clock::now() - c.sent_at;
      p.latency.observe(latency);
      if (command_observer) command_observer(p.index, latency);
    }
    if (d.fail_path) path_failed(p, d.reason, d.answered);
    if (d.reread_capacity) asio::co_spawn(io, reread_capacity(shared_from_this()), asio::detached);
    if (d.luns_changed && luns_changed_event) luns_changed_event();
    if (d.alua_state && !closing) alua_answered(p, *d.alua_state);
    if ((c.twin != nullptr || c.lost) && !race_done(c, d)) return;
    carry_out(c, d);
  }

  void carry_out(Command& c, const CommandDecision& d) {
    Path& p = *c.path;
    switch (d.action) {
      case CommandDecision::Action::complete:
        c.then(c);
        break;
      case CommandDecision::Action::reissue:
        asio::post(io, [this, &c] { execute(c); });
        break;
      case CommandDecision::Action::hold:
        p.unproven.push_back(&c);
        prove_dead(p);
        break;
      case CommandDecision::Action::retry:
        c.retries = d.retries;
        c.transition_retries = d.transition_retries;
        retry_after(c, d.delay);
        break;
    }
  }

  void retry_after(Command& c, std::chrono::milliseconds delay) {
    if (delay.count() == 0) {
      asio::post(io, [this, &c] { execute(c); });
      return;
    }
    auto timer = std::make_shared<asio::steady_timer>(io, delay);
    timer->async_wait([this, &c, timer](boost::system::error_code ec) {
      if (!ec) execute(c);
    });
  }

  // ---------------------------------------------------------------- hedged reads

  // Client reads out on a path and not hedged yet; looked at every hedge_check_period() while
  // any is out (one timer for the device, not one per read).
  std::vector<Command*> reads_out;
  std::vector<Command*> hedges_due;  // check_hedges' scratch space
  std::unique_ptr<asio::steady_timer> hedge_timer;
  bool hedge_check_armed = false;
  // Attempts outside any operation: hedges out, and attempts that lost, left to finish on their
  // path. Reused from spare_attempts.
  std::vector<std::unique_ptr<Command>> loose_attempts;
  std::vector<std::unique_ptr<Command>> spare_attempts;

  void watch_read(Command& c) {
    c.watch_index = reads_out.size();
    reads_out.push_back(&c);
    arm_hedge_check();
  }

  void unwatch_read(Command& c) {
    if (c.watch_index == Command::not_watched) return;
    Command* last = reads_out.back();
    reads_out[c.watch_index] = last;
    last->watch_index = c.watch_index;
    reads_out.pop_back();
    c.watch_index = Command::not_watched;
  }

  // A quarter of the floor: a read is hedged at most that late after its threshold.
  std::chrono::milliseconds hedge_check_period() const {
    return std::max(std::chrono::milliseconds(5), config.hedged_reads.floor() / 4);
  }

  void arm_hedge_check() {
    if (hedge_check_armed || reads_out.empty() || closing) return;
    if (!hedge_timer) hedge_timer = std::make_unique<asio::steady_timer>(io);
    hedge_check_armed = true;
    hedge_timer->expires_after(hedge_check_period());
    hedge_timer->async_wait([weak = weak_from_this()](boost::system::error_code ec) {
      auto self = weak.lock();
      if (!self) return;
      self->hedge_check_armed = false;
      if (ec || self->closing) return;
      self->check_hedges();
      self->arm_hedge_check();
    });
  }

  bool other_path_usable(const Path* stuck) const {
    return std::any_of(paths.begin(), paths.end(), [&](const auto& p) {
      return p.get() != stuck && !p->removing && usable_path(*p);
    });
  }

  void check_hedges() {
    const auto now = std::chrono::steady_clock::now();
    hedges_due.clear();
    for (Command* c : reads_out) {
      HedgeCandidate candidate{.client_read = c->client_read,
                               .pinned = c->pinned != nullptr,
                               .already_hedged = c->race.hedged(),
                               .outstanding = now - c->sent_at,
                               .threshold = hedge_after(config.hedged_reads, c->path->latency)};
      // Only a read past its threshold is worth the look at the other paths.
      if (candidate.outstanding >= candidate.threshold)
        candidate.other_path_usable = other_path_usable(c->path);
      if (decide_hedge(config.hedged_reads, candidate) == HedgeDecision::send)
        hedges_due.push_back(c);
    }
    // Sent after the scan: a hedge leaves reads_out, and a path that turns out to be down
    // completes it at once.
    for (Command* c : hedges_due) send_hedge(*c);
  }

  Command& take_spare_attempt() {
    if (spare_attempts.empty()) spare_attempts.push_back(std::make_unique<Command>());
    loose_attempts.push_back(std::move(spare_attempts.back()));
    spare_attempts.pop_back();
    Command& c = *loose_attempts.back();
    reset_command(c);
    return c;
  }

  // The same READ on another path, into a buffer of its own.
  void send_hedge(Command& first) {
    // Completed meanwhile, by an earlier hedge's synchronous failure on its path.
    if (first.watch_index == Command::not_watched) return;
    Path* via = select_path(first, first.path);
    if (via == nullptr) return;
    unwatch_read(first);
    Command& hedge = take_spare_attempt();
    hedge.cdb = first.cdb;
    hedge.direction = iscsi::DataDirection::read;
    hedge.owned.resize(first.read_buffer.size());
    hedge.read_buffer = hedge.owned;
    hedge.client_read = true;
    hedge.is_hedge = true;
    hedge.operation = first.operation;
    hedge.twin = &first;
    first.twin = &hedge;
    first.race = ReadRace{};
    first.race.hedge_sent();
    ++via->hedges_sent;
    send_on(hedge, *via);
  }

  // An attempt that lost (or failed while the other was out) leaves the device's hands. Posted
  // by command_done, so the completion handler it clears is not the one running.
  void forget_attempt(Command& c) {
    c.on_complete = nullptr;
    c.then = nullptr;
    c.owned.clear();  // a hedge's data buffer: kept capacity would pin up to a command's size
    c.owned.shrink_to_fit();
    for (size_t i = 0; i < loose_attempts.size(); ++i) {
      if (loose_attempts[i].get() != &c) continue;
      spare_attempts.push_back(std::move(loose_attempts[i]));
      loose_attempts[i] = std::move(loose_attempts.back());
      loose_attempts.pop_back();
      return;
    }
  }

  void forget_later(Command& c) {
    asio::post(io, [self = shared_from_this(), &c] { self->forget_attempt(c); });
  }

  // An attempt that lost may finish after every request is done and the device has let go of
  // its sessions: its completion keeps the device alive until then.
  void leave_to_finish(Command& c) {
    c.lost = true;
    c.twin = nullptr;
    c.on_complete = [self = shared_from_this()](iscsi::ScsiTask& t) {
      self->command_done(static_cast<Command&>(t));
    };
  }

  // Carries out the ReadRace's step for an attempt of a hedged read. True when the command's
  // own decision (decide_completion) is then carried out on `c`: the winner's completion, or a
  // read that both attempts failed.
  bool race_done(Command& c, const CommandDecision& d) {
    if (c.lost) {
      forget_later(c);
      return false;
    }
    Command& first = c.is_hedge ? *c.twin : c;
    Command& hedge = c.is_hedge ? c : *c.twin;
    std::string ignored;
    const bool good = d.action == CommandDecision::Action::complete && !outcome_of(c, ignored);
    const auto step = first.race.done(c.is_hedge ? Attempt::hedge : Attempt::first, good);
    switch (step.action) {
      case RaceStep::Action::win:
        if (c.is_hedge) {
          hedge_won(first, hedge, step.detach_first);
        } else {
          first.twin = nullptr;
          leave_to_finish(hedge);  // into its own buffer: the client's is not touched
        }
        return true;
      case RaceStep::Action::wait_for_other:
      case RaceStep::Action::discard:
        // A hedge that failed while the first attempt is out leaves it an ordinary read again
        // (hedged once is enough); a first attempt that failed waits in its operation.
        if (c.is_hedge) {
          first.twin = nullptr;
          forget_later(hedge);
        }
        return false;
      case RaceStep::Action::carry_out:
        first.twin = nullptr;
        return true;
      case RaceStep::Action::reissue_first:
        first.twin = nullptr;
        forget_later(hedge);
        asio::post(io, [this, &first] { execute(first); });
        return false;
    }
    return false;
  }

  // The hedge answered first. It takes the first attempt's place in the operation; the first
  // attempt stops writing into the client's buffer (before the hedge's data goes there: a
  // segment of its data may be arriving right now) and is left to finish on its path.
  void hedge_won(Command& first, Command& hedge, bool first_outstanding) {
    Operation& op = *first.operation;
    const auto client = first.read_buffer;
    auto in_op = std::find_if(op.commands.begin(), op.commands.end(),
                              [&](const auto& owned) { return owned.get() == &first; });
    auto loose = std::find_if(loose_attempts.begin(), loose_attempts.end(),
                              [&](const auto& owned) { return owned.get() == &hedge; });
    std::swap(*in_op, *loose);
    hedge.then = first.then;
    hedge.is_hedge = false;
    hedge.twin = nullptr;
    ++hedge.path->hedges_won;
    if (first_outstanding) {
      leave_to_finish(first);
      // Its session may withdraw it at once (still waiting for the CmdSN window): command_done
      // runs now and forgets it later.
      if (first.path->session) first.path->session->discard_data(first);
    } else {
      first.twin = nullptr;
      forget_later(first);
    }
    std::memcpy(client.data(), hedge.owned.data(), client.size());
    hedge.read_buffer = client;
    // It is an operation's command from now on: pooled commands keep no data buffer.
    hedge.owned.clear();
    hedge.owned.shrink_to_fit();
  }

  // SPC-4 Annex D 2A/09 CAPACITY DATA HAS CHANGED, as a unit attention or an asynchronous event
  // (RFC 7143 §11.9.1): the LU was resized. New NBD clients see the new size; the NBD protocol
  // has no way to tell a connected one.
  static awaitable<void> reread_capacity(std::shared_ptr<Impl> self) {
    if (self->rereading_capacity || !self->identified) co_return;
    self->rereading_capacity = true;
    std::vector<std::byte> data;
    std::string detail;
    auto ec = co_await self->read_data(scsi::read_capacity16(32), 32, data, detail, nullptr);
    self->rereading_capacity = false;
    if (ec || self->closing) co_return;
    auto rc = scsi::parse_read_capacity16(data);
    if (!rc || rc->block_length != self->info.logical_block_size) co_return;
    const uint64_t blocks = rc->last_lba + 1;
    if (blocks == self->identity.blocks) co_return;
    self->identity.blocks = blocks;
    self->info.size_bytes = blocks * rc->block_length;
    if (self->capacity_event) self->capacity_event(self->info.size_bytes);
  }

  // ---------------------------------------------------------------- no usable path

  void wait_for_path(Command& cmd) {
    const auto d = decide_no_path(config.no_path_retry, config.polling_interval, closing,
                                  failing_without_path);
    if (d.action == NoPathDecision::Action::fail) {
      cmd.transport_error = std::make_error_code(std::errc::io_error);
      cmd.transport_detail = "no usable path to the LUN (no_path_retry)";
      cmd.then(cmd);
      return;
    }
    waiting.push_back(&cmd);
    if (d.deadline && !no_path_timer) {
      no_path_timer = std::make_unique<asio::steady_timer>(io, *d.deadline);
      no_path_timer->async_wait([this](boost::system::error_code ec) {
        if (ec || any_active()) return;
        failing_without_path = true;
        fail_waiting("no usable path for " + std::to_string(config.no_path_retry.intervals) +
                     " polling intervals (no_path_retry)");
      });
    }
  }

  void fail_waiting(const std::string& why) {
    std::deque<Command*> failed;
    failed.swap(waiting);
    for (Command* c : failed) {
      c->transport_error = std::make_error_code(std::errc::io_error);
      c->transport_detail = why;
      c->then(*c);
    }
  }

  void path_available() {
    no_path_timer.reset();
    failing_without_path = false;
    std::deque<Command*> ready;
    ready.swap(waiting);
    for (Command* c : ready) execute(*c);
  }

  // ---------------------------------------------------------------- path life cycle

  // Feeds one event to the path's life cycle and performs what it answers.
  void feed(Path& p, Event event) {
    event.at = std::chrono::steady_clock::now();
    perform(p, p.life.on(event));
  }

  // In the order Actions documents: the path's new state is seen by everything that follows.
  void perform(Path& p, Actions a) {
    p.state = p.life.status();
    if (a.last_error) p.last_error = std::move(*a.last_error);
    if (a.emit) emit(p, *a.emit);
    if (a.reconsider_groups) {
      const auto& what = *a.reconsider_groups;
      reconsider_groups(what == "first path"          ? what
                        : what == "ALUA state change" ? what + " on " + p.name
                                                      : "path " + p.name + " " + what);
    }
    if (a.close_session) end_session(p);
    if (a.release_session) release_session(p);
    if (a.cancel_reconnect && p.timer) p.timer->cancel();
    if (a.reconnect_after) schedule_reconnect(p, *a.reconnect_after);
    if (a.login) reconnect(p);
    if (a.reissue_held_writes) release_unproven(p, *a.reissue_held_writes);
    if (a.check_identity) asio::co_spawn(io, join(shared_from_this(), p), asio::detached);
    // read_alua: join() goes on with it itself.
    if (a.prove_held_writes) prove_dead(p);
    if (a.reissue_waiting) path_available();
    if (a.continue_open) open_step();
    if (a.hold_for) arm_path_timer(p, *a.hold_for, Event::Kind::hold_over);
    if (a.hold_for || a.reconsider_groups) reinstate_marginal_if_alone();
  }

  // multipath.marginal_path: a path held out as marginal is reinstated at once when no other
  // path carries I/O (multipathd does the same: a shaky path is better than none).
  void reinstate_marginal_if_alone() {
    if (closing || any_active()) return;
    for (auto& p : paths)
      if (p->state == PathState::marginal) {
        feed(*p, Event{.kind = Event::Kind::only_path});
        return;
      }
  }

  // A local link, address or route changed: a path that lost its route fails now (a pulled
  // cable leaves an established TCP connection silent, not broken), and a failed path whose
  // route is back tries to log in at once instead of at its next polling interval.
  void routes_changed() {
    if (closing) return;
    for (auto& p : paths) {
      std::string why;
      const bool reachable =
          iscsi_io::route_exists({p->config.portal_host, p->config.portal_port,
                                  p->config.source_address, p->config.interface_name},
                                 why);
      if (reachable)
        feed(*p, Event{.kind = Event::Kind::route_back});
      else
        feed(*p,
             Event{.kind = Event::Kind::route_lost, .detail = "no route to the portal: " + why});
    }
  }

  // NOP-Out timeout, a dropped connection, a command lost with the path or a path error.
  // `answered`: the target's answer about this LU, the connection sound (Event::answered).
  void path_failed(Path& p, const std::string& reason, bool answered = false) {
    feed(p, Event{.kind = Event::Kind::connection_lost, .detail = reason, .answered = answered});
  }

  void schedule_reconnect(Path& p, std::chrono::milliseconds delay) {
    arm_path_timer(p, delay, Event::Kind::reconnect_due);
  }

  // The path's one timer: its reconnect while failed, the end of its hold while held out as
  // marginal (logged in, so never both). Arming it again cancels what it was armed for.
  void arm_path_timer(Path& p, std::chrono::milliseconds delay, Event::Kind due) {
    if (closing) return;
    if (!p.timer) p.timer = std::make_unique<asio::steady_timer>(io);
    p.timer->expires_after(delay);
    p.timer->async_wait([this, &p, due](boost::system::error_code ec) {
      if (!ec && !closing) feed(p, Event{.kind = due});
    });
  }

  // Logs in again with the path's own ISID and TSIH 0: for the target that is session
  // reinstatement (RFC 7143 §6.3.5), which ends the old session and every task it still had.
  // With a shared pool the session may already be up (another LU's device logged in after
  // the old one failed, which reinstated it just the same) or logging in.
  void reconnect(Path& p) {
    auto self = shared_from_this();
    request_session(p, [this, self, &p](std::error_code ec, const std::string& detail) {
      if (ec) {
        auto actions = p.life.on(Event{.kind = Event::Kind::login_failed, .detail = detail});
        if (actions.continue_open && !identified) {
          // The second chance of an interrupted probe failed: the open decides without it.
          open_failures += (open_failures.empty() ? "" : "; ") + std::string("login to ") + p.name +
                           " failed: " + detail;
          open_error = ec;
        }
        perform(p, std::move(actions));
        return;
      }
      feed(p, Event{.kind = Event::Kind::login_done, .identified = identified});
    });
  }

  // Asks the pool for the path's session; `then` runs unless the device closed or a newer
  // request replaced this one. On success the path has its session, watched.
  void request_session(Path& p, std::function<void(std::error_code, const std::string&)> then) {
    const uint64_t attempt = ++p.login_attempt;
    if (!p.joined) {
      pool->join(p.config);
      p.joined = true;
    }
    p.session =
        pool->acquire(p.config, [weak = weak_from_this(), &p, attempt, then = std::move(then)](
                                    std::error_code ec, const std::string& detail,
                                    std::shared_ptr<iscsi_io::PathSession> session,
                                    iscsi_io::SessionGeneration generation) {
          auto self = weak.lock();
          if (!self || self->closing || p.login_attempt != attempt) return;
          if (!ec) {
            p.session = session;
            p.generation = generation;
            p.portal_group_tag = session->target_portal_group_tag();
            self->watch(p, session);
          }
          then(ec, detail);
        });
  }

  // The life cycle is done with the path's session. Abortive close (SO_LINGER 0): the kernel
  // must not deliver this connection's queued data once the network heals.
  void end_session(Path& p) {
    if (p.session) {
      p.session->close();
      return;
    }
    // The login waits behind another one of the pool's: its outcome no longer counts, and the
    // open, which would have heard it, looks again.
    ++p.login_attempt;
    if (open_done) asio::post(io, [self = shared_from_this()] { self->open_step(); });
  }

  // The life cycle is done with the session for this LU only (Actions::release_session): the
  // other LUs sharing it go on; the pool's last user logs it out.
  void release_session(Path& p) {
    p.session.reset();
    ++p.login_attempt;
    leave_pool(p, std::chrono::seconds(2), [](std::error_code) {});
  }

  void leave_pool(Path& p, std::chrono::milliseconds timeout,
                  std::function<void(std::error_code)> done) {
    if (!p.joined) {
      done({});
      return;
    }
    p.joined = false;
    pool->release(p.config, timeout, std::move(done));
  }

  // The session keeps these handlers and may outlive the device (a failed open, a shutdown
  // that ends before its loops do): they hold the device weakly, and the session by a raw
  // pointer to compare with, since a shared_ptr would make the session own itself.
  void watch(Path& p, const std::shared_ptr<iscsi_io::PathSession>& session) {
    // A path that let go of the session and joined it again is watched already.
    if (p.watched == p.generation) return;
    p.watched = p.generation;
    session->on_scsi_event([weak = weak_from_this()](const iscsi_io::ScsiAsyncEvent& event) {
      auto self = weak.lock();
      if (!self || self->closing) return;
      // The LUN inventory is the target's, whichever LU the event names.
      if (event.reported_luns_changed() && self->luns_changed_event) self->luns_changed_event();
      if (event.lun == self->lun && event.capacity_changed())
        asio::co_spawn(self->io, reread_capacity(self), asio::detached);
    });
    session->on_failure([weak = weak_from_this(), &p, raw = session.get()](
                            std::error_code ec, const std::string& detail) {
      auto self = weak.lock();
      // Closing: the last device out of a shared session logs it out, and the others, already
      // done with it, have nothing to fail over.
      if (self && p.session.get() == raw && !self->closing)
        self->path_failed(p, detail.empty() ? ec.message() : detail);
    });
  }

  void release_unproven(Path& p, const std::string& proof) {
    if (p.unproven.empty()) return;
    std::vector<Command*> writes;
    writes.swap(p.unproven);
    if (path_event)
      path_event(p.name, p.state, std::to_string(writes.size()) + " write(s) re-issued: " + proof);
    for (Command* c : writes) asio::post(io, [this, c] { execute(*c); });
  }

  // A proof attempt failed: the writes stay held (re-issuing them could let a stale copy land
  // after a newer write) and retry_proofs tries again after a polling interval.
  void held_unproven(Path& p, const std::string& why) {
    emit(p, std::to_string(p.unproven.size()) + " write(s) still held: " + why +
                "; trying again every polling interval");
  }

  std::vector<ProofPath> proof_paths;  // prove_dead's scratch space

  // Proof that writes on a failed path are dead without waiting for that path's network
  // (choose_write_proof): its session reinstated through a healthy path to the same portal
  // group, else a LOGICAL UNIT RESET, else its own reconnect.
  void prove_dead(Path& p) {
    // While the path's own login is in flight, that login is the proof (the life cycle says).
    if (closing || !p.life.on(Event{.kind = Event::Kind::writes_held}).prove_held_writes) return;
    proof_paths.clear();
    for (auto& q : paths)
      proof_paths.push_back({.active = q->state == PathState::active,
                             .ready = q->session && q->session->ready(),
                             .portal_group_tag = q->portal_group_tag});
    const auto proof = choose_write_proof(p.index, proof_paths);
    p.last_proof_attempt = std::chrono::steady_clock::now();
    switch (proof.method) {
      case WriteProof::Method::reinstate_session:
        prove_dead_by_reinstatement(p, *paths[proof.via]);
        break;
      case WriteProof::Method::lu_reset:
        prove_dead_by_lu_reset(p, *paths[proof.via]);
        break;
      case WriteProof::Method::wait:
        break;  // the failed path's own reconnect will prove it
    }
  }

  // A login with the failed path's ISID through `via`: the target sees the same I_T nexus and
  // reinstates it, ending the old session's tasks (RFC 7143 §6.3.5). The pool runs it, since a
  // login of the path itself, by this device or another LU's, proves the same and must not
  // race with it.
  void prove_dead_by_reinstatement(Path& p, Path& via) {
    feed(p, Event{.kind = Event::Kind::proof_started});
    pool->prove_ended(p.config, p.generation, via.config,
                      [weak = weak_from_this(), &p, via_name = via.name](
                          std::error_code ec, const std::string& detail) {
                        auto self = weak.lock();
                        if (!self) return;
                        self->feed(p, Event{.kind = Event::Kind::proof_done});
                        if (ec) {
                          if (!self->closing)
                            self->held_unproven(p, "a login with its ISID through " + via_name +
                                                       " failed: " + detail);
                          return;
                        }
                        self->release_unproven(p, "its session was reinstated through " + via_name);
                      });
  }

  // No other path reaches the failed path's portal group, so its I_T nexus cannot be reinstated
  // from elsewhere. A LOGICAL UNIT RESET through a healthy path ends every task of the LU on
  // every I_T nexus (SAM-5 §5.8.2, §7.7), the failed path's included. It also ends the healthy
  // paths' own commands (they come back task_aborted_proven and are re-issued) and leaves a unit
  // attention on every nexus: the price of proof when no cheaper one exists.
  void prove_dead_by_lu_reset(Path& p, Path& via) {
    feed(p, Event{.kind = Event::Kind::proof_started});
    auto self = shared_from_this();
    const bool sent = via.session->reset_lun(
        lun, [this, self, &p, via_name = via.name](const iscsi::TmfResult& result) {
          feed(p, Event{.kind = Event::Kind::proof_done});
          if (closing) return;
          // Only "function complete" (RFC 7143 §11.6.1, response 0) proves the tasks ended.
          if (result.error || result.response != 0) {
            held_unproven(
                p, "LOGICAL UNIT RESET through " + via_name + " " +
                       (result.error ? "got no answer: " + result.detail
                                     : "answered " + iscsi::tmf_response_name(result.response)));
            return;
          }
          release_unproven(p, "LOGICAL UNIT RESET through " + via_name + " completed");
        });
    if (!sent) feed(p, Event{.kind = Event::Kind::proof_done});
  }

  // A (re)connected path carries I/O only once it shows the same device: the identity the
  // first path's probe found (scsi::lu_identity), "" included.
  static awaitable<void> join(std::shared_ptr<Impl> self, Path& p) {
    std::string detail;
    std::string wwid;
    std::vector<scsi::Designator> designators;
    // A target still busy with the old session may leave the check unanswered: after the
    // login timeout the attempt fails (closing the session ends the check's commands) and the
    // path tries again later, instead of waiting forever.
    auto session = p.session;
    asio::steady_timer deadline(self->io, p.config.login_timeout);
    deadline.async_wait([self, &p, session](boost::system::error_code ec) {
      if (!ec && p.session == session && !self->closing)
        self->feed(p, Event{.kind = Event::Kind::identity_unanswered,
                            .detail = "identity check unanswered within the login timeout"});
    });
    auto ec = co_await self->path_identity(p, wwid, designators, detail);
    if (self->closing || p.session != session) co_return;
    if (ec) {
      self->feed(p, Event{.kind = Event::Kind::identity_failed,
                          .detail = "identity check failed: " + detail,
                          .answered = answered_by_target(ec)});
      co_return;
    }
    if (wwid != self->identity.wwid) {
      self->refuse(p, wwid);
      co_return;
    }
    auto same = p.life.on(Event{.kind = Event::Kind::identity_same});
    const bool read_alua = same.read_alua;
    self->perform(p, std::move(same));
    if (!read_alua) co_return;  // the path failed meanwhile
    Placement placement;
    ec = co_await self->classify(p, designators, placement);
    if (self->closing) co_return;
    if (ec) {
      self->feed(p, Event{.kind = Event::Kind::alua_failed,
                          .detail = "ALUA check failed: " + ec.message(),
                          .answered = answered_by_target(ec)});
      co_return;
    }
    // Failed by the operator while the check ran: the life cycle places nothing.
    self->place(p, placement, Event::Kind::alua_read);
  }

  // A path that presents another device never carries I/O (nor is logged in again).
  void refuse(Path& p, const std::string& wwid) {
    const auto shown = [](const std::string& w) {
      return w.empty() ? std::string("(no WWID)") : w;
    };
    // identity is reset when the first probe found a device other than target.wwid.
    feed(p, Event{.kind = Event::Kind::identity_other,
                  .detail = "presents device " + shown(wwid) + ", not " +
                            shown(identity.wwid.empty() ? config.expected_wwid : identity.wwid)});
  }

  // TEST UNIT READY (its retry in execute() consumes the unit attention of a fresh nexus), then
  // the identity as the first path's probe reads it.
  awaitable<std::error_code> path_identity(Path& p, std::string& wwid,
                                           std::vector<scsi::Designator>& designators,
                                           std::string& detail) {
    if (auto ec = co_await test_unit_ready(p, detail)) co_return ec;
    scsi::IdentityPages pages;
    if (auto ec = co_await iscsi_io::read_identity_pages(runner(p), pages, detail)) co_return ec;
    wwid = scsi::lu_identity(pages);
    if (pages.designators) designators = std::move(*pages.designators);
    co_return std::error_code{};
  }

  // TEST UNIT READY pinned to `p`. A port whose ALUA state keeps it from I/O answers NOT READY
  // 04/0A, 04/0B or 04/0C (SPC-4 §5.16.2.4.4-5, 7) but still answers INQUIRY (VPD pages too),
  // REPORT LUNS and REPORT TARGET PORT GROUPS: that answer reaches the LU, so the identity is
  // read after it and the path's placement makes it a ghost, as multipath's tur checker calls
  // 04/0B PATH_GHOST rather than down. A unit attention is reported before it (SAM-5 §5.14),
  // so the retry has consumed that too.
  awaitable<std::error_code> test_unit_ready(Path& p, std::string& detail) {
    Command tur;
    tur.cdb = scsi::test_unit_ready().bytes;
    tur.pinned = &p;
    auto ec = co_await run(tur, detail);
    if (!ec || ec.category() != scsi::category() ||
        scsi::status_of(ec) != scsi::Status::check_condition)
      co_return ec;
    scsi::Sense sense;
    sense.key = scsi::sense_key_of(ec);
    sense.asc = scsi::asc_of(ec);
    sense.ascq = scsi::ascq_of(ec);
    if (!scsi::alua_state_in_sense(sense)) co_return ec;
    detail.clear();
    co_return std::error_code{};
  }

  awaitable<std::error_code> run(Command& cmd, std::string& detail) {
    co_await asio::async_initiate<decltype(use_awaitable), void()>(
        [this, &cmd](auto handler) {
          auto h = std::make_shared<decltype(handler)>(std::move(handler));
          cmd.then = [this, h](Command&) { asio::post(io, [h]() mutable { std::move (*h)(); }); };
          execute(cmd);
        },
        use_awaitable);
    co_return outcome_of(cmd, detail);
  }

  // Data-In command with a fresh buffer of `allocation` bytes; `data` gets what arrived.
  awaitable<std::error_code> read_data(const scsi::Cdb& cdb, uint32_t allocation,
                                       std::vector<std::byte>& data, std::string& detail,
                                       Path* pinned, bool to_lun0 = false) {
    Command cmd;
    cmd.pinned = pinned;
    cmd.to_lun0 = to_lun0;
    cmd.cdb = cdb.bytes;
    cmd.direction = iscsi::DataDirection::read;
    data.assign(allocation, std::byte{0});
    cmd.read_buffer = data;
    auto ec = co_await run(cmd, detail);
    // Short parameter data is normal for INQUIRY and friends: keep what came.
    if (ec == make_error_code(iscsi::errc::protocol_violation) && cmd.residual_underflow) ec = {};
    if (!ec && cmd.residual_underflow && cmd.residual_count <= data.size())
      data.resize(data.size() - cmd.residual_count);
    co_return ec;
  }

  // The shared probes' (iscsi_io/lu_probe.hpp) way to run a command: pinned to `path`, to our
  // LUN or to LUN 0.
  iscsi_io::DataInCommand runner(Path& path, bool to_lun0 = false) {
    return [this, &path, to_lun0](const scsi::Cdb& cdb, uint32_t allocation,
                                  std::vector<std::byte>& data, std::string& detail) {
      return read_data(cdb, allocation, data, detail, &path, to_lun0);
    };
  }

  awaitable<std::vector<std::byte>> vpd_page(uint8_t page, std::string& detail, Path* pinned) {
    std::vector<std::byte> data;
    auto ec = co_await read_data(scsi::inquiry(true, page, 4096), 4096, data, detail, pinned);
    if (ec) data.clear();
    co_return data;
  }

  // ---------------------------------------------------------------- probe (SPC-4 / SBC-3)

  awaitable<std::error_code> probe(Path& path, std::string& detail) {
    lun = iscsi::Lun{scsi::encode_lun(config.lun)};
    // TEST UNIT READY first: the unit attention a fresh nexus carries (29/00 power on or
    // reset) is consumed by the retry in execute().
    {
      if (auto ec = co_await test_unit_ready(path, detail)) {
        detail = "LUN " + std::to_string(config.lun) + " is not ready: " + detail +
                 co_await iscsi_io::luns_on_target(runner(path, true));
        co_return ec;
      }
    }
    std::vector<std::byte> data;
    if (auto ec = co_await read_data(scsi::inquiry(false, 0, 255), 255, data, detail, &path))
      co_return ec;
    auto inquiry = scsi::parse_standard_inquiry(data);
    if (!inquiry) {
      detail = "malformed standard INQUIRY data";
      co_return iscsi::errc::protocol_violation;
    }
    if (inquiry->peripheral_qualifier != 0) {
      detail = "LUN " + std::to_string(config.lun) + " does not exist on the target" +
               co_await iscsi_io::luns_on_target(runner(path, true));
      co_return std::make_error_code(std::errc::no_such_device);
    }
    if (inquiry->device_type != 0x00) {
      detail = "LUN " + std::to_string(config.lun) + " is not a block device (peripheral type 0x" +
               std::to_string(inquiry->device_type) + ")";
      co_return std::make_error_code(std::errc::no_such_device);
    }
    identity.inquiry = *inquiry;

    scsi::IdentityPages pages;
    if (auto ec = co_await iscsi_io::read_identity_pages(runner(path), pages, detail)) co_return ec;
    identity.wwid = scsi::lu_identity(pages);
    identity.serial = pages.serial.value_or("");
    probe_designators = std::move(pages.designators).value_or(std::vector<scsi::Designator>{});
    // The other VPD pages only when VPD 0x00 lists them.
    auto supported = [&](uint8_t page) {
      return pages.supported && std::find(pages.supported->begin(), pages.supported->end(), page) !=
                                    pages.supported->end();
    };
    if (supported(scsi::vpd::block_limits))
      if (auto l =
              scsi::parse_block_limits(co_await vpd_page(scsi::vpd::block_limits, detail, &path))) {
        identity.limits = *l;
        identity.has_block_limits = true;
      }
    if (supported(scsi::vpd::logical_block_provisioning))
      if (auto p = scsi::parse_logical_block_provisioning(
              co_await vpd_page(scsi::vpd::logical_block_provisioning, detail, &path))) {
        identity.provisioning = *p;
        identity.has_provisioning = true;
      }

    // SBC-3 §5.16: READ CAPACITY(16) is needed past 2 TiB and reports the physical block
    // exponent and provisioning; (10) is the fallback for targets without it.
    uint32_t block_length = 0;
    uint8_t exponent = 0;
    bool lbpme = false;
    bool lbprz = false;
    if (auto ec = co_await read_data(scsi::read_capacity16(32), 32, data, detail, &path); !ec) {
      if (auto rc = scsi::parse_read_capacity16(data)) {
        identity.blocks = rc->last_lba + 1;
        block_length = rc->block_length;
        exponent = rc->logical_per_physical_exponent;
        lbpme = rc->lbpme;
        lbprz = rc->lbprz;
      }
    }
    if (block_length == 0) {
      if (auto ec = co_await read_data(scsi::read_capacity10(), 8, data, detail, &path))
        co_return ec;
      auto rc = scsi::parse_read_capacity10(data);
      if (!rc) {
        detail = "malformed READ CAPACITY(10) data";
        co_return iscsi::errc::protocol_violation;
      }
      identity.blocks = uint64_t{rc->last_lba} + 1;
      block_length = rc->block_length;
    }
    if (block_length < 512 || block_length > 65536 || (block_length & (block_length - 1)) != 0) {
      detail = "unsupported logical block length " + std::to_string(block_length);
      co_return std::make_error_code(std::errc::not_supported);
    }

    // MODE SENSE(10) header: write protection and DPOFUA (SBC-3 §6.4.2).
    bool read_only = false;
    bool fua = true;
    if (auto ec = co_await read_data(scsi::mode_sense10(0x3f, 0, 255), 255, data, detail, &path);
        !ec) {
      if (auto h = scsi::parse_mode_sense10_header(data)) {
        read_only = h->write_protected;
        fua = h->dpofua;
      }
    }

    build_info(block_length, exponent, lbpme, lbprz, read_only, fua,
               path.session->negotiated().max_burst_length);
    detail.clear();
    co_return std::error_code{};
  }

  // `max_burst`: the probed session's MaxBurstLength (RFC 7143 §13.13).
  void build_info(uint32_t block_length, uint8_t exponent, bool lbpme, bool lbprz, bool read_only,
                  bool fua, uint32_t max_burst) {
    ProbedLu lu;
    lu.blocks = identity.blocks;
    lu.block_length = block_length;
    lu.logical_per_physical_exponent = exponent;
    lu.lbpme = lbpme;
    lu.lbprz = lbprz;
    lu.write_protected = read_only;
    lu.dpofua = fua;
    if (identity.has_block_limits) lu.block_limits = identity.limits;
    if (identity.has_provisioning) lu.provisioning = identity.provisioning;
    auto mapping =
        map_lu(lu, {.configured_bytes = config.max_command_bytes,
                    .quirk = find_target_quirk(identity.inquiry.vendor, identity.inquiry.product),
                    .max_burst_length = max_burst});
    info = mapping.info;
    info.wwid = identity.wwid;
    info.vendor = identity.inquiry.vendor;
    info.product = identity.inquiry.product;
    limits = mapping.limits;
    command_bytes_source = std::move(mapping.command_bytes_source);
  }

  // ---------------------------------------------------------------- block requests

  Command& add_command(Operation& op) {
    if (op.used == op.commands.size()) op.commands.push_back(std::make_unique<Command>());
    Command& cmd = *op.commands[op.used++];
    reset_command(cmd);
    return cmd;
  }

  std::vector<std::unique_ptr<Operation>> spare_operations;

  Operation* acquire_operation() {
    if (spare_operations.empty()) return new Operation;
    Operation* op = spare_operations.back().release();
    spare_operations.pop_back();
    op->used = 0;
    op->error = {};
    op->detail.clear();
    return op;
  }

  void release_operation(Operation* op) {
    op->request = nullptr;
    spare_operations.emplace_back(op);
  }

  // Operation* is owned by the device from acquire_operation() to release_operation(); the
  // commands' `then` closures hold it raw: two pointers, which std::function keeps inline.
  void start(Operation* op) {
    ++in_flight;
    op->remaining = op->used;
    if (op->remaining == 0) {
      complete(*op);
      return;
    }
    // Every command of the operation is issued at once: the session queues what the CmdSN
    // window does not yet allow.
    for (size_t i = 0; i < op->used; ++i) {
      Command* cmd = op->commands[i].get();
      cmd->operation = op;
      cmd->then = [this, op](Command& c) {
        std::string detail;
        auto ec = outcome_of(c, detail);
        if (ec && !op->error) {
          op->error = ec;
          op->detail = detail;
        }
        if (--op->remaining == 0) complete(*op);
      };
      execute(*cmd);
    }
  }

  void complete(Operation& op) {
    --in_flight;
    if (op.request->op == IoOp::block_status) finish_block_status(op);
    // proto.md NBD_CMD_CACHE is advisory: a LU without PRE-FETCH answers success, and new
    // clients are no longer offered NBD_FLAG_SEND_CACHE.
    if (op.request->op == IoOp::cache && pre_fetch_unsupported(op.error)) {
      limits.pre_fetch = false;
      info.supports_cache = false;
      op.error = {};
      op.detail.clear();
    }
    op.request->done(op.error, op.detail);
    // Only now: a request submitted from inside `done` must not get this operation while its
    // last command's completion is still on the stack.
    release_operation(&op);
    if (in_flight == 0 && on_idle) {
      auto idle = std::move(on_idle);
      on_idle = nullptr;
      idle();
    }
  }

  // The extents of a block status request from its GET LBA STATUS (none sent: all data). A LU
  // that refuses the command is asked no more and its blocks are data.
  void finish_block_status(Operation& op) {
    std::span<const std::byte> data;
    if (op.used > 0) {
      const Command& c = *op.commands.front();
      data = c.read_buffer.first(
          c.read_buffer.size() -
          (c.residual_underflow ? std::min<size_t>(c.residual_count, c.read_buffer.size()) : 0));
      // Parameter data shorter than the allocation length is normal (SPC-4 §4.2.5.6), as in
      // read_data().
      if (op.error == make_error_code(iscsi::errc::protocol_violation) && c.residual_underflow) {
        op.error = {};
        op.detail.clear();
      }
      if (get_lba_status_unsupported(op.error)) {
        limits.block_status = false;
        op.error = {};
        op.detail.clear();
      }
    }
    if (op.error) return;
    op.error = block_status_extents(data, *op.request, limits, op.request->extents, op.detail);
  }

  CommandPlan plan;  // submit's scratch space, kept to avoid reallocating

  void submit(IoRequest& request) {
    Operation* op = acquire_operation();
    op->request = &request;
    plan_request(request, limits, plan);
    // Every planned command is copied out before the first one starts: a request completing
    // at once may submit another, which plans into the same scratch space.
    for (PlannedCommand& planned : plan.commands()) {
      Command& cmd = add_command(*op);
      cmd.cdb = planned.cdb.bytes;
      switch (planned.data) {
        case PlannedCommand::Data::none:
          break;
        case PlannedCommand::Data::read_into_buffer:
          cmd.direction = iscsi::DataDirection::read;
          cmd.read_buffer = request.buffer.subspan(planned.buffer_offset, planned.buffer_length);
          cmd.client_read = true;
          break;
        case PlannedCommand::Data::write_from_buffer:
          cmd.direction = iscsi::DataDirection::write;
          cmd.write_buffer = request.buffer.subspan(planned.buffer_offset, planned.buffer_length);
          break;
        case PlannedCommand::Data::read_parameter_data:
          cmd.owned.swap(planned.parameter_data);
          cmd.owned.resize(planned.buffer_length);
          cmd.direction = iscsi::DataDirection::read;
          cmd.read_buffer = cmd.owned;
          break;
        case PlannedCommand::Data::write_parameter_data:
          // The plan's slot gets the command's old buffer: both keep their capacity for reuse.
          cmd.owned.swap(planned.parameter_data);
          cmd.direction = iscsi::DataDirection::write;
          cmd.write_buffer = cmd.owned;
          break;
      }
    }
    if (request.op == IoOp::flush) {
      start_flush(op);
      return;
    }
    start(op);
  }

  void start_flush(Operation* op) {
    ++in_flight;
    Command& cmd = *op->commands.front();
    cmd.then = [this, op](Command& c) {
      std::string detail;
      auto ec = outcome_of(c, detail);
      if (limits.synchronize_cache16 && synchronize_cache16_unsupported(ec)) {
        limits.synchronize_cache16 = false;
        c.cdb = synchronize_cache_cdb(limits).bytes;
        c.retries = 0;
        execute(c);
        return;
      }
      op->error = ec;
      op->detail = detail;
      complete(*op);
    };
    execute(cmd);
  }
};

// ---------------------------------------------------------------- reload

Path& LunDevice::Impl::new_path(const LunPath& config_path) {
  auto path = std::make_unique<Path>();
  path->index = paths.size();
  path->id = next_path_id++;
  path->config = config_path.login;
  path->configured_priority = config_path.priority;
  path->name = iscsi_io::describe(path->config);
  path->life = PathLifecycle(config.polling_interval, config.marginal_path);
  paths.push_back(std::move(path));
  return *paths.back();
}

// A path added by a reload or found by discovery: the login (or the session another LUN's
// device has already), then the identity check and the placement before it carries I/O.
std::optional<size_t> LunDevice::Impl::add_path(LunPath path) {
  if (closing) return std::nullopt;
  config.paths.push_back(path);
  Path& p = new_path(path);
  emit(p, "added: logging in");
  first_login(p);
  return p.index;
}

std::error_code LunDevice::Impl::remove_path(size_t index, std::string& detail,
                                             std::function<void(size_t)> drained,
                                             std::function<void(std::error_code)> released) {
  if (index >= paths.size()) {
    detail = "no path " + std::to_string(index + 1);
    return std::make_error_code(std::errc::invalid_argument);
  }
  Path& p = *paths[index];
  if (p.removing) {
    detail = "path " + p.name + " is being removed already";
    return std::make_error_code(std::errc::operation_in_progress);
  }
  p.removing = true;
  ++draining;
  // As `multipathd fail path`: no new command goes to it, those in flight complete normally.
  // The event says why in the reload's words.
  auto actions = p.life.on(Event{.kind = Event::Kind::operator_fail});
  actions.last_error = "removed by a reload: draining";
  actions.emit = "removed by a reload: no new I/O, " + std::to_string(p.in_flight) +
                 " command(s) in flight finish first";
  perform(p, std::move(actions));
  drain_path(p, std::move(drained), std::move(released));
  detail = "path " + p.name + " draining";
  return {};
}

// Waits for the path's commands to end: those in flight on it, and writes it lost that wait
// for proof (they go elsewhere once proven dead). Each ends within the command timeout and its
// abort, so the wait is bounded; it is looked at every 20 ms, a cost only while draining.
void LunDevice::Impl::drain_path(Path& p, std::function<void(size_t)> drained,
                                 std::function<void(std::error_code)> released) {
  const auto state = p.life.state();
  const bool busy = p.in_flight > 0 || !p.unproven.empty() ||
                    state == LifeState::operator_failed_proving ||
                    state == LifeState::operator_failed_checking;
  if (busy && !closing) {
    auto timer = std::make_shared<asio::steady_timer>(io, std::chrono::milliseconds(20));
    timer->async_wait([self = shared_from_this(), &p, timer, drained = std::move(drained),
                       released = std::move(released)](boost::system::error_code) mutable {
      self->drain_path(p, std::move(drained), std::move(released));
    });
    return;
  }
  --draining;
  feed(p, Event{.kind = Event::Kind::closing});
  if (p.timer) p.timer->cancel();
  ++p.login_attempt;  // a login still in flight no longer counts
  p.session.reset();
  const size_t index = p.index;
  auto owned = std::move(paths[index]);
  paths.erase(paths.begin() + static_cast<std::ptrdiff_t>(index));
  config.paths.erase(config.paths.begin() + static_cast<std::ptrdiff_t>(index));
  for (size_t i = 0; i < paths.size(); ++i) paths[i]->index = i;
  removed_paths.push_back(std::move(owned));
  if (path_event) path_event(p.name, p.state, "removed by a reload: drained, letting go of it");
  if (!closing) reconsider_groups("path " + p.name + " removed");
  drained(index);
  leave_pool(p, std::chrono::seconds(5), std::move(released));
}

std::error_code LunDevice::Impl::reconfigure(const LunConfig& settings, std::string& detail) {
  auto new_selector = make_path_selector(settings.path_selector, settings.rr_min_io);
  if (!new_selector) {
    detail = "unknown path_selector '" + settings.path_selector + "'";
    return std::make_error_code(std::errc::invalid_argument);
  }
  // A selector keeps only its own position (round-robin's count): starting it again costs
  // nothing but the fairness of one round.
  selector = std::move(new_selector);
  config.path_selector = settings.path_selector;
  config.rr_min_io = settings.rr_min_io;
  const bool regrouping = settings.grouping != config.grouping;
  const bool interval_changed = settings.polling_interval != config.polling_interval;
  config.grouping = settings.grouping;
  config.failback = settings.failback;
  config.no_path_retry = settings.no_path_retry;
  config.polling_interval = settings.polling_interval;
  // Reads out now keep being watched; with hedging off, none is hedged from now on.
  config.hedged_reads = settings.hedged_reads;
  if (interval_changed || regrouping) {
    for (auto& p : paths) p->life.set_polling_interval(config.polling_interval);
    if (identified && !closing) {
      stop_periodic_jobs();
      start_periodic_jobs();
    }
  }
  if (regrouping)
    for (auto& p : paths)
      if ((p->state == PathState::active || p->state == PathState::ghost) && p->session &&
          p->session->ready())
        asio::co_spawn(io, recheck_alua(shared_from_this(), *p, true), asio::detached);
  // Requests waiting for a path go by the new no_path_retry: `fail` ends them now, a deadline
  // starts from now.
  no_path_timer.reset();
  failing_without_path = false;
  if (!waiting.empty() && !any_active()) {
    std::deque<Command*> held;
    held.swap(waiting);
    for (Command* c : held) wait_for_path(*c);
  }
  if (!regrouping) reconsider_groups("failback or grouping settings reloaded");
  detail = "path_selector " + config.path_selector + ", path_grouping_policy " +
           std::string(grouping_name(config.grouping));
  return {};
}

// ---------------------------------------------------------------- operator commands

std::error_code LunDevice::Impl::fail_path(size_t index, std::string& detail) {
  if (index >= paths.size()) {
    detail = "no path " + std::to_string(index + 1) + " (paths are 1 to " +
             std::to_string(paths.size()) + ")";
    return std::make_error_code(std::errc::invalid_argument);
  }
  Path& p = *paths[index];
  if (p.life.operator_failed()) {
    detail = "path " + p.name + " is already failed by the operator";
    return {};
  }
  if (p.state == PathState::refused) {
    detail = "path " + p.name + " is refused: " + p.last_error;
    return std::make_error_code(std::errc::operation_not_permitted);
  }
  // The session stays logged in and its commands in flight complete normally: like
  // `multipathd fail path`, this only stops new I/O from going down the path.
  feed(p, Event{.kind = Event::Kind::operator_fail});
  detail = "path " + p.name + " failed";
  return {};
}

std::error_code LunDevice::Impl::reinstate_path(size_t index, std::string& detail) {
  if (index >= paths.size()) {
    detail = "no path " + std::to_string(index + 1) + " (paths are 1 to " +
             std::to_string(paths.size()) + ")";
    return std::make_error_code(std::errc::invalid_argument);
  }
  Path& p = *paths[index];
  if (p.removing) {
    detail = "path " + p.name + " is being removed by a reload";
    return std::make_error_code(std::errc::operation_not_permitted);
  }
  if (p.state == PathState::marginal) {
    // Held out as marginal (multipath.marginal_path): the operator's word ends the hold.
    feed(p, Event{.kind = Event::Kind::operator_reinstate, .logged_in = true});
    detail = "path " + p.name + " reinstated: its marginal hold is over";
    return {};
  }
  if (!p.life.operator_failed()) {
    detail = "path " + p.name + " was not failed by the operator (it is " +
             std::string(path_state_name(p.state)) + ")";
    return std::make_error_code(std::errc::operation_not_permitted);
  }
  // Still logged in: the identity check puts it back to work; else it logs in again.
  feed(p, Event{.kind = Event::Kind::operator_reinstate,
                .logged_in = p.session && p.session->ready()});
  detail = "path " + p.name + " reinstated: checking it";
  return {};
}

// ---------------------------------------------------------------- public face

LunDevice::LunDevice(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
LunDevice::~LunDevice() = default;
const DeviceInfo& LunDevice::info() const {
  return impl_->info;
}
const LunIdentity& LunDevice::identity() const {
  return impl_->identity;
}
CommandSize LunDevice::command_size() const {
  return {impl_->limits.command_bytes, impl_->command_bytes_source};
}
size_t LunDevice::requests_in_flight() const {
  return impl_->in_flight;
}
void LunDevice::submit(IoRequest& request) {
  impl_->submit(request);
}

std::vector<PathStatus> LunDevice::path_status() const {
  std::vector<PathStatus> out;
  const auto now = std::chrono::steady_clock::now();
  for (const auto& p : impl_->paths) {
    const auto& marginal = p->life.marginal();
    out.push_back({.name = p->name,
                   .state = p->state,
                   .in_flight = p->in_flight,
                   .commands = p->commands,
                   .bytes = p->bytes,
                   .errors = p->errors,
                   .iops = p->iops,
                   .last_error = p->last_error,
                   .group = p->group,
                   .priority = p->priority,
                   .group_in_use = impl_->group_in_use == p->group,
                   .alua_state = p->alua ? std::string(scsi::alua_state_name(*p->alua)) : "",
                   .alua_activation = p->alua_activation,
                   .marginal = marginal.marginal(),
                   .marginal_failures = marginal.failures(now),
                   .marginal_time_left = marginal.time_left(now),
                   .hedges_sent = p->hedges_sent,
                   .hedges_won = p->hedges_won});
  }
  return out;
}

Grouping LunDevice::grouping() const {
  return impl_->config.grouping;
}

std::error_code LunDevice::fail_path(size_t index, std::string& detail) {
  return impl_->fail_path(index, detail);
}

std::error_code LunDevice::reinstate_path(size_t index, std::string& detail) {
  return impl_->reinstate_path(index, detail);
}

void LunDevice::check_capacity() {
  impl_->poll_capacity();
}

std::error_code LunDevice::remove_path(size_t index, std::string& detail,
                                       std::function<void(size_t)> drained,
                                       std::function<void(std::error_code)> released) {
  return impl_->remove_path(index, detail, std::move(drained), std::move(released));
}

void LunDevice::set_timeouts(const iscsi_io::SessionTimeouts& timeouts) {
  for (auto& path : impl_->config.paths) iscsi_io::set_timeouts(path.login, timeouts);
  for (auto& p : impl_->paths) {
    iscsi_io::set_timeouts(p->config, timeouts);
    if (p->session) p->session->set_timeouts(timeouts);
  }
}

std::error_code LunDevice::reconfigure(const LunConfig& settings, std::string& detail) {
  return impl_->reconfigure(settings, detail);
}

size_t LunDevice::paths_draining() const {
  return impl_->draining;
}

void LunDevice::on_capacity_change(std::function<void(uint64_t size_bytes)> handler) {
  impl_->capacity_event = std::move(handler);
}

void LunDevice::on_luns_changed(std::function<void()> handler) {
  impl_->luns_changed_event = std::move(handler);
}

void LunDevice::on_command_done(std::function<void(size_t, std::chrono::nanoseconds)> handler) {
  impl_->command_observer = std::move(handler);
}

void LunDevice::on_path_event(
    std::function<void(const std::string&, PathState, const std::string&)> handler) {
  impl_->path_event = std::move(handler);
}

void LunDevice::open(asio::io_context& io, LunConfig config, OpenHandler done) {
  auto impl = std::make_shared<Impl>(io, std::move(config));
  if (impl->config.paths.empty()) {
    done(std::make_error_code(std::errc::invalid_argument), "no paths configured", nullptr);
    return;
  }
  impl->pool = impl->config.sessions ? impl->config.sessions : iscsi_io::SessionPool::create(io);
  impl->selector = make_path_selector(impl->config.path_selector, impl->config.rr_min_io);
  if (!impl->selector) {
    done(std::make_error_code(std::errc::invalid_argument),
         "unknown path_selector '" + impl->config.path_selector + "'", nullptr);
    return;
  }
  for (const auto& path : impl->config.paths) impl->new_path(path);
  impl->open_done = std::move(done);
  impl->keep_while_opening = impl;

  // One netlink socket per session pool: the LUNs of one attach share it.
  impl->route_watch = impl->pool->watch_routes([weak = impl->weak_from_this()] {
    if (auto self = weak.lock()) self->routes_changed();
  });

  // All paths log in at once; open_step() decides which one is probed.
  for (auto& path_ptr : impl->paths) impl->first_login(*path_ptr);
}

// A path's first login, at open or when add_path() brings it later: once the LU is
// identified, the path's identity is checked as a reconnecting path's is before it joins.
void LunDevice::Impl::first_login(Path& p) {
  request_session(p, [raw = this, &p](std::error_code ec, const std::string& detail) {
    if (ec) {
      if (!raw->identified) {
        raw->open_error = ec;
        raw->open_failures += (raw->open_failures.empty() ? "" : "; ") + std::string("login to ") +
                              p.name + " failed: " + detail;
      }
      raw->feed(p, Event{.kind = Event::Kind::login_failed, .detail = detail});
      return;
    }
    raw->feed(p, Event{.kind = Event::Kind::login_done, .identified = raw->identified});
  });
}

std::optional<size_t> LunDevice::add_path(LunPath path) {
  return impl_->add_path(std::move(path));
}

// Which path is probed to identify the LU: with target.wwid given, the first to log in (the
// device is pinned, so any path can show it); without, the first in the configuration's order
// whose login succeeds, so the device the user listed first defines the LUN and a path to
// another device is the one refused, whatever the login race.
void LunDevice::Impl::open_step() {
  if (!open_done || probing || identified) return;
  Path* candidate = nullptr;
  bool pending = false;
  for (auto& p : paths) {
    if (p->state == PathState::refused) continue;
    if (p->state == PathState::failed && !p->life.reprobe_pending()) continue;
    if (p->state != PathState::failed && p->session && p->session->ready()) {
      candidate = p.get();
      break;
    }
    pending = true;
    if (config.expected_wwid.empty()) return;  // an earlier path's login decides first
  }
  if (candidate == nullptr) {
    if (!pending) fail_open(open_error, open_failures);
    return;
  }
  probing = true;
  asio::co_spawn(io, probe_and_open(shared_from_this(), *candidate), asio::detached);
}

awaitable<void> LunDevice::Impl::probe_and_open(std::shared_ptr<Impl> self, Path& p) {
  std::string detail;
  auto ec = co_await self->probe(p, detail);
  self->probing = false;
  if (!self->open_done) co_return;
  if (ec && !(p.session && p.session->ready()) && self->probe_interruptions < 3) {
    // Not the LU's answer: the path went away under the probe (RFC 7143 §11.9.1: a target may
    // ask for a logout, or for a renegotiation, at any time). Its next login probes again.
    ++self->probe_interruptions;
    self->feed(p, Event{.kind = Event::Kind::probe_interrupted});
    self->open_failures += (self->open_failures.empty() ? "" : "; ") + p.name +
                           " went away during the probe: " + detail;
    self->open_error = ec;
    self->open_step();  // another path that is ready may probe meanwhile
    co_return;
  }
  if (ec) {
    self->fail_open(ec, detail);
    co_return;
  }
  if (!self->config.expected_wwid.empty() && self->identity.wwid != self->config.expected_wwid) {
    const std::string wwid = self->identity.wwid;
    self->identity = {};
    self->refuse(p, wwid);
    self->open_error = std::make_error_code(std::errc::no_such_device);
    self->open_failures += (self->open_failures.empty() ? "" : "; ") + p.name + " " + p.last_error;
    self->open_step();
    co_return;
  }
  Placement placement;
  if (auto cec = co_await self->classify(p, self->probe_designators, placement)) {
    self->fail_open(cec, "ALUA check on " + p.name + " failed: " + cec.message());
    co_return;
  }
  self->identified = true;
  self->place(p, placement, Event::Kind::probe_done);
  self->start_periodic_jobs();
  // Paths that logged in while the probe ran join now.
  for (auto& other : self->paths)
    if (other.get() != &p && other->session && other->session->ready())
      self->feed(*other, Event{.kind = Event::Kind::device_identified});
  auto done = std::move(self->open_done);
  self->open_done = nullptr;
  self->keep_while_opening.reset();  // the LunDevice handed out owns it from now on
  done({}, {}, std::shared_ptr<LunDevice>(new LunDevice(self)));
}

void LunDevice::Impl::fail_open(std::error_code ec, const std::string& detail) {
  auto done = std::move(open_done);
  open_done = nullptr;
  // Released once this call returns: the sessions closed below hold the device only weakly.
  const auto keep = std::move(keep_while_opening);
  closing = true;
  // Sessions another LU's device shares stay; the last user logs them out.
  for (auto& p : paths) {
    feed(*p, Event{.kind = Event::Kind::closing});
    leave_pool(*p, std::chrono::seconds(2), [](std::error_code) {});
  }
  if (!ec) ec = std::make_error_code(std::errc::no_such_device);
  done(ec, detail, nullptr);
}

void LunDevice::stop_queueing() {
  auto impl = impl_;
  impl->closing = true;
  impl->no_path_timer.reset();
  impl->failback_timer.reset();
  impl->stop_periodic_jobs();
  impl->route_watch.reset();
  for (auto& p : impl->paths) impl->feed(*p, Event{.kind = Event::Kind::closing});
  // Nothing will come back to carry these: they end now, as requests the client sees fail.
  impl->fail_waiting("shutting down");
  for (auto& p : impl->paths) {
    std::vector<Command*> held;
    held.swap(p->unproven);
    for (Command* c : held) {
      c->transport_error = std::make_error_code(std::errc::io_error);
      c->transport_detail = "shutting down before the write's first attempt could be proven dead";
      c->then(*c);
    }
  }
}

void LunDevice::close(std::chrono::milliseconds timeout,
                      std::function<void(std::error_code)> done) {
  stop_queueing();
  auto impl = impl_;
  auto after_drain = [impl, timeout, done]() {
    // Flush the LU's volatile cache before the sessions go (SBC-3 §5.22), then log out.
    impl->final_flush = IoRequest{};
    impl->final_flush.op = IoOp::flush;
    // A raw pointer: the request lives inside *impl, and a shared_ptr here would be a cycle.
    impl->final_flush.done = [raw = impl.get(), timeout, done](std::error_code fec,
                                                               const std::string&) {
      auto remaining = std::make_shared<size_t>(1);
      auto finish_one = [remaining, done, fec](std::error_code) {
        if (--*remaining == 0) done(fec);
      };
      // Sessions another LU's device still uses stay logged in; the last one out logs out.
      for (auto& p : raw->paths) {
        ++*remaining;
        raw->leave_pool(*p, timeout, finish_one);
      }
      finish_one({});
    };
    // Goes out on an active path, or fails at once when none is left (closing is set).
    impl->submit(impl->final_flush);
  };
  if (impl->in_flight == 0) {
    after_drain();
  } else {
    impl->on_idle = after_drain;
  }
}

}  // namespace mpio
