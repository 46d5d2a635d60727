// The LUN behind one or more iSCSI paths, served as an mpio::BlockDevice.
//
// open() logs in, identifies the logical unit (INQUIRY, VPD 0x00/0x80/0x83/0xB0/0xB2, READ
// CAPACITY) and builds the DeviceInfo the NBD side advertises. submit() turns block requests
// into SBC commands (READ(16)/WRITE(16)/SYNCHRONIZE CACHE/UNMAP/WRITE SAME(16)), split by the
// LUN's limits, and maps their outcome to one error code.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <blockdev/block_device.hpp>
#include <blockdev/no_path_retry.hpp>
#include <iscsi_io/path_session.hpp>
#include <iscsi_io/session_pool.hpp>
#include <scsi/inquiry.hpp>

#include "mpio/hedged_read.hpp"
#include "mpio/path_group.hpp"
#include "mpio/path_lifecycle.hpp"

namespace boost::asio {
class io_context;
}

namespace mpio {

// The LUN device is a provider at the block-device boundary.
using blockdev::BlockDevice;
using blockdev::DeviceInfo;
using blockdev::IoOp;
using blockdev::IoRequest;
using blockdev::NoPathRetry;

struct LunPath {
  // Login parameters. Each path must have its own ISID: one ISID on two paths to the same
  // portal group would be one session, and the second login would end the first.
  iscsi_io::PathConfig login;
  // Grouping::failover: the path with the highest priority carries I/O; equal priorities go
  // by order.
  uint32_t priority = 0;
};

struct LunConfig {
  std::vector<LunPath> paths;
  uint16_t lun = 0;
  // The device every path must present (LunIdentity::wwid). Empty: the first path in order
  // that logs in defines it, and the others wait for that path's login to settle.
  std::string expected_wwid;
  Grouping grouping = Grouping::multibus;
  Failback failback;
  std::string path_selector = "round-robin";  // see mpio/path_selector.hpp
  uint32_t rr_min_io = 1;
  // Seconds between attempts to log in again on a failed path (multipath.conf
  // polling_interval); attempts back off to 8 intervals.
  std::chrono::milliseconds polling_interval{1000};
  NoPathRetry no_path_retry;
  // multipath.conf san_path_err_*: a path failing too often is held out (marginal_path.hpp).
  // Off by default.
  MarginalPathPolicy marginal_path;
  // A read outstanding too long on one path is sent again on another (hedged_read.hpp).
  HedgedReadPolicy hedged_reads;
  // Unit attention, BUSY and TASK SET FULL are retried this many times before the error goes
  // to the client (SPC-4 §5.14: a unit attention reports a condition, not a failed command).
  int max_retries = 8;
  // Upper bound on a single SCSI command's data, whatever the LUN allows (multipath.conf
  // max_sectors_kb). Zero: the built-in default for the target (target_quirks.hpp), else one
  // MaxBurstLength of the probed path's session, at most 8 MiB.
  uint32_t max_command_bytes = 0;
  // Where the paths' sessions come from. Devices of one target given the same pool and the
  // same PathConfig per path (ISID included) share one session per path, as the kernel puts
  // every LUN of a target on one session per iface. Null: the device has its own sessions.
  std::shared_ptr<iscsi_io::SessionPool> sessions;
};

// What the probe found out about the LU, for logs and status.
struct LunIdentity {
  std::string wwid;  // scsi::lu_identity: what every path must show, "" (none) included
  std::string serial;
  scsi::StandardInquiry inquiry;
  scsi::BlockLimits limits;
  bool has_block_limits = false;
  scsi::LogicalBlockProvisioning provisioning;
  bool has_provisioning = false;
  uint64_t blocks = 0;
};

struct PathStatus {
  std::string name;  // "198.18.1.1:3260 from 198.18.1.2"
  PathState state = PathState::connecting;
  uint32_t in_flight = 0;
  uint64_t commands = 0;  // completed on this path
  uint64_t bytes = 0;
  uint64_t errors = 0;  // transport failures seen
  uint64_t iops = 0;    // commands completed in the last second
  std::string last_error;
  uint32_t group = 0;     // paths with the same group share I/O
  uint32_t priority = 0;  // of the group: higher is used first
  bool group_in_use = false;
  std::string alua_state;  // "active/optimized", ...; empty when the target has no ALUA
  // Explicit ALUA: the last SET TARGET PORT GROUPS sent through this path and its outcome
  // ("SET TARGET PORT GROUPS: target port group 2 to active/optimized, done"); else empty.
  std::string alua_activation;
  // multipath.marginal_path: over san_path_err_threshold (held out now, or failed during its
  // hold), its failures counted within the window, and while held out the time until it is
  // reinstated.
  bool marginal = false;
  uint32_t marginal_failures = 0;
  std::chrono::milliseconds marginal_time_left{0};
  // Hedged reads sent on this path for a read stuck on another, and how many of them answered
  // first (their data was the reply).
  uint64_t hedges_sent = 0;
  uint64_t hedges_won = 0;
};

// The largest SCSI command's data, and where that figure came from (for the attach log).
struct CommandSize {
  uint32_t bytes = 0;
  std::string source;  // "one MaxBurstLength", "multipath.max_sectors_kb", ...
};

class LunDevice : public BlockDevice {
 public:
  using OpenHandler =
      std::function<void(std::error_code, const std::string& detail, std::shared_ptr<LunDevice>)>;

