// The control socket's requests (one line in, one answer out) and the client side the CLI
// verbs use. Requests:
//   tree | json          the status view (status.hpp); with several LUNs one block per map /
//                        a JSON array of the maps
//   paths                JSON list of the paths with their counters
//   paths table          the same as a table for people (`iscsi-mpio paths` without --json)
//   stats                JSON object: per-path counters, failovers, latency; NBD requests/errors
//   fail-path ID         multipathd `fail path`: no new I/O on the path until reinstate-path,
//                        on every LUN the path carries (the answer names each LUN's outcome)
//   reinstate-path ID    multipathd `reinstate path`, on every LUN likewise
//   rescan               target.luns: REPORT LUNS now (iscsiadm -m session --rescan)
//   reload [LEVEL]       multipathd reconfigure: the configuration file read again and applied
//                        (reload_apply.hpp), with LEVEL the new log level; "ok: ..." lists what
//                        changed, "error: ..." why nothing did
//   detach               the end of the attach (iscsiadm --logout): flush and disconnect every
//                        /dev/nbdN, drain, log out, exit; the answer names the attach's pid
// ID is the 1-based path number `paths` shows, or the path's portal HOST:PORT. fail-path and
// reinstate-path answer "ok: DETAIL" or "error: DETAIL"; an unknown request gets "error: ...".
// No Asio here: the listening side is in service.cpp.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <config/names.hpp>

#include "status.hpp"

namespace iscsi_mpio::control {

// Longest request line the listener reads (a fail-path with an IPv6 portal fits easily).
inline constexpr size_t max_request_line = 256;
// Connections the listener serves at once. Each lasts at most its exchange time (service.cpp);
// one more is answered `busy_answer` and closed, so that idle clients cannot take the file
// descriptors the paths and the NBD clients need.
inline constexpr size_t max_connections = 16;
inline constexpr std::string_view busy_answer =
    "error: too many control connections at once (16): try again in a few seconds\n";

// What requests see and change in the running attach; service.cpp fills it from the LunDevice,
// the NBD server and the metrics collector. Called on the io_context's thread.
struct Backend {
  // The first (or only) LUN's view: the path IDs go by it (every LUN has the same paths in
  // the same order).
  std::function<status::Snapshot()> snapshot;
  // An attach of several LUNs (target.luns): every map, for `tree`, `json` and `paths`. Unset:
  // one LUN.
  std::function<std::vector<status::Snapshot>()> snapshots;
  std::vector<config::Portal> portals;  // of each path, in path order (the configuration's)
  std::function<std::string()> stats_json;
  std::function<std::error_code(size_t index, std::string& detail)> fail_path;
  std::function<std::error_code(size_t index, std::string& detail)> reinstate_path;
  // `rescan` (iscsiadm -m session --rescan): starts a REPORT LUNS; the answer says so. Unset:
  // an attach of one LUN, which has nothing to rescan.
  std::function<std::string()> rescan;
  // `reload [LEVEL]`: the argument is the log level, or empty. Unset: not served.
  std::function<std::string(const std::string& log_level)> reload;
  // `detach`: starts the shutdown that disconnects every /dev/nbdN (SIGTERM leaves them for the
  // next attach); the answer says so. Unset: not serving yet.
  std::function<std::string()> detach;
};

// The answer to one request line (without its newline). Always ends with a newline.
std::string respond(std::string_view request, const Backend& backend);

// `paths`: [{"index":1,"name":...,"portal":...,"state":...}, ...].
std::string render_paths_json(const std::vector<mpio::PathStatus>& paths,
                              const std::vector<config::Portal>& portals);

// `paths table`: one line per path, the last error under a path that has one.
std::string render_paths_table(const std::vector<mpio::PathStatus>& paths);

// Several LUNs (target.luns): every map. JSON: one object per (LUN, path), LUN by LUN, each with
// "lun" and "export" beside the fields above ("index" is the path number fail-path takes, the
// same for every LUN). Table: a "LUN N  export 'NAME'  WWID W" line above each map's table.
std::string render_paths_json(const std::vector<status::Snapshot>& maps,
                              const std::vector<config::Portal>& portals);
std::string render_paths_table(const std::vector<status::Snapshot>& maps);

// A path ID as the CLI takes it: a path number from 1, or a portal HOST:PORT (port required).
// std::errc::invalid_argument, with the reason in `detail`, when it is neither.
std::error_code check_path_id(std::string_view id, std::string& detail);

// Which path (0-based, into `index`) `id` names among the paths with these names and portals
// (in path order). Failures, with the reason and the paths to choose from in `detail`:
// std::errc::invalid_argument for an ID that is malformed or a portal several paths share,
// std::errc::no_such_device for a number or portal no path has.
std::error_code resolve_path_id(std::string_view id, const std::vector<std::string>& names,
                                const std::vector<config::Portal>& portals, size_t& index,
                                std::string& detail);

// ---- client side

// Sends `request` to the attach on the unix socket `path` and reads its whole answer.
// An error (nothing listens, no answer in `timeout`) comes with a detail for the user.
std::error_code ask(const std::string& path, std::string_view request, std::string& answer,
                    std::string& detail,
                    std::chrono::milliseconds timeout = std::chrono::seconds(10));

// Who listens on the unix socket `path`: "pid N: COMMAND LINE" (from SO_PEERCRED and
// /proc/N/cmdline), "an unknown process" when that cannot be read, or nothing when no
// process answers (no such file, not a socket, or a stale socket nobody listens on).
std::optional<std::string> live_listener(const std::string& path);

}  // namespace iscsi_mpio::control
