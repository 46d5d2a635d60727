// One iSCSI session over one TCP connection, driven on an Asio io_context: connect (bound to a
// source address), login (following redirects), full feature phase, logout. The protocol
// logic lives in iscsi's state machines; this file only moves bytes and keeps time.
//
// The header stays free of Asio so that the layers above compile quickly.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <iscsi/chap.hpp>
#include <iscsi/discovery.hpp>
#include <iscsi/negotiation.hpp>
#include <iscsi/session.hpp>
#include <iscsi/types.hpp>
#include <scsi/sense.hpp>

namespace boost::asio {
class io_context;
}

namespace iscsi_io {

struct PathConfig {
  std::string portal_host;
  uint16_t portal_port = 3260;
  std::optional<std::string> source_address;  // bind the TCP connection to this local address
  // SO_BINDTODEVICE: the connection leaves through this interface whatever the routing table
  // says (open-iscsi: iface.net_ifacename). Needs CAP_NET_RAW.
  std::optional<std::string> interface_name;
  std::string initiator_name;
  std::string target_name;  // empty for a discovery session
  iscsi::Isid isid;
  std::optional<iscsi::ChapCredentials> chap;
  std::vector<iscsi::ChapAlgorithm> chap_algorithms{iscsi::ChapAlgorithm::md5};
  iscsi::OperationalProposal proposal;
  std::chrono::milliseconds login_timeout{15000};  // iscsid.conf node.conn[0].timeo.login_timeout
  // Liveness (RFC 7143 §11.18): after this much silence from the target a NOP-Out ping goes
  // out; without any PDU from the target within noop_out_timeout the connection is declared
  // dead. Zero interval: no pings. Names follow iscsid.conf node.conn[0].timeo.*.
  std::chrono::milliseconds noop_out_interval{5000};
  std::chrono::milliseconds noop_out_timeout{5000};
  // A command outstanding this long gets ABORT TASK (RFC 7143 §11.5); a task management request
  // unanswered within noop_out_timeout (or refused) escalates to LOGICAL UNIT RESET, and that
  // to dropping the connection. Zero: commands never time out. (iscsid.conf
  // node.session.err_timeo.abort_timeout / lu_reset_timeout play the same part.)
  std::chrono::milliseconds command_timeout{30000};
  uint32_t max_tasks = 128;
  int max_redirects = 4;
};

// The timeouts of PathConfig that a running attach may change (iscsi-mpio reload). A login
// takes login_timeout when it starts; a session in full feature phase takes the other three in
// place (PathSession::set_timeouts): the command timeout from its next check, the NOP-Out
// interval and timeout from its next tick.
struct SessionTimeouts {
  std::chrono::milliseconds login_timeout;
  std::chrono::milliseconds noop_out_interval;
  std::chrono::milliseconds noop_out_timeout;
  std::chrono::milliseconds command_timeout;
  bool operator==(const SessionTimeouts&) const = default;
};
SessionTimeouts timeouts_of(const PathConfig& config);
void set_timeouts(PathConfig& config, const SessionTimeouts& timeouts);

// Human-readable name of a path for logs: "127.0.0.1:3260 from 127.0.0.2".
std::string describe(const PathConfig& config);

// A SCSI asynchronous event the target reported (RFC 7143 §11.9.1, AsyncEvent 0).
struct ScsiAsyncEvent {
  iscsi::Lun lun;
  std::vector<std::byte> sense;  // without the 2-byte SenseLength
  std::optional<scsi::Sense> decoded;

  // UNIT ATTENTION, CAPACITY DATA HAS CHANGED (SPC-4 Annex D, 2A/09): re-read the capacity.
  bool capacity_changed() const { return decoded && decoded->asc == 0x2a && decoded->ascq == 0x09; }
  // REPORTED LUNS DATA HAS CHANGED (3F/0E): LUNs were added or removed; run REPORT LUNS again.
  bool reported_luns_changed() const {
    return decoded && decoded->asc == 0x3f && decoded->ascq == 0x0e;
  }
};

class PathSession : public std::enable_shared_from_this<PathSession> {
 public:
  using LoginHandler = std::function<void(std::error_code, const std::string& detail)>;
  using FailureHandler = std::function<void(std::error_code, const std::string& detail)>;
  using ScsiEventHandler = std::function<void(const ScsiAsyncEvent&)>;

