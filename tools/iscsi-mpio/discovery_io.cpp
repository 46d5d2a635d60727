// The I/O half of discovered_paths.hpp and the `discover` verb: SendTargets over discovery
// sessions (iscsi_io::PathSession::discover), the routing table's answer for each reported
// portal, and for `discover --luns` a login to each target with its LUNs listed as check-config
// probes them.
#include <spdlog/spdlog.h>
#include <boost/asio.hpp>
#include <iostream>

#include <iscsi/errors.hpp>
#include <iscsi_io/path_session.hpp>
#include <iscsi_io/route_watch.hpp>

#include "discover_verb.hpp"
#include "discovered_paths.hpp"
#include "errors.hpp"
#include "exit_status.hpp"
#include "lun_listing.hpp"
#include "options.hpp"
#include "status.hpp"

namespace iscsi_mpio::discovery {
namespace {

namespace asio = boost::asio;

struct Answer {
  bool done = false;
  std::error_code ec;
  std::string detail;
  std::vector<iscsi::DiscoveredTarget> targets;
  std::function<void()> finished;  // called after the fields above are set
};

// SendTargets=All through `pc` on `io`; `answer` is filled when io.run() returns.
void ask(asio::io_context& io, const iscsi_io::PathConfig& pc, Answer& answer) {
  auto session = iscsi_io::PathSession::create(io, pc);
  session->discover([&answer, session](std::error_code ec, const std::string& detail,
                                       std::vector<iscsi::DiscoveredTarget> targets) {
    answer.done = true;
    answer.ec = ec;
    answer.detail = detail;
    answer.targets = std::move(targets);
    if (answer.finished) answer.finished();
  });
}

// The login has target.login_timeout; the SendTargets exchange after it this much more. A
// target that logs in and then never answers must not hold the attach (or the verb) for ever.
constexpr auto answer_allowance = std::chrono::seconds(10);

// Runs `io` until every exchange is done or the deadline passes; those left get "no answer".
void run_until_answered(asio::io_context& io, std::chrono::milliseconds login_timeout,
                        std::vector<Answer*> answers) {
  const auto deadline = login_timeout + answer_allowance;
  asio::steady_timer timer(io, deadline);
  timer.async_wait([&io](boost::system::error_code ec) {
    if (!ec) io.stop();
  });
  // Once every exchange has called back, the timer is the only work left: cancel it.
  for (Answer* a : answers)
    a->finished = [&answers, &timer] {
      if (std::all_of(answers.begin(), answers.end(), [](Answer* x) { return x->done; }))
        timer.cancel();
    };
  io.run();
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(deadline).count();
  for (Answer* a : answers) {
    a->finished = nullptr;  // it refers to this frame
    if (!a->done) {
      a->ec = std::make_error_code(std::errc::timed_out);
      a->detail = "no SendTargets answer within " + std::to_string(seconds) +
                  " s (target.login_timeout + " + std::to_string(answer_allowance.count()) + " s)";
    }
  }
}

// A refused discovery login is most often discovery CHAP: say so, and where it is set.
std::string failure_text(const iscsi_io::PathConfig& pc, const Answer& answer) {
  std::string text =
      "discovery on " + iscsi_io::describe(pc) + " failed: " + error_text(answer.ec, answer.detail);
  const bool refused_login = answer.ec == iscsi::make_login_status_error(0x02, 0x01) ||
                             answer.ec == iscsi::make_login_status_error(0x02, 0x02) ||
                             answer.ec == iscsi::errc::chap_target_authentication_failed;
  if (refused_login)
    text +=
        " (discovery authentication: check target.discovery_auth, iscsid.conf's "
        "discovery.sendtargets.auth.*)";
  return text;
}

// Reachable from the entry: the kernel has a route from its source / interface, and, for a
// source without an interface, that route leaves through the interface holding the source. A
// portal routed out of another NIC would be a session on the other NIC's path with this
// source's address: not a path of this entry (iscsiadm binds an iface's sessions to its NIC).
ReachabilityCheck reachability_from(const config::Path& entry) {
  return [entry](const config::Portal& portal) -> std::optional<std::string> {
    const iscsi_io::RouteQuery query{portal.host, portal.port, entry.source, entry.interface};
    if (std::string why; !iscsi_io::route_exists(query, why)) return "no route: " + why;
    if (!entry.source || entry.interface) return std::nullopt;
    const auto out = iscsi_io::routed_interface(query);
    const auto home = iscsi_io::interface_with_address(*entry.source);
    if (out && home && *out != *home && *out != "lo")
      return "leaves through " + *out + ", not " + *home + " which holds " + *entry.source;
    return std::nullopt;
  };
}

// YAML single-quoted: the only escape is '' for '.
std::string single_quoted(const std::string& text) {
  std::string out = "'";
  for (const char c : text) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

// --chap-username / --chap-secret-file as a target.discovery_auth, read and checked by the
// configuration's own rules (an absolute path, a one-line file kept from others).
bool chap_from_options(const std::string& username, const std::optional<std::string>& secret_file,
                       config::Auth& auth, std::string& problem) {
  if (!secret_file) {
    problem = "--chap-username needs --chap-secret-file (a secret never goes on a command line)";
    return false;
  }
  const std::string yaml =
      "target:\n  iqn: iqn.2026-11.org.iscsi-mpio:discover\n"
      "  discovery_auth: {method: chap, username: " +
      single_quoted(username) + ", secret_file: " + single_quoted(*secret_file) +
      "}\npaths: [{portal: 127.0.0.1}]\n";
  auto loaded = config::load_string(yaml, "--chap-*");
  for (const auto& warning : loaded.warnings())
    std::cerr << "warning: " << warning.to_string() << "\n";
  if (!loaded) {
    problem = loaded.error_report();
    while (!problem.empty() && problem.back() == '\n') problem.pop_back();
    return false;
  }
  auth = loaded.config().target.discovery_auth;
  return true;
}

// What the SendTargets answers (answers[i] and sessions[i] belong to entries[i]; unused for
// portal entries) make of `entries`: the paths, and in `outcome` where each came from, the
// portals skipped and the entries that gave nothing.
std::vector<config::Path> conclude(const config::Config& cfg,
                                   const std::vector<config::Path>& entries,
                                   const std::vector<iscsi_io::PathConfig>& sessions,
                                   const std::vector<Answer>& answers, Outcome& outcome) {
  std::vector<PortalChoice> choices(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    if (!entries[i].discover) continue;
    const std::string via = config::to_string(*entries[i].discover);
    if (answers[i].ec) {
      outcome.problems.push_back(failure_text(sessions[i], answers[i]));
      continue;
    }
    choices[i] = choose_portals(answers[i].targets, cfg.target.iqn, entries[i],
                                reachability_from(entries[i]));
    for (const auto& s : choices[i].skipped)
      outcome.skipped.push_back("via " + via + " from " + entry_origin(entries[i]) + ": skipped " +
                                s);
    if (!choices[i].problem.empty()) outcome.problems.push_back(choices[i].problem);
  }
  std::vector<std::string> origins;
  auto paths = expand_paths(entries, choices, origins);
  const auto isid = iscsi::Isid{};
  for (size_t i = 0; i < paths.size(); ++i)
    if (!origins[i].empty())
      outcome.origin_of_path.emplace_back(
          iscsi_io::describe(options::path_config(cfg, paths[i], isid)), origins[i]);
  return paths;
}

// One rediscovery in flight on an attach's io_context. Alive while its deadline timer waits;
// the discovery sessions' callbacks hold it weakly, so one that answers after the deadline
// finds it gone.
struct Rediscovery {
  config::Config cfg;
  std::vector<config::Path> entries;
  std::vector<iscsi_io::PathConfig> sessions;
  std::vector<Answer> answers;
  std::vector<std::shared_ptr<iscsi_io::PathSession>> open;
  std::unique_ptr<asio::steady_timer> deadline;
  size_t waiting = 0;
  RediscoverHandler done;  // empty once called

  void finish(asio::io_context& io, std::chrono::seconds allowed) {
    auto handler = std::move(done);
    done = nullptr;
    deadline->cancel();
    // Not from inside a session's own callback: the sessions are closed after it returns.
    asio::post(io, [sessions = std::move(open)] {
      for (const auto& session : sessions) session->close();
    });
    for (size_t i = 0; i < entries.size(); ++i)
      if (entries[i].discover && !answers[i].done) {
        answers[i].ec = std::make_error_code(std::errc::timed_out);
        answers[i].detail = "no SendTargets answer within " + std::to_string(allowed.count()) +
                            " s (target.login_timeout + " +
                            std::to_string(answer_allowance.count()) + " s)";
      }
    Outcome outcome;
    auto paths = conclude(cfg, entries, sessions, answers, outcome);
    handler(std::move(paths), std::move(outcome));
  }
};

}  // namespace

bool has_discover_entry(const std::vector<config::Path>& entries) {
  return std::any_of(entries.begin(), entries.end(), [](const auto& p) { return p.discover; });
}

void rediscover(asio::io_context& io, const config::Config& cfg, std::vector<config::Path> entries,
                RediscoverHandler done) {
  auto state = std::make_shared<Rediscovery>();
  state->cfg = cfg;
  state->entries = std::move(entries);
  state->done = std::move(done);
  const size_t count = state->entries.size();
  state->answers.resize(count);
  state->sessions.resize(count);
  const auto allowed = std::chrono::seconds(cfg.target.login_timeout) + answer_allowance;
  state->deadline = std::make_unique<asio::steady_timer>(io, allowed);
  for (size_t i = 0; i < count; ++i) {
    if (!state->entries[i].discover) continue;
    state->sessions[i] = discovery_path_config(cfg, state->entries[i]);
    auto session = iscsi_io::PathSession::create(io, state->sessions[i]);
    state->open.push_back(session);
    ++state->waiting;
    session->discover([weak = std::weak_ptr<Rediscovery>(state), i, &io, allowed](
                          std::error_code ec, const std::string& detail,
                          std::vector<iscsi::DiscoveredTarget> targets) {
      const auto self = weak.lock();
      if (!self || !self->done) return;
      Answer& answer = self->answers[i];
      answer.done = true;
      answer.ec = ec;
      answer.detail = detail;
      answer.targets = std::move(targets);
      if (--self->waiting == 0) self->finish(io, allowed);
    });
  }
  if (state->waiting == 0) {
    // No `discover` entry: the entries are the paths.
    asio::post(io, [state, &io, allowed] {
      if (state->done) state->finish(io, allowed);
    });
    return;
  }
  state->deadline->async_wait([state, &io, allowed](boost::system::error_code ec) {
    if (!ec && state->done) state->finish(io, allowed);
  });
}

bool discover_paths(config::Config& cfg, Outcome& outcome, std::string& detail) {
  const auto& entries = cfg.paths;
  if (!has_discover_entry(entries)) return true;
  asio::io_context io;
  std::vector<Answer> answers(entries.size());
  std::vector<iscsi_io::PathConfig> sessions(entries.size());
  std::vector<Answer*> waiting;
  for (size_t i = 0; i < entries.size(); ++i) {
    if (!entries[i].discover) continue;
    sessions[i] = discovery_path_config(cfg, entries[i]);
    spdlog::info("discovering {} through {}", cfg.target.iqn, iscsi_io::describe(sessions[i]));
    ask(io, sessions[i], answers[i]);
    waiting.push_back(&answers[i]);
  }
  run_until_answered(io, std::chrono::seconds(cfg.target.login_timeout), waiting);
  auto paths = conclude(cfg, entries, sessions, answers, outcome);
  for (const auto& [name, origin] : outcome.origin_of_path)
    spdlog::info("path {} {}", name, origin);
  for (const auto& s : outcome.skipped) spdlog::warn("discovery {}", s);
  if (paths.empty()) {
    detail.clear();
    for (const auto& p : outcome.problems) detail += (detail.empty() ? "" : "\n") + p;
    return false;
  }
  // As a portal that does not answer at attach: logged, and the other paths go on.
  for (const auto& p : outcome.problems) spdlog::error("{}", p);
  cfg.paths = std::move(paths);
  return true;
}

int run_verb(const VerbOptions& options) {
  // Without a file: the portal, source and credentials from the command line.
  config::Config cfg;
  if (options.config_path) {
    auto loaded = config::load_file(*options.config_path);
    if (!loaded) {
      std::cerr << loaded.error_report();
      return exit_usage;
    }
    cfg = std::move(loaded.config());
  }
  if (!options.initiator_name.empty()) cfg.initiator.name = options.initiator_name;
  if (cfg.initiator.name.empty()) cfg.initiator.name = config::generate_initiator_name();
  if (options.chap_secret_file && !options.chap_username) {
    std::cerr << "--chap-secret-file needs --chap-username\n";
    return exit_usage;
  }
  if (options.chap_username) {
    if (std::string problem; !chap_from_options(*options.chap_username, options.chap_secret_file,
                                                cfg.target.discovery_auth, problem)) {
      std::cerr << problem << "\n";
      return exit_usage;
    }
  }
  config::Path entry;
  entry.discover = options.portal;
  entry.source = options.source;
  const auto pc = discovery_path_config(cfg, entry);

  asio::io_context io;
  Answer answer;
  ask(io, pc, answer);
  run_until_answered(io, pc.login_timeout, {&answer});
  if (answer.ec) {
    std::cerr << failure_text(pc, answer) << "\n";
    return exit_failure;
  }
  // One line per portal, as `iscsiadm -m discovery` prints: ADDRESS:PORT,TPGT TARGET
  for (const auto& t : answer.targets) {
    if (t.portals.empty()) std::cout << "-  " << t.name << "\n";
    for (const auto& p : t.portals)
      std::cout << config::to_string(config::Portal{p.host, p.port}) << "," << p.portal_group_tag
                << " " << t.name << "\n";
  }
  if (!options.luns) return exit_ok;

  // Each target once, at its first reported portal (the discovery portal when it reports none),
  // with target.auth when the file gives it: `iscsi-ls -s`.
  int status = exit_ok;
  for (const auto& t : answer.targets) {
    config::Path path;
    path.source = options.source;
    path.portal = t.portals.empty()
                      ? options.portal
                      : config::Portal{t.portals.front().host, t.portals.front().port};
    config::Config for_target = cfg;
    for_target.target.iqn = t.name;
    const auto target_pc = options::path_config(for_target, path, iscsi_io::random_isid());
    std::cout << "\n" << t.name << " via " << iscsi_io::describe(target_pc) << "\n";
    std::vector<check_config::LunReport> luns;
    std::string detail;
    if (auto ec = check_config::list_luns(target_pc, luns, detail)) {
      std::cout << "  cannot list the LUNs: " << error_text(ec, detail) << "\n";
      status = exit_failure;
      continue;
    }
    for (const auto& [number, r] : luns) {
      std::cout << "  LUN " << number << "  ";
      if (!r.device.ok()) {
        std::cout << r.device.detail << "\n";
        continue;
      }
      std::cout << status::size_text(r.size_bytes) << " (" << r.size_bytes << " bytes, block "
                << r.block_size << ")  vendor " << r.vendor << "  product " << r.product
                << "  WWID " << (r.wwid.empty() ? "-" : r.wwid) << "\n";
    }
  }
  return status;
}

}  // namespace iscsi_mpio::discovery