  // Logs in on the paths and probes the LU; `done` gets the device or an error naming the path
  // and the reason (login status, unreachable portal, no such LUN, ...).
  static void open(boost::asio::io_context& io, LunConfig config, OpenHandler done);

  ~LunDevice() override;
  const DeviceInfo& info() const override;
  void submit(IoRequest& request) override;

  const LunIdentity& identity() const;
  CommandSize command_size() const;
  Grouping grouping() const;
  std::vector<PathStatus> path_status() const;
  size_t requests_in_flight() const;

  // The first step of a shutdown: stop waiting for paths. Requests held for a usable path
  // (no_path_retry queue) or for proof that a write's first attempt is dead end with EIO now,
  // so a client draining its requests is not left waiting; failed paths stop reconnecting.
  void stop_queueing();
  // SYNCHRONIZE CACHE, then log out of every path. Requests still in flight complete first.
  void close(std::chrono::milliseconds timeout, std::function<void(std::error_code)> done);

  // Every path state change after open, with its reason, for logs and status.
  void on_path_event(
      std::function<void(const std::string& path, PathState state, const std::string& reason)>
          handler);

  // The operator's `multipathd fail path` / `reinstate path`, by index into path_status().
  // fail_path stops new I/O on the path at once (commands in flight complete) and keeps it
  // failed until reinstate_path, which checks the path's identity before it carries I/O again.
  // An error (unknown index, refused path) comes with a detail for the operator.
  std::error_code fail_path(size_t index, std::string& detail);
  std::error_code reinstate_path(size_t index, std::string& detail);

  // iscsi-mpio reload (multipathd reconfigure), on the io_context's thread (a path is added
  // with add_path below):
  //
  // remove_path: the path by its index into path_status() leaves. New commands avoid it at once;
  // the ones in flight on it finish (a write lost with it is proven dead and re-issued
  // elsewhere, as at a failure); then it leaves path_status(), `drained` gets the index it had
  // (the paths after it move up one), and it lets go of its session (the last device out logs
  // it out; `released` runs then). Errors: no such path, or it is being removed already.
  std::error_code remove_path(size_t index, std::string& detail,
                              std::function<void(size_t index)> drained,
                              std::function<void(std::error_code)> released);
  // The login, command and NOP-Out timeouts of every path (iscsi_io::SessionTimeouts says
  // when each takes effect): the next login uses the new login timeout, a session logged in
  // takes the others in place. Sessions shared with other LUNs' devices get the same values.
  void set_timeouts(const iscsi_io::SessionTimeouts& timeouts);
  // The settings of `settings` that can change under I/O: path_selector, rr_min_io, grouping,
  // failback, polling_interval, no_path_retry and hedged_reads (the rest of it is ignored). A new
  // grouping places every logged-in path again; requests waiting for a path follow the new
  // no_path_retry. std::errc::invalid_argument for an unknown path selector, nothing changed.
  std::error_code reconfigure(const LunConfig& settings, std::string& detail);
  // Paths being removed whose commands have not finished yet.
  size_t paths_draining() const;

  // The LU's capacity changed (2A/09): info().size_bytes has the new size.
  void on_capacity_change(std::function<void(uint64_t size_bytes)> handler);
  // A path added after open (by a reload, or a portal that discovery reports now): it logs in
  // (through the session pool, so every LUN given the same LunPath shares its session), its
  // identity is checked as a reconnecting path's is, and it joins its path group and carries
  // I/O; path_status() lists it last. Only a reload takes a path away (remove_path); one that
  // stops working fails and is retried as any other. Its index, or nullopt once the device is
  // shutting down.
  std::optional<size_t> add_path(LunPath path);

  // One READ CAPACITY(16) now rather than at the next polling interval (the operator's rescan,
  // as `iscsiadm -m session --rescan` re-reads each disk's size); a change goes to the
  // on_capacity_change handler. Does nothing before the LU is identified or while no path is
  // active.
  void check_capacity();

  // The target said its LUN inventory changed (REPORTED LUNS DATA HAS CHANGED, SPC-4 3F/0E,
  // as a unit attention on a command or an asynchronous event): whoever serves the target's
  // LUNs should run REPORT LUNS again. May run once per path for one change.
  void on_luns_changed(std::function<void()> handler);

  // Every command the target answered, on the path with this index into path_status() (the
  // ones PathStatus::commands counts), with its time from submission to the response: for
  // latency histograms. Runs on the io_context's thread; keep it cheap.
  void on_command_done(
      std::function<void(size_t path_index, std::chrono::nanoseconds latency)> handler);

  struct Impl;

 private:
  explicit LunDevice(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace mpio
