// The NBD export as a Linux block device (/dev/nbdN) through the kernel's nbd driver.
//
// The kernel is an NBD client that speaks only the transmission phase (proto.md "Transmission"):
// it gets one end of a connected AF_UNIX socketpair together with the export's size, block size
// and transmission flags, and the Server serves the other end (Server::serve_connected). Setup
// goes through generic netlink (family "nbd", Linux >= 4.12); the ioctl interface (NBD_SET_SOCK
// ... NBD_DO_IT in a thread of its own) is the fallback where that family is absent.
//
// No Asio and no logging here: the netlink messages are built and parsed by pure functions
// (namespace nbd::netlink, tested as bytes), and errors come back as kernel_errc codes with a
// human-readable detail that names what to do.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <blockdev/no_path_retry.hpp>

namespace nbd {

enum class kernel_errc {
  module_missing = 1,  // no "nbd" netlink family and no /dev/nbd*: the module is not loaded
  not_permitted,       // EPERM: configuring an NBD device needs CAP_SYS_ADMIN
  device_busy,         // the /dev/nbdN asked for is connected already
  no_such_device,      // /dev/nbdN does not exist (ioctl interface, N >= nbds_max)
  unsupported_export,  // a block size or size the driver cannot take
  netlink_protocol,    // an answer from the kernel we could not parse, or none in time
  kernel_refused,      // any other error from the driver (its reason is in dmesg)
};

const std::error_category& kernel_category() noexcept;

inline std::error_code make_error_code(kernel_errc e) noexcept {
  return {static_cast<int>(e), kernel_category()};
}

enum class KernelInterface { automatic, netlink, ioctl };
std::string_view kernel_interface_name(KernelInterface interface) noexcept;

struct KernelTimeouts {
  std::chrono::seconds request{0};          // NBD_ATTR_TIMEOUT / NBD_SET_TIMEOUT; 0 = never
  std::chrono::seconds dead_connection{0};  // NBD_ATTR_DEAD_CONN_TIMEOUT
  friend bool operator==(const KernelTimeouts&, const KernelTimeouts&) = default;
};

// The kernel must never fail a request before no_path_retry would (see kernel_device.cpp for
// the derivation): request timeout 0, dead-connection timeout mirroring no_path_retry.
KernelTimeouts kernel_timeouts(const blockdev::NoPathRetry& no_path_retry,
                               std::chrono::milliseconds polling_interval) noexcept;

// The 36500 days the dead-connection wait lasts under no_path_retry queue: the driver has no
// "forever" for it, and this stays far below LONG_MAX jiffies at any HZ.
inline constexpr std::chrono::seconds kDeadConnectionForever{36500LL * 24 * 3600};

// max_sectors_kb for the device: requests up to the LUN's maximum transfer reach the bridge
// whole (the block layer's default would cut them at 1280 KiB or less), bounded by the driver's
// max_hw_sectors_kb and never below one 4 KiB page. max_transfer_bytes 0 = unknown: use the
// hardware limit.
uint32_t max_sectors_kb_for(uint32_t max_transfer_bytes, uint32_t max_hw_sectors_kb) noexcept;

// "/dev/nbdN" -> N; nullopt for anything else.
std::optional<uint32_t> parse_nbd_device_path(std::string_view path) noexcept;

struct KernelAttachOptions {
  std::optional<uint32_t> index;  // /dev/nbdN; nullopt: the first free device
  uint64_t size_bytes = 0;
  uint32_t block_size = 512;        // the logical block size; the driver takes 512..4096
  uint16_t transmission_flags = 0;  // nbd::transmission_flags(info, false): simple replies
  uint32_t max_transfer_bytes = 0;  // see max_sectors_kb_for()
  KernelTimeouts timeouts;
  // One connection: with several the driver requeues a request that exceeds its timer onto
  // another connection and marks the first dead, whatever the timeout (nbd_xmit_timeout).
  unsigned connections = 1;
  std::string backend_identifier;  // /sys/block/nbdN/backend (netlink only)
  KernelInterface interface = KernelInterface::automatic;
};

// An NBD device as /sys/block/nbdN shows it, for adopt().
struct DeviceSeen {
  uint32_t index = 0;
  std::string backend{};             // /sys/block/nbdN/backend; empty when unset
  std::optional<std::string> pid{};  // /sys/block/nbdN/pid: present while it is configured
  bool owner_alive = false;          // that pid is a running process
};

// The device a dead attach of the same export left configured: the one with our backend
// identifier whose configuring process is gone (with `index` set, only that one). nullopt when
// there is none: a device whose owner still runs is in use, not left.
std::optional<uint32_t> left_by_dead_attach(const std::vector<DeviceSeen>& devices,
                                            std::string_view backend_identifier,
                                            std::optional<uint32_t> index) noexcept;

class KernelDevice {
 public:
  // Takes ownership of `fd`, our end of one socketpair, and serves it in the transmission
  // phase; an error aborts the attach.
  using ServeSocket = std::function<std::error_code(int fd, std::string& detail)>;
  using DetachHandler = std::function<void(std::error_code, const std::string& detail)>;

