// One iSCSI session per path, shared by every logical unit that uses the path.
//
// A target counts sessions per initiator (and often limits them), and an I_T nexus carries the
// commands of every LU behind it: open-iscsi logs in once per (portal, iface) and the kernel
// puts every LUN of the target on that session. The pool does the same for the LUN devices of
// one attach: a device asks for its path's session, and gets the one already logged in, joins
// the login in progress, or starts a new login.
//
// Which logins may run at once matters for write safety. A login with a path's ISID and TSIH 0
// reinstates the path's previous session at the target and ends every task it still had
// (RFC 7143 §6.3.5): that is how a device proves a failed path's writes dead. Two logins with
// one ISID at once would end each other, so per path the pool runs one at a time: the path's
// own login, or a proof login through another portal of the same portal group, never both.
//
// Runs on one io_context; no call may come from another thread. Asio stays in the .cpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <system_error>

#include "iscsi_io/path_session.hpp"

namespace boost::asio {
class io_context;
}

namespace iscsi_io {

// Sessions of one path are numbered in login order; 0 is "none yet". A device remembers the
// number of the session its commands went out on.
using SessionGeneration = uint64_t;

class SessionPool {
 public:
  using SessionHandler = std::function<void(std::error_code, const std::string& detail,
                                            std::shared_ptr<PathSession>, SessionGeneration)>;
  using ProofHandler = std::function<void(std::error_code, const std::string& detail)>;

  static std::shared_ptr<SessionPool> create(boost::asio::io_context& io);
  ~SessionPool();
  SessionPool(const SessionPool&) = delete;
  SessionPool& operator=(const SessionPool&) = delete;

  // A device will use the path `config` names (same portal, source, interface, names and
  // ISID: the same I_T nexus). Once per device and path; release() ends it.
  void join(const PathConfig& config);

  // The path's session: the current one (`done` posted at once) when it is ready, else the
  // login in progress, else a new login once no proof login of the path runs. Every device
  // that asks while one login runs gets that login's outcome. `done` always runs, on the
  // io_context. Returns the session `done` will report, so that the device can close() it to
  // cut a login short (every device waiting on it then gets the failure); null while the
  // login waits behind a proof login.
  std::shared_ptr<PathSession> acquire(const PathConfig& config, SessionHandler done);

  // Proof that the session numbered `failed` of this path ended at the target, for a device
  // that holds writes sent on it:
  //   - a later session of the path logged in: its login reinstated the failed one; done now;
  //   - the path's own login is in progress: its outcome is the answer;
  //   - else a login with the path's ISID through `via` (another portal of the same portal
  //     group) reinstates it, and is logged out again.
  // An error means not proven: the writes stay held.
  void prove_ended(const PathConfig& config, SessionGeneration failed, const PathConfig& via,
                   ProofHandler done);

  // The device is done with the path. When no device uses it any more the session logs out
  // (within `timeout`); `done` runs when that is over, or at once when others still use it.
  void release(const PathConfig& config, std::chrono::milliseconds timeout,
               std::function<void(std::error_code)> done);

  // Sessions logged in now, over all paths: what the target counts.
  size_t sessions_logged_in() const;

  // A session logged in now, for a question about the target as a whole (REPORT LUNS, SPC-4
  // §6.33, at LUN 0) asked beside the devices' commands; null when no path is up.
  std::shared_ptr<PathSession> ready_session() const;

  // Local link, address and route changes (RouteWatch) for the pool's devices: one netlink
  // socket however many LUNs share the pool, where one per device cost a descriptor each.
  // `on_change` runs on the io_context after each burst of changes until the returned handle
  // is released; the last handle released closes the socket.
  [[nodiscard]] std::shared_ptr<void> watch_routes(std::function<void()> on_change);

  struct Impl;

 private:
  explicit SessionPool(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

// What makes two path configurations one I_T nexus for the pool: portal, source, interface,
// initiator and target names, and ISID.
std::string nexus_key(const PathConfig& config);

}  // namespace iscsi_io
