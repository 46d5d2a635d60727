// How a configuration file becomes the options of each component attach starts: the LUN device
// with its paths (mpio), each path's login (iscsi_io), the NBD server and the kernel's nbd
// device (nbd_server, nbd_kernel). Pure functions, so that every key's way into its component is
// tested, and so that check-config logs in exactly as attach does.
#pragma once

#include <functional>
#include <string>

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

// One path's login: portal, source address or interface, names, timeouts (seconds in the file,
// milliseconds here), digests and CHAP (with the mutual secret and the algorithms in the
// file's order of preference).
iscsi_io::PathConfig path_config(const config::Config& cfg, const config::Path& path,
                                 const iscsi::Isid& isid);

// nbd.listen and nbd.export_name; the description names the device and the LUN, for clients
// that show NBD_INFO_DESCRIPTION.
nbd::ServerOptions server_options(const config::Config& cfg, const blockdev::DeviceInfo& info);

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

// multipath.no_path_retry and multipath.failback as the file writes them ("queue", "12",
// "immediate"), for the status view.
std::string no_path_retry_text(const config::NoPathRetry& no_path_retry);
std::string failback_text(const config::Failback& failback);

}  // namespace iscsi_mpio::options
