// The command-line verbs that talk to a running attach through its control socket:
//   iscsi-mpio paths CONFIG [--json]        the paths with their counters
//   iscsi-mpio fail-path CONFIG ID          multipathd `fail path`
//   iscsi-mpio reinstate-path CONFIG ID     multipathd `reinstate path`
//   iscsi-mpio rescan CONFIG                iscsiadm -m session --rescan
//   iscsi-mpio reload CONFIG [--log-level L] multipathd reconfigure: CONFIG read again, applied
//   iscsi-mpio detach CONFIG                the end of the attach: flush and disconnect
//                                           /dev/nbdN, log out, wait until it has exited
// ID: the path number `paths` shows, or the path's portal HOST:PORT. Exit status 0 done,
// 1 refused by the attach or no attach running, 2 bad command line or configuration file.
#pragma once

#include <optional>
#include <string>

namespace CLI {
class App;
}

namespace iscsi_mpio::verbs {

class ControlVerbs {
 public:
  // Adds the subcommands to `app`.
  explicit ControlVerbs(CLI::App& app);
  // After parsing: the exit status when one of these verbs was given, else nothing.
  std::optional<int> run() const;

 private:
  CLI::App* paths_ = nullptr;
  CLI::App* fail_ = nullptr;
  CLI::App* reinstate_ = nullptr;
  CLI::App* rescan_ = nullptr;
  CLI::App* reload_ = nullptr;
  std::string log_level_;
  CLI::App* detach_ = nullptr;
  std::string config_path_;
  std::string id_;
  bool json_ = false;
};

}  // namespace iscsi_mpio::verbs