  static std::shared_ptr<PathSession> create(boost::asio::io_context& io, PathConfig config);
  ~PathSession();

  // Connects and logs in; `done` runs once, with an error that names the failure (a login
  // status such as "authentication failure (0201)", a connect error, or a timeout).
  void start(LoginHandler done);

  // Full feature phase only. The task's callback runs on the io_context. When the path is not
  // ready the task completes at once with errc::task_not_sent.
  void submit(iscsi::ScsiTask& task);
  // Logged in, connected, and not logging out.
  bool ready() const;

  // Task management on this path's session (iscsi::Session::abort_task / reset_lun). With the
  // path down: AbortStart::not_outstanding / false, and the handler is not called.
  iscsi::AbortStart abort_task(iscsi::ScsiTask& task, iscsi::TmfHandler done);
  bool reset_lun(iscsi::Lun lun, iscsi::TmfHandler done);
  // The task's data is no longer wanted (iscsi::Session::discard_data): from the moment this
  // returns, nothing more is written into its read buffer, a Data-In segment arriving right now
  // included. The task still completes as the target (or the connection's failure) says. False
  // when the path is down or the task is not outstanding here.
  bool discard_data(iscsi::ScsiTask& task);

  // Runs after a successful login when the connection fails; every outstanding task has
  // already completed by then (sent ones with the failure's code, unsent ones with
  // errc::task_not_sent). Codes the owner may see besides socket errors:
  //   errc::target_requested_logout   AsyncEvent 1: logged out at the target's request
  //   errc::target_dropped_connection AsyncEvent 2/3: the target is closing the connection
  //   errc::command_timeout           the ABORT TASK / LOGICAL UNIT RESET escalation ran out
  //   errc::connection_timeout        no answer to a NOP-Out ping
  // In every case the path is down and the owner reconnects (a new session).
  // Each call adds a handler (every LU device sharing the session has one); all run, once.
  void on_failure(FailureHandler handler);

  // SCSI asynchronous events (AsyncEvent 0), e.g. CAPACITY DATA HAS CHANGED, for any LU of the
  // session (ScsiAsyncEvent::lun says which); posted to the io_context. Each call adds a
  // handler.
  void on_scsi_event(ScsiEventHandler handler);

  // Session logout (§11.14) after outstanding tasks complete (tasks not yet sent complete with
  // errc::task_not_sent); `done` runs when the target answered, the connection dropped, or
  // `timeout` passed.
  void logout(std::chrono::milliseconds timeout, std::function<void(std::error_code)> done);
  // Abortive close (SO_LINGER 0), failing outstanding tasks.
  void close();

  const PathConfig& config() const;
  // iscsi-mpio reload: new timeouts for this session, in place (SessionTimeouts says when each
  // takes effect). A login in progress keeps the login timeout it started with.
  void set_timeouts(const SessionTimeouts& timeouts);
  // Valid after login.
  const iscsi::OperationalParams& negotiated() const;
  // TargetPortalGroupTag the target declared at login (RFC 7143 §13.9): sessions with the same
  // InitiatorName, ISID, TargetName and portal group are one I_T nexus.
  std::optional<uint16_t> target_portal_group_tag() const;

  // SendTargets=All over a discovery session on this path (RFC 7143 §4.3); for a PathSession
  // created with an empty target_name, instead of start().
  void discover(std::function<void(std::error_code, const std::string& detail,
                                   std::vector<iscsi::DiscoveredTarget>)>
                    done);

  struct Impl;

 private:
  explicit PathSession(std::unique_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

// A random ISID of the "random" type (RFC 7143 §10.12.5, T = 0b11).
iscsi::Isid random_isid();

}  // namespace iscsi_io
