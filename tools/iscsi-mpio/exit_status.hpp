// The exit statuses of iscsi-mpio, the same for every verb: scripts and systemd units tell a
// configuration to fix from a target to wait for by them.
#pragma once

namespace iscsi_mpio {

inline constexpr int exit_ok = 0;
// The target or the network failed (login refused, portal unreachable, LUN missing), or a
// running attach refused the request.
inline constexpr int exit_failure = 1;
inline constexpr int exit_usage = 2;  // bad command line or configuration file
// A second SIGINT or SIGTERM cut the shutdown short (128 + SIGINT, as a shell reports it).
inline constexpr int exit_interrupted = 130;

}  // namespace iscsi_mpio
