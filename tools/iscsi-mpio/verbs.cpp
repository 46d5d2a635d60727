#include "verbs.hpp"

#include <CLI/CLI.hpp>
#include <chrono>
#include <fstream>
#include <iostream>
#include <thread>

#include <config/config.hpp>

#include "control.hpp"
#include "exit_status.hpp"
#include "reload_apply.hpp"

namespace iscsi_mpio::verbs {
namespace {

// One request to the attach the configuration file names; prints the answer and returns the
// exit status. "error: ..." answers go to stderr.
int ask(const std::string& config_path, const std::string& request) {
  auto loaded = config::load_file(config_path);
  if (!loaded) {
    std::cerr << loaded.error_report();
    return exit_usage;
  }
  const std::string& socket = loaded.config().control.socket;
  std::string answer, detail;
  if (control::ask(socket, request, answer, detail)) {
    std::cerr << detail << "\n";
    return exit_failure;
  }
  if (answer.rfind("error:", 0) == 0) {
    std::cerr << answer;
    return exit_failure;
  }
  std::cout << answer;
  return exit_ok;
}

// Whether process `pid` still runs: /proc/PID exists and is not a zombie (an attach that has
// exited stays one until whoever started it reaps it).
bool running(const std::string& pid) {
  std::ifstream stat("/proc/" + pid + "/stat");
  std::string line;
  if (!stat || !std::getline(stat, line)) return false;
  const auto close = line.rfind(')');
  return close == std::string::npos || close + 2 >= line.size() || line[close + 2] != 'Z';
}

// `detach`: the attach answers "ok: detaching ... (pid N)" and then shuts down; the verb
// returns once that process is gone, so that a script (or ExecStop=) can go on to what needs
// the device disconnected and the sessions logged out.
int detach(const std::string& config_path) {
  auto loaded = config::load_file(config_path);
  if (!loaded) {
    std::cerr << loaded.error_report();
    return exit_usage;
  }
  std::string answer, detail;
  if (control::ask(loaded.config().control.socket, "detach", answer, detail)) {
    std::cerr << detail << "\n";
    return exit_failure;
  }
  if (answer.rfind("error:", 0) == 0) {
    std::cerr << answer;
    return exit_failure;
  }
  std::cout << answer << std::flush;
  const auto at = answer.rfind("(pid ");
  if (at == std::string::npos) return exit_ok;
  const std::string pid = answer.substr(at + 5, answer.find(')', at) - at - 5);
  // The shutdown is bounded (drain, a 10 s flush and disconnect per device, logout): 180 s is
  // far beyond it.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(180);
  while (running(pid)) {
    if (std::chrono::steady_clock::now() > deadline) {
      std::cerr << "error: the attach (pid " << pid << ") is still running 180 s later\n";
      return exit_failure;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::cout << "detached\n";
  return exit_ok;
}

}  // namespace

ControlVerbs::ControlVerbs(CLI::App& app) {
  const char* config_help = "the attach's YAML configuration file";
  const char* id_help = "the path number as `paths` shows it, or the path's portal HOST:PORT";
  paths_ = app.add_subcommand("paths", "list the paths of a running attach with their counters");
  paths_->add_option("config", config_path_, config_help)->required();
  paths_->add_flag("--json", json_, "machine-readable output");
  fail_ =
      app.add_subcommand("fail-path",
                         "stop I/O on a path of a running attach until reinstate-path (multipathd "
                         "fail path)");
  fail_->add_option("config", config_path_, config_help)->required();
  fail_->add_option("id", id_, id_help)->required();
  reinstate_ = app.add_subcommand(
      "reinstate-path",
      "put a path failed with fail-path back to work (multipathd reinstate path)");
  reinstate_->add_option("config", config_path_, config_help)->required();
  reinstate_->add_option("id", id_, id_help)->required();
  rescan_ = app.add_subcommand(
      "rescan",
      "ask the target of a running attach of target.luns for its LUNs now: new LUNs are served "
      "under `luns: all`, LUNs gone are retired (iscsiadm -m session --rescan)");
  rescan_->add_option("config", config_path_, config_help)->required();
  reload_ = app.add_subcommand(
      "reload",
      "apply a changed configuration file to its running attach without dropping I/O: paths "
      "added or removed (drained first), multipath settings; a key that cannot change in place "
      "is refused by name and nothing is applied (multipathd reconfigure, systemctl reload)");
  reload_->add_option("config", config_path_, config_help)->required();
  reload_->add_option("--log-level", log_level_,
                      "also set the attach's log level: trace, debug, info, warn, error");
  detach_ = app.add_subcommand(
      "detach",
      "end a running attach: flush and disconnect its /dev/nbdN, log out, and wait until it has "
      "exited (iscsiadm --logout; SIGTERM instead leaves /dev/nbdN to the next attach)");
  detach_->add_option("config", config_path_, config_help)->required();
}

std::optional<int> ControlVerbs::run() const {
  if (*paths_) return ask(config_path_, json_ ? "paths" : "paths table");
  if (*rescan_) return ask(config_path_, "rescan");
  if (*reload_) {
    // The attach is found through the file's control.socket: a file that does not load
    // reaches no attach, which goes on unchanged (SIGHUP makes the attach itself say so).
    if (auto loaded = config::load_file(config_path_); !loaded) {
      std::cerr << "error: " << config_path_
                << " has errors, nothing applied (a running attach goes on unchanged):\n"
                << loaded.error_report();
      return exit_usage;
    }
    if (!log_level_.empty() && !reload::valid_log_level(log_level_)) {
      std::cerr << "reload: unknown log level '" << log_level_
                << "' (trace, debug, info, warn, error, critical, off)\n";
      return exit_usage;
    }
    // The attach reads the file itself: the one it was started with, by its path.
    return ask(config_path_, log_level_.empty() ? "reload" : "reload " + log_level_);
  }
  if (*detach_) return detach(config_path_);
  const char* verb = *fail_ ? "fail-path" : *reinstate_ ? "reinstate-path" : nullptr;
  if (verb == nullptr) return std::nullopt;
  if (std::string detail; control::check_path_id(id_, detail)) {
    std::cerr << verb << ": " << detail << "\n";
    return exit_usage;
  }
  return ask(config_path_, std::string(verb) + " " + id_);
}

}  // namespace iscsi_mpio::verbs
