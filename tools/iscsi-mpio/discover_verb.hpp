// iscsi-mpio discover PORTAL [--source ADDR] [--config FILE] [--chap-username USER
//   --chap-secret-file FILE] [--luns]: the targets a portal reports (SendTargets=All), one line
// per portal as `iscsiadm -m discovery -t st` prints them; with --luns, a login to each target
// and one line per LUN with its size, vendor, product and WWID, as `iscsi-ls -s` lists them.
// Discovery CHAP comes from the file's target.discovery_auth, or from the options (which win);
// the logins of --luns use the file's target.auth and initiator.name.
#pragma once

#include <optional>
#include <string>

#include <config/names.hpp>

namespace iscsi_mpio::discovery {

struct VerbOptions {
  config::Portal portal;
  std::optional<std::string> source;
  std::string initiator_name;                // empty: the file's, else a generated one
  std::optional<std::string> config_path;    // target.discovery_auth, target.auth, initiator
  std::optional<std::string> chap_username;  // discovery CHAP, with chap_secret_file
  std::optional<std::string> chap_secret_file;
  bool luns = false;
};

// The verb; returns the exit status (exit_status.hpp).
int run_verb(const VerbOptions& options);

}  // namespace iscsi_mpio::discovery