  // Creates the socketpairs, hands our ends to `serve`, connects the kernel's ends to the
  // device and raises its max_sectors_kb. Blocks for at most a few seconds; does no I/O on the
  // device itself, so it may run on the thread that serves the sockets. On failure returns
  // nullptr and sets `ec` and `detail`.
  static std::unique_ptr<KernelDevice> attach(const KernelAttachOptions& options,
                                              const ServeSocket& serve, std::error_code& ec,
                                              std::string& detail);

  // The restart half of attach(): an attach of the same export that was killed (SIGKILL, a
  // crash, an OOM kill) leaves /dev/nbdN configured, and the driver holds its I/O for up to
  // the dead-connection timeout. adopt() finds that device by its backend identifier (netlink
  // only) and gives it new connections with NBD_CMD_RECONFIGURE; the driver then sends the
  // requests it held, and the file systems on it never see the gap. Returns nullptr with `ec`
  // clear when no such device exists (then attach() as usual), or with `ec` set when one
  // exists and the driver refused it.
  static std::unique_ptr<KernelDevice> adopt(const KernelAttachOptions& options,
                                             const ServeSocket& serve, std::error_code& ec,
                                             std::string& detail);
  bool adopted() const noexcept;

  // Disconnects if detach() was never called, without the flush: nothing may serve the sockets
  // any more by then.
  ~KernelDevice();
  KernelDevice(const KernelDevice&) = delete;
  KernelDevice& operator=(const KernelDevice&) = delete;

  uint32_t index() const noexcept;
  std::string path() const;  // "/dev/nbdN"
  KernelInterface interface() const noexcept;
  uint32_t max_sectors_kb() const noexcept;  // 0 when it could not be set (see notes())
  // Non-fatal problems met since the last call (a sysfs value not written, the device still
  // mounted at detach), for the caller to log.
  std::vector<std::string> take_notes();

  // The LU's capacity changed: /dev/nbdN takes the new size in place (NBD_CMD_RECONFIGURE with
  // NBD_ATTR_SIZE_BYTES, or NBD_SET_SIZE), so that a mounted file system can grow (resize2fs)
  // or the kernel stops sending requests past a shrunken end. A mounted device keeps working.
  // Talks only to the driver (no I/O on the device); does nothing once detached.
  std::error_code resize(uint64_t size_bytes, std::string& detail);

  // A restart's end (SIGTERM): lets go of /dev/nbdN without disconnecting it. Once the
  // sockets served for it are closed (nbd::Server::release_connected), the driver holds the
  // device's I/O for the dead-connection timeout, and the next attach of the same export takes
  // it over (adopt()); if none comes in time, the driver fails the I/O with EIO. Only a device
  // connected through netlink with a backend identifier can be found again:
  // std::errc::operation_not_supported otherwise (the ioctl interface's device ends with the
  // process), with `detail` saying why; then detach() it. Talks to nobody: no flush (the
  // writes are the kernel's to resend), no netlink. The destructor leaves the device alone
  // afterwards.
  std::error_code leave(std::string& detail);
  bool can_leave() const noexcept;
  std::chrono::seconds dead_connection_timeout() const noexcept;

