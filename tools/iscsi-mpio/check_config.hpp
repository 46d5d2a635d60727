// iscsi-mpio check-config: before a first attach (or after a network change), log in on every
// path of a configuration on its own, read the device each one presents, and say what would
// make the attach fail or the multipath weaker than it looks: a path that cannot connect or
// log in, paths that reach different devices, two paths that are one NIC, jumbo frames on one
// path only.
//
// The report (assess, render, exit_code) is pure and unit-tested; run() does the probing on
// an Asio io_context (check_config_probe.cpp).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

namespace iscsi_mpio::check_config {

constexpr int exit_ok = 0;
constexpr int exit_problem = 1;  // a path is unusable, or the paths disagree
constexpr int exit_usage = 2;    // bad command line or configuration

// One step of a path's probe. `summary` fills the table cell ("ok", "refused", "timeout",
// "authentication failure"); `detail` is the whole message, for the findings below the table.
struct Step {
  enum class Outcome { not_tried, ok, failed };
  Outcome outcome = Outcome::not_tried;
  std::string summary;
  std::string detail;

  bool ok() const { return outcome == Outcome::ok; }
  bool failed() const { return outcome == Outcome::failed; }
};

// What one path showed, in the order of the configuration's `paths`.
struct PathReport {
  std::string name;                      // iscsi_io::describe(): "198.18.1.1:3260 from 198.18.1.2"
  std::optional<std::string> interface;  // the local interface it leaves through; unknown: none
  std::optional<uint32_t> mtu;           // that interface's MTU
  Step connect;                          // TCP connect from the path's source / interface
  Step login;                            // iSCSI login (CHAP, negotiation)
  Step device;                           // INQUIRY, VPD 0x00 / 0x83 / 0x80, READ CAPACITY
  std::string wwid;                      // scsi::lu_identity, as status shows it; "" for none
  std::string vendor;
  std::string product;
  uint64_t size_bytes = 0;
  uint32_t block_size = 0;  // 0: size unknown (the LU refused READ CAPACITY on this port)
  // Usable, but worth a warning (e.g. an ALUA standby port that reports no capacity).
  std::vector<std::string> notes;

  bool usable() const { return connect.ok() && login.ok() && device.ok(); }
};

struct Finding {
  enum class Severity { warning, error };
  Severity severity = Severity::error;
  std::vector<size_t> paths;  // indexes into the reports this finding is about
  std::string message;
};

// The findings, errors before warnings: each failed step; each path's notes; paths presenting
// different devices (or not `expected_wwid`, target.wwid, when it is set); two or more paths
// leaving through one interface; MTU differing between the interfaces of the paths; one device
// with different sizes.
std::vector<Finding> assess(const std::vector<PathReport>& paths, const std::string& expected_wwid);

// exit_ok when there is no error (and, with `strict`, no warning either), else exit_problem.
int exit_code(const std::vector<Finding>& findings, bool strict);

// The table (one row per path: path, interface, MTU, connect, login, WWID, size, verdict),
// then one line per finding ("error: ..." / "warning: ..."), then a summary line. A path whose
// connect was not tried (--offline) is "not probed".
std::string render(const std::vector<PathReport>& paths, const std::vector<Finding>& findings);

// "512M", "1.5G".
std::string size_text(uint64_t bytes);

struct Options {
  bool strict = false;   // warnings fail too
  bool offline = false;  // no traffic: validate, then only the local facts (interface, MTU)
};

// The verb: loads `config_path` (errors to `err`, exit_usage), probes every path at once, each
// with its own session logging in as attach would (options::path_config), logs each out, and
// writes render() to `out`. Returns the exit status.
int run(const std::string& config_path, const Options& options, std::ostream& out,
        std::ostream& err);

}  // namespace iscsi_mpio::check_config
