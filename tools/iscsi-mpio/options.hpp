// How a configuration file becomes the options of each component attach starts: the LUN device
// with its paths (mpio), each path's login (iscsi_io), the NBD server and the kernel's nbd
// device (nbd_server, nbd_kernel). Pure functions, so that every key's way into its component is
// tested, and so that check-config logs in exactly as attach does.
#pragma once

#include <functional>
#include <string>
#include <system_error>
#include <vector>

#include <blockdev/block_device.hpp>
#include <config/config.hpp>
#include <iscsi_io/path_session.hpp>
#include <mpio/lun_device.hpp>
#include <nbd_kernel/kernel_device.hpp>
#include <nbd_server/server.hpp>

namespace iscsi_mpio::options {

// Where each path's ISID comes from: iscsi_io::random_isid in the program, a counter in tests.
using IsidSource = std::function<iscsi::Isid()>;

// The LUN, multipath policy and timers, and one LunPath per configured path in file order.
// Each path gets its own ISID: each path is its own session (I_T nexus) at the target.
mpio::LunConfig lun_config(const config::Config& cfg,
                           const IsidSource& make_isid = iscsi_io::random_isid);

// One LUN the attach serves, and what the configuration makes of it.
struct LunPlan {
  uint16_t lun = 0;
  std::string export_name;   // config::export_name_for
  std::string wwid;          // the identity it must present; empty: the first path decides
  config::NbdDevice device;  // nbd.device, or the LUN's own target.luns[].device
};

// A LUN REPORT LUNS lists, with the PERIPHERAL DEVICE TYPE its standard INQUIRY gives
// (SPC-4 §6.6.2; 0x00: a direct-access block device).
struct TargetLun {
  uint16_t lun = 0;
  uint8_t device_type = 0;
};

// Whether attach asks the target for its LUNs first: with target.luns (target.lun goes
// straight to its LUN, as it always has).
bool needs_lun_report(const config::Config& cfg);

// target.lun: its one plan. target.luns: the listed LUNs as the target reports them (`all`: every
// block-device LUN; a LUN of another type goes to `skipped`, one line each, for the log). A
// listed LUN the target does not have, or that is no block device, fails with
// std::errc::no_such_device and `detail` naming the LUNs the target has.
std::error_code lun_plans(const config::Config& cfg, const std::vector<TargetLun>& on_target,
                          std::vector<LunPlan>& plans, std::string& detail,
                          std::vector<std::string>& skipped);
// target.lun alone (no report needed).
LunPlan single_lun_plan(const config::Config& cfg);

// How the LUNs of one attach use the paths' sessions.
enum class Sessions {
  // One session per path for every LUN: the same ISID per path for all (generated once), so
  // that a session pool (LunConfig::sessions) gives them one session: an attach of 4 LUNs over
  // 2 paths holds 2 sessions at the target.
  shared,
  // Each LUN logs in its own sessions, with ISIDs of its own: without a pool, two LunDevices
  // logging in with one ISID through one portal group would reinstate each other's session
  // (RFC 7143 §6.3.5) for ever.
  own,
};

// One LunConfig per plan over the same paths, in the file's order, with ISIDs as `sessions`
// says.
std::vector<mpio::LunConfig> lun_configs(const config::Config& cfg,
                                         const std::vector<LunPlan>& plans, Sessions sessions,
                                         const IsidSource& make_isid = iscsi_io::random_isid);

// One path's login: portal, source address or interface, names, timeouts (seconds in the file,
// milliseconds here), digests and CHAP (with the mutual secret and the algorithms in the
// file's order of preference).
iscsi_io::PathConfig path_config(const config::Config& cfg, const config::Path& path,
                                 const iscsi::Isid& isid);
// target.login_timeout, target.command_timeout, multipath.noop_out_interval / noop_out_timeout:
// what path_config() gives every path, and what a reload gives the running ones.
iscsi_io::SessionTimeouts session_timeouts(const config::Config& cfg);

// nbd.listen and nbd.export_name; the description names the device and the LUN, for clients
// that show NBD_INFO_DESCRIPTION.
nbd::ServerOptions server_options(const config::Config& cfg, const blockdev::DeviceInfo& info);
// The same for one LUN of several: its export name and number.
nbd::ServerOptions server_options(const config::Config& cfg, const blockdev::DeviceInfo& info,
                                  const LunPlan& lun);

// The descriptors the NBD server keeps free below RLIMIT_NOFILE for everything but clients
// (nbd::ServerOptions::fd_reserve): a base for the control socket, its clients, metrics scrapes,
// netlink and files; two per path (its session's socket and a second while it logs in again or
// proves a lost session gone: sessions are shared, so paths count once whatever the LUNs); two
// per LUN with a /dev/nbdN (the device node and a netlink socket while it detaches or resizes,
// each LUN on its own thread at shutdown).
size_t fd_reserve(const config::Config& cfg, size_t kernel_devices);

// nbd.tls, one to one (the server loads the files the paths name when it starts).
nbd::TlsOptions tls_options(const config::NbdTls& tls);

// The word in ISCSI_MPIO_NBD_INTERFACE: "ioctl" or "netlink" forces that interface (for the
// guest test of the fallback); anything else, or nothing, lets the device choose.
nbd::KernelInterface kernel_interface(const char* forced);

// nbd.device: what the kernel's nbd driver learns about the export. The timeouts follow
// no_path_retry (nbd::kernel_timeouts), so the kernel never fails a request before mpio would.
nbd::KernelAttachOptions kernel_options(
    const config::Config& cfg, const blockdev::DeviceInfo& info,
    nbd::KernelInterface interface = nbd::KernelInterface::automatic);
// The same for one LUN of several: its device and number.
nbd::KernelAttachOptions kernel_options(const config::Config& cfg, const blockdev::DeviceInfo& info,
                                        const LunPlan& lun, nbd::KernelInterface interface);

// multipath.no_path_retry and multipath.failback as the file writes them ("queue", "12",
// "immediate"), for the status view.
std::string no_path_retry_text(const config::NoPathRetry& no_path_retry);
// multipath.hedged_reads for the reload's answer: "off" or "on, floor 100 ms, factor 3".
std::string hedged_reads_text(const mpio::HedgedReadPolicy& policy);
std::string failback_text(const config::Failback& failback);

}  // namespace iscsi_mpio::options