  // Flushes what was written to the device (syncfs on its mounts, fsync on the device), then
  // disconnects it: the driver sends NBD_CMD_DISC and lets go of the sockets. Blocks until the
  // device is released (bounded); the sockets must still be served meanwhile, so never call it
  // on the thread that serves them: use detach_async there.
  std::error_code detach(std::string& detail);
  // detach() on a thread of its own (signals blocked); `done` runs on that thread and must not
  // destroy this object. Called once.
  void detach_async(DetachHandler done);

  struct Impl;

 private:
  explicit KernelDevice(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The generic netlink messages of the nbd family (include/uapi/linux/nbd-netlink.h), as pure
// functions over bytes. Netlink fields are in host byte order (netlink(7)); attributes are
// padded to 4 bytes (NLA_ALIGN).
namespace netlink {

// CTRL_CMD_GETFAMILY to the generic netlink controller: resolves "nbd" to its family id.
std::vector<std::byte> get_family_request(std::string_view family_name, uint32_t seq);

struct ConnectRequest {
  std::optional<uint32_t> index;  // NBD_ATTR_INDEX; absent: the kernel picks a free device
  uint64_t size_bytes = 0;
  uint64_t block_size = 512;
  uint64_t server_flags = 0;  // the transmission flags (proto.md "Transmission flags")
  uint64_t timeout_seconds = 0;
  uint64_t dead_connection_timeout_seconds = 0;
  std::vector<int> socket_fds;     // NBD_ATTR_SOCKETS { NBD_SOCK_ITEM { NBD_SOCK_FD } ... }
  std::string backend_identifier;  // NBD_ATTR_BACKEND_IDENTIFIER; empty: omitted
};
std::vector<std::byte> connect_request(uint16_t family_id, uint32_t seq,
                                       const ConnectRequest& request);
std::vector<std::byte> disconnect_request(uint16_t family_id, uint32_t seq, uint32_t index);

// NBD_CMD_RECONFIGURE that gives a device left by a dead attach new connections.
struct ReconnectRequest {
  uint32_t index = 0;
  uint64_t size_bytes = 0;
  uint64_t dead_connection_timeout_seconds = 0;
  std::vector<int> socket_fds;
  std::string backend_identifier;  // the device's: the driver refuses any other
};
std::vector<std::byte> reconnect_request(uint16_t family_id, uint32_t seq,
                                         const ReconnectRequest& request);
// NBD_CMD_RECONFIGURE with the device's new NBD_ATTR_SIZE_BYTES, naming the backend identifier
// the device was connected with (empty: none).
std::vector<std::byte> resize_request(uint16_t family_id, uint32_t seq, uint32_t index,
                                      uint64_t size_bytes, std::string_view backend_identifier);

// What the kernel answered to request `seq`, gathered over one or more recv() buffers.
struct Reply {
  bool complete = false;       // the NLMSG_ERROR (ack or error) or NLMSG_DONE for `seq` arrived
  int error = 0;               // errno from NLMSG_ERROR; 0 = success
  std::string kernel_message;  // extended ack NLMSGERR_ATTR_MSG, if the kernel gave one
  std::optional<uint16_t> family_id;  // CTRL_ATTR_FAMILY_ID of a controller answer
  std::optional<uint32_t> index;      // NBD_ATTR_INDEX of the nbd family's connect answer
};

// Adds what `buffer` holds for `seq` to `reply`; messages for other sequence numbers are
// skipped. Never reads out of bounds: a truncated or inconsistent buffer is
// kernel_errc::netlink_protocol.
std::error_code parse_reply(std::span<const std::byte> buffer, uint32_t seq, Reply& reply);

}  // namespace netlink
}  // namespace nbd

template <>
struct std::is_error_code_enum<nbd::kernel_errc> : std::true_type {};
