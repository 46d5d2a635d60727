#include "nbd_kernel/kernel_device.hpp"

#include <fcntl.h>
#include <linux/genetlink.h>
#include <linux/nbd-netlink.h>
#include <linux/nbd.h>
#include <linux/netlink.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <thread>
#include <utility>

namespace nbd {

// ---- error category -----------------------------------------------------------------------

namespace {

class KernelCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "nbd-kernel"; }
  std::string message(int value) const override {
    switch (static_cast<kernel_errc>(value)) {
      case kernel_errc::module_missing:
        return "the nbd kernel module is not loaded (modprobe nbd)";
      case kernel_errc::not_permitted:
        return "configuring an NBD device needs CAP_SYS_ADMIN";
      case kernel_errc::device_busy:
        return "the NBD device is in use";
      case kernel_errc::no_such_device:
        return "no such NBD device";
      case kernel_errc::unsupported_export:
        return "the nbd driver cannot take this export";
      case kernel_errc::netlink_protocol:
        return "unexpected answer on the nbd netlink interface";
      case kernel_errc::kernel_refused:
        return "the nbd driver refused the request";
    }
    return "unknown nbd kernel error";
  }
};

std::error_code errno_code(int value) {
  return {value, std::system_category()};
}

}  // namespace

const std::error_category& kernel_category() noexcept {
  static const KernelCategory category;
  return category;
}

std::string_view kernel_interface_name(KernelInterface interface) noexcept {
  switch (interface) {
    case KernelInterface::automatic:
      return "automatic";
    case KernelInterface::netlink:
      return "netlink";
    case KernelInterface::ioctl:
      return "ioctl";
  }
  return "?";
}

// ---- pure rules ---------------------------------------------------------------------------

// The kernel must never give up on a request before multipath no_path_retry does.
//
// Request timeout (NBD_ATTR_TIMEOUT): 0. The bridge answers every request it reads: with a
// usable path when the target answers (a dead path is failed over within noop_out_interval +
// noop_out_timeout), without one as no_path_retry says (fail: EIO at once; N: EIO after
// N x polling_interval; queue: held until a path returns). So a request may rightly stay
// unanswered for any time up to "forever" under queue, and for N x polling_interval plus a
// failover plus the target's own service time otherwise, which no fixed bound covers. A finite
// timeout T lets the driver act first: at T it marks the connection dead, requeues the
// request and fails it once the dead-connection timeout passes (drivers/block/nbd.c,
// nbd_xmit_timeout), while the bridge still holds it. With 0 the driver (Linux >= 5.4, "nbd:
// fix zero cmd timeout handling") logs "Possible stuck request" every 30 s and keeps waiting,
// but only with a single connection: hence KernelAttachOptions::connections = 1.
//
// Dead-connection timeout (NBD_ATTR_DEAD_CONN_TIMEOUT): counts only once every connection is
// closed, i.e. the bridge process itself is gone; the driver then holds new requests this long
// for a reconnect before failing them. To the kernel the bridge is the path, so it mirrors
// no_path_retry: fail -> 0, N -> N x polling_interval (rounded up), queue -> "forever".
KernelTimeouts kernel_timeouts(const blockdev::NoPathRetry& no_path_retry,
                               std::chrono::milliseconds polling_interval) noexcept {
  KernelTimeouts timeouts;
  timeouts.request = std::chrono::seconds{0};
  switch (no_path_retry.mode) {
    case blockdev::NoPathRetry::Mode::fail:
      timeouts.dead_connection = std::chrono::seconds{0};
      break;
    case blockdev::NoPathRetry::Mode::queue:
      timeouts.dead_connection = kDeadConnectionForever;
      break;
    case blockdev::NoPathRetry::Mode::intervals: {
      const auto hold = polling_interval * std::max<uint32_t>(no_path_retry.intervals, 1);
      timeouts.dead_connection =
          std::max(std::chrono::ceil<std::chrono::seconds>(hold), std::chrono::seconds{1});
      break;
    }
  }
  return timeouts;
}

uint32_t max_sectors_kb_for(uint32_t max_transfer_bytes, uint32_t max_hw_sectors_kb) noexcept {
  constexpr uint32_t kPageKb = 4;
  uint32_t kb = max_transfer_bytes / 1024;
  if (kb == 0) kb = max_hw_sectors_kb;
  if (max_hw_sectors_kb != 0) kb = std::min(kb, max_hw_sectors_kb);
  return std::max(kb, kPageKb);
}

std::optional<uint32_t> parse_nbd_device_path(std::string_view path) noexcept {
  constexpr std::string_view prefix = "/dev/nbd";
  if (!path.starts_with(prefix)) return std::nullopt;
  const std::string_view digits = path.substr(prefix.size());
  // Plain decimal without leading zeros: "/dev/nbd01" names no device node.
  if (digits.empty() || digits.size() > 7 || (digits.size() > 1 && digits[0] == '0')) {
    return std::nullopt;
  }
  uint32_t index = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
  if (ec != std::errc{} || end != digits.data() + digits.size()) return std::nullopt;
  return index;
}

// ---- netlink messages ---------------------------------------------------------------------
//
// Hand-written on purpose, not libnl-genl-3 (which nbd-client uses). We send three requests
// (CTRL_CMD_GETFAMILY, NBD_CMD_CONNECT, NBD_CMD_DISCONNECT) and read one kind of answer; that
// is the ~200 lines below, pure functions over bytes. With libnl:
// - the unit tests (tests/unit/nbd_kernel) could no longer pin each message and reply as an
//   exact byte vector without a kernel; libnl builds messages inside its own nl_msg and parses
//   replies inside nl_recvmsgs() callbacks on a socket. The kernel's nbd driver is only
//   reachable in the QEMU guest test, so the byte tests are what catches a wrong attribute.
// - the errno and the kernel's extended-ack text (NLMSGERR_ATTR_MSG, which we show the
//   operator) come back through libnl's NLE_* codes only with a custom error callback that
//   walks the same struct nlmsgerr parse_error_message() reads here, so little code goes away.
// - the runtime image gains two libraries (libnl-genl-3-200, libnl-3-200) for a code path that
//   runs once per attach and once per detach.
// The socket side (GenericNetlink below) is a sendto() and a bounded recv() loop; libnl's
// nl_send_auto() and nl_recvmsgs_default() would replace about thirty lines of it.

namespace netlink {
namespace {

constexpr size_t kMessageHeaderSize = sizeof(nlmsghdr);  // 16
constexpr size_t kGenlHeaderSize = GENL_HDRLEN;          // 4
constexpr size_t kAttributeHeaderSize = NLA_HDRLEN;      // 4
constexpr uint8_t kCtrlVersion = 1;

constexpr size_t align4(size_t n) {
  return (n + 3) & ~size_t{3};
}

// Netlink is host byte order: memcpy keeps that without casts through packed structs.
template <class T>
void append(std::vector<std::byte>& out, T value) {
  std::byte raw[sizeof(T)];
  std::memcpy(raw, &value, sizeof(T));
  out.insert(out.end(), raw, raw + sizeof(T));
}

template <class T>
void overwrite(std::vector<std::byte>& out, size_t offset, T value) {
  std::memcpy(out.data() + offset, &value, sizeof(T));
}

// Precondition: offset + sizeof(T) <= in.size().
template <class T>
T load(std::span<const std::byte> in, size_t offset) {
  T value;
  std::memcpy(&value, in.data() + offset, sizeof(T));
  return value;
}

void pad(std::vector<std::byte>& out) {
  out.resize(align4(out.size()), std::byte{0});
}

// One generic netlink request: nlmsghdr, genlmsghdr, then attributes.
class Message {
 public:
  Message(uint16_t family, uint8_t command, uint8_t version, uint32_t seq) {
    append<uint32_t>(bytes_, 0);  // nlmsg_len, set by finish()
    append<uint16_t>(bytes_, family);
    append<uint16_t>(bytes_, NLM_F_REQUEST | NLM_F_ACK);
    append<uint32_t>(bytes_, seq);
    append<uint32_t>(bytes_, 0);  // nlmsg_pid: 0 lets the kernel fill in our port id
    bytes_.push_back(std::byte{command});
    bytes_.push_back(std::byte{version});
    append<uint16_t>(bytes_, 0);  // reserved
  }

  void u32(uint16_t type, uint32_t value) { attribute(type, &value, sizeof value); }
  void u64(uint16_t type, uint64_t value) { attribute(type, &value, sizeof value); }
  void string(uint16_t type, std::string_view value) {
    std::vector<std::byte> text(value.size() + 1, std::byte{0});  // NLA_STRING wants the NUL
    std::memcpy(text.data(), value.data(), value.size());
    attribute(type, text.data(), text.size());
  }
  size_t begin_nested(uint16_t type) {
    const size_t at = bytes_.size();
    append<uint16_t>(bytes_, 0);
    append<uint16_t>(bytes_, static_cast<uint16_t>(type | NLA_F_NESTED));
    return at;
  }
  void end_nested(size_t at) {
    overwrite<uint16_t>(bytes_, at, static_cast<uint16_t>(bytes_.size() - at));
  }
  std::vector<std::byte> finish() {
    overwrite<uint32_t>(bytes_, 0, static_cast<uint32_t>(bytes_.size()));
    return std::move(bytes_);
  }

 private:
  void attribute(uint16_t type, const void* data, size_t size) {
    append<uint16_t>(bytes_, static_cast<uint16_t>(kAttributeHeaderSize + size));
    append<uint16_t>(bytes_, type);
    const auto* raw = static_cast<const std::byte*>(data);
    bytes_.insert(bytes_.end(), raw, raw + size);
    pad(bytes_);
  }

  std::vector<std::byte> bytes_;
};

// Calls visit(type, payload) for each attribute; a length that runs past the end is an error.
template <class Visit>
std::error_code for_each_attribute(std::span<const std::byte> in, Visit&& visit) {
  size_t offset = 0;
  while (in.size() - offset >= kAttributeHeaderSize) {
    const uint16_t length = load<uint16_t>(in, offset);
    const uint16_t type = load<uint16_t>(in, offset + 2) & NLA_TYPE_MASK;
    if (length < kAttributeHeaderSize || length > in.size() - offset) {
      return kernel_errc::netlink_protocol;
    }
    visit(type, in.subspan(offset + kAttributeHeaderSize, length - kAttributeHeaderSize));
    offset = std::min(in.size(), offset + align4(length));
  }
  return {};
}

std::string c_string(std::span<const std::byte> payload) {
  const auto* chars = reinterpret_cast<const char*>(payload.data());
  return std::string(chars, strnlen(chars, payload.size()));
}

std::error_code parse_error_message(std::span<const std::byte> message, uint16_t flags,
                                    Reply& reply) {
  // struct nlmsgerr: int error, then the request's nlmsghdr (and with it, unless
  // NLM_F_CAPPED, the whole request), then extended-ack attributes if NLM_F_ACK_TLVS.
  constexpr size_t kErrorAt = kMessageHeaderSize;
  constexpr size_t kEchoAt = kErrorAt + sizeof(int32_t);
  if (message.size() < kEchoAt) return kernel_errc::netlink_protocol;
  const int64_t error = load<int32_t>(message, kErrorAt);
  reply.error = static_cast<int>(error < 0 ? -error : error);
  reply.complete = true;
  if ((flags & NLM_F_ACK_TLVS) == 0) return {};
  if (message.size() < kEchoAt + kMessageHeaderSize) return kernel_errc::netlink_protocol;
  const size_t echoed =
      (flags & NLM_F_CAPPED) ? kMessageHeaderSize : size_t{load<uint32_t>(message, kEchoAt)};
  if (echoed < kMessageHeaderSize || echoed > message.size() - kEchoAt) {
    return kernel_errc::netlink_protocol;
  }
  const size_t tlv_at = std::min(message.size(), kEchoAt + align4(echoed));
  return for_each_attribute(message.subspan(tlv_at),
                            [&](uint16_t type, std::span<const std::byte> payload) {
                              if (type == NLMSGERR_ATTR_MSG)
                                reply.kernel_message = c_string(payload);
                            });
}

// NBD_ATTR_SOCKETS { NBD_SOCK_ITEM { NBD_SOCK_FD } ... }
void add_sockets(Message& message, const std::vector<int>& fds) {
  const size_t sockets = message.begin_nested(NBD_ATTR_SOCKETS);
  for (const int fd : fds) {
    const size_t item = message.begin_nested(NBD_SOCK_ITEM);
    message.u32(NBD_SOCK_FD, static_cast<uint32_t>(fd));
    message.end_nested(item);
  }
  message.end_nested(sockets);
}

}  // namespace

std::vector<std::byte> get_family_request(std::string_view family_name, uint32_t seq) {
  Message message(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, kCtrlVersion, seq);
  message.string(CTRL_ATTR_FAMILY_NAME, family_name);
  return message.finish();
}

std::vector<std::byte> connect_request(uint16_t family_id, uint32_t seq,
                                       const ConnectRequest& request) {
  Message message(family_id, NBD_CMD_CONNECT, NBD_GENL_VERSION, seq);
  if (request.index) message.u32(NBD_ATTR_INDEX, *request.index);
  message.u64(NBD_ATTR_SIZE_BYTES, request.size_bytes);
  message.u64(NBD_ATTR_BLOCK_SIZE_BYTES, request.block_size);
  message.u64(NBD_ATTR_SERVER_FLAGS, request.server_flags);
  message.u64(NBD_ATTR_TIMEOUT, request.timeout_seconds);
  message.u64(NBD_ATTR_DEAD_CONN_TIMEOUT, request.dead_connection_timeout_seconds);
  add_sockets(message, request.socket_fds);
  if (!request.backend_identifier.empty()) {
    message.string(NBD_ATTR_BACKEND_IDENTIFIER, request.backend_identifier);
  }
  return message.finish();
}

std::vector<std::byte> resize_request(uint16_t family_id, uint32_t seq, uint32_t index,
                                      uint64_t size_bytes, std::string_view backend_identifier) {
  // The driver takes a new size in NBD_CMD_RECONFIGURE since Linux 5.3; the block size stays
  // what the connect set when the attribute is absent. A device connected with a backend
  // identifier is reconfigured only by a request naming the same one (EINVAL otherwise).
  Message message(family_id, NBD_CMD_RECONFIGURE, NBD_GENL_VERSION, seq);
  message.u32(NBD_ATTR_INDEX, index);
  message.u64(NBD_ATTR_SIZE_BYTES, size_bytes);
  if (!backend_identifier.empty()) message.string(NBD_ATTR_BACKEND_IDENTIFIER, backend_identifier);
  return message.finish();
}

std::vector<std::byte> reconnect_request(uint16_t family_id, uint32_t seq,
                                         const ReconnectRequest& request) {
  // nbd_genl_reconfigure: each socket replaces a dead connection of the device; the size and
  // the dead-connection timeout are the new attach's (the LU may have been resized meanwhile).
  Message message(family_id, NBD_CMD_RECONFIGURE, NBD_GENL_VERSION, seq);
  message.u32(NBD_ATTR_INDEX, request.index);
  message.u64(NBD_ATTR_SIZE_BYTES, request.size_bytes);
  message.u64(NBD_ATTR_DEAD_CONN_TIMEOUT, request.dead_connection_timeout_seconds);
  add_sockets(message, request.socket_fds);
  if (!request.backend_identifier.empty())
    message.string(NBD_ATTR_BACKEND_IDENTIFIER, request.backend_identifier);
  return message.finish();
}

std::vector<std::byte> disconnect_request(uint16_t family_id, uint32_t seq, uint32_t index) {
  Message message(family_id, NBD_CMD_DISCONNECT, NBD_GENL_VERSION, seq);
  message.u32(NBD_ATTR_INDEX, index);
  return message.finish();
}

std::error_code parse_reply(std::span<const std::byte> buffer, uint32_t seq, Reply& reply) {
  size_t offset = 0;
  while (offset < buffer.size()) {
    if (buffer.size() - offset < kMessageHeaderSize) return kernel_errc::netlink_protocol;
    const uint32_t length = load<uint32_t>(buffer, offset);
    const uint16_t type = load<uint16_t>(buffer, offset + 4);
    const uint16_t flags = load<uint16_t>(buffer, offset + 6);
    const uint32_t message_seq = load<uint32_t>(buffer, offset + 8);
    if (length < kMessageHeaderSize || length > buffer.size() - offset) {
      return kernel_errc::netlink_protocol;
    }
    const auto message = buffer.subspan(offset, length);
    offset = std::min(buffer.size(), offset + align4(length));
    if (message_seq != seq) continue;
    if (type == NLMSG_ERROR) {
      if (auto ec = parse_error_message(message, flags, reply)) return ec;
    } else if (type == NLMSG_DONE) {
      reply.complete = true;
    } else if (type >= NLMSG_MIN_TYPE) {
      if (message.size() < kMessageHeaderSize + kGenlHeaderSize) {
        return kernel_errc::netlink_protocol;
      }
      const bool controller = type == GENL_ID_CTRL;
      auto ec = for_each_attribute(message.subspan(kMessageHeaderSize + kGenlHeaderSize),
                                   [&](uint16_t attribute, std::span<const std::byte> payload) {
                                     if (controller && attribute == CTRL_ATTR_FAMILY_ID &&
                                         payload.size() >= sizeof(uint16_t)) {
                                       reply.family_id = load<uint16_t>(payload, 0);
                                     } else if (!controller && attribute == NBD_ATTR_INDEX &&
                                                payload.size() >= sizeof(uint32_t)) {
                                       reply.index = load<uint32_t>(payload, 0);
                                     }
                                   });
      if (ec) return ec;
    }
  }
  return {};
}

}  // namespace netlink

// ---- the system side ----------------------------------------------------------------------

namespace {

using namespace std::chrono_literals;

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~UniqueFd() { reset(); }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

std::string device_path(uint32_t index) {
  return "/dev/nbd" + std::to_string(index);
}
std::string sysfs_dir(uint32_t index) {
  return "/sys/block/nbd" + std::to_string(index);
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

std::optional<std::string> read_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  return line;
}

std::error_code write_text(const std::string& path, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno_code(errno);
  const ssize_t n = ::write(fd, text.data(), text.size());
  const int saved = errno;
  ::close(fd);
  if (n < 0) return errno_code(saved);
  return {};
}

// Who holds /dev/nbdN: its sysfs `pid` exists exactly while the device is connected.
std::optional<std::string> holder_of(uint32_t index) {
  const auto pid = read_line(sysfs_dir(index) + "/pid");
  if (!pid) return std::nullopt;
  std::string who = "pid " + *pid;
  if (const auto comm = read_line("/proc/" + *pid + "/comm")) who += " (" + *comm + ")";
  if (const auto backend = read_line(sysfs_dir(index) + "/backend"); backend && !backend->empty()) {
    who += ", backend '" + *backend + "'";
  }
  return who;
}

std::string busy_detail(uint32_t index, const std::optional<std::string>& holder) {
  return device_path(index) + " is in use" + (holder ? " by " + *holder : std::string()) +
         ": choose another device with nbd.device (or auto); if its owner is gone, free it with "
         "`nbd-client -d " +
         device_path(index) + "`";
}

std::string permission_detail(std::string_view what) {
  return std::string(what) + " needs CAP_SYS_ADMIN: run iscsi-mpio attach as root";
}

std::string module_missing_detail() {
  return "the nbd kernel module is not loaded: run `modprobe nbd` (or set nbd.device: none)";
}

// Signals must never land on a thread that sits in NBD_DO_IT: the driver's wait there is
// interruptible and a signal tears the device down. Threads started while this lives inherit
// a mask that blocks them all.
class BlockAllSignals {
 public:
  BlockAllSignals() {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &saved_);
  }
  ~BlockAllSignals() { pthread_sigmask(SIG_SETMASK, &saved_, nullptr); }
  BlockAllSignals(const BlockAllSignals&) = delete;
  BlockAllSignals& operator=(const BlockAllSignals&) = delete;

 private:
  sigset_t saved_{};
};

class GenericNetlink {
 public:
  std::error_code open() {
    fd_ = UniqueFd(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC));
    if (!fd_) return errno_code(errno);
    // Bounded: the kernel answers at once or not at all.
    timeval timeout{5, 0};
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    int on = 1;  // best effort: the driver's own reason for an EINVAL, where it gives one
    ::setsockopt(fd_.get(), SOL_NETLINK, NETLINK_EXT_ACK, &on, sizeof on);
    seq_ = static_cast<uint32_t>(::time(nullptr));
    return {};
  }

  uint32_t next_seq() { return ++seq_; }

  // open() for a request to an attached device: a failure says what could not be opened.
  std::error_code open(std::string& detail) {
    auto ec = open();
    if (ec) detail = "cannot open a generic netlink socket: " + ec.message();
    return ec;
  }

  // One request, built by `make` for its sequence number, and the kernel's answer in `reply`.
  // An error here is the exchange's (`what` names it in `detail`); the kernel's own refusal is
  // reply.error, for the caller to word.
  std::error_code ask(const std::function<std::vector<std::byte>(uint32_t seq)>& make,
                      const std::string& what, netlink::Reply& reply, std::string& detail) {
    const uint32_t seq = next_seq();
    auto ec = transact(make(seq), seq, reply);
    if (ec) detail = what + ": " + ec.message();
    return ec;
  }

  std::error_code transact(const std::vector<std::byte>& request, uint32_t seq,
                           netlink::Reply& reply) {
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (::sendto(fd_.get(), request.data(), request.size(), 0,
                 reinterpret_cast<const sockaddr*>(&kernel), sizeof kernel) < 0) {
      return errno_code(errno);
    }
    std::vector<std::byte> buffer(64 * 1024);
    while (!reply.complete) {
      const ssize_t n = ::recv(fd_.get(), buffer.data(), buffer.size(), 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return kernel_errc::netlink_protocol;
        return errno_code(errno);
      }
      if (auto ec = netlink::parse_reply({buffer.data(), static_cast<size_t>(n)}, seq, reply)) {
        return ec;
      }
    }
    return {};
  }

  // The "nbd" family's id, or ENOENT when the driver (or its netlink side) is absent.
  std::error_code resolve_family(uint16_t& family_id) {
    const uint32_t seq = next_seq();
    netlink::Reply reply;
    if (auto ec = transact(netlink::get_family_request(NBD_GENL_FAMILY_NAME, seq), seq, reply)) {
      return ec;
    }
    if (reply.error != 0) return errno_code(reply.error);
    if (!reply.family_id) return kernel_errc::netlink_protocol;
    family_id = *reply.family_id;
    return {};
  }

 private:
  UniqueFd fd_;
  uint32_t seq_ = 0;
};

// mountinfo writes space, tab, newline and backslash in paths as \ooo octal escapes.
std::string unescape_mount_path(std::string_view escaped) {
  std::string out;
  for (size_t i = 0; i < escaped.size(); ++i) {
    const bool octal = escaped[i] == '\\' && i + 4 <= escaped.size() &&
                       std::all_of(escaped.begin() + i + 1, escaped.begin() + i + 4,
                                   [](char c) { return c >= '0' && c <= '7'; });
    if (octal) {
      out.push_back(static_cast<char>((escaped[i + 1] - '0') * 64 + (escaped[i + 2] - '0') * 8 +
                                      (escaped[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(escaped[i]);
    }
  }
  return out;
}

// Mount points of /dev/nbdN and its partitions, from /proc/self/mountinfo (field 3 is
// major:minor, field 5 the mount point).
std::vector<std::string> mounts_of(uint32_t index) {
  std::vector<std::string> devices;
  const std::string dir = sysfs_dir(index);
  if (const auto dev = read_line(dir + "/dev")) devices.push_back(*dev);
  for (int partition = 1; partition <= 16; ++partition) {
    const auto dev =
        read_line(dir + "/nbd" + std::to_string(index) + "p" + std::to_string(partition) + "/dev");
    if (dev) devices.push_back(*dev);
  }
  std::vector<std::string> mounts;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, dev, root, mount_point;
    if (!(fields >> id >> parent >> dev >> root >> mount_point)) continue;
    if (std::find(devices.begin(), devices.end(), dev) != devices.end()) {
      mounts.push_back(unescape_mount_path(mount_point));
    }
  }
  return mounts;
}

}  // namespace

struct KernelDevice::Impl {
  uint32_t index = 0;
  KernelInterface interface = KernelInterface::netlink;
  uint32_t max_sectors_kb = 0;
  uint16_t family_id = 0;          // netlink
  std::string connected_pid;       // /sys/block/nbdN/pid right after the attach: the driver's owner
  std::string backend_identifier;  // netlink: what the connect named, for reconfigure
  bool adopted = false;            // reconnected a device a dead attach left (adopt())
  std::chrono::seconds dead_connection{0};  // what the connect or the takeover set

  // ioctl: the open device and the thread parked in NBD_DO_IT. The thread shares only this
  // state, so it may outlive us in the one case where the driver never lets it return.
  struct DoIt {
    std::mutex mutex;
    std::condition_variable changed;
    bool finished = false;
    int error = 0;

    bool wait_for(std::chrono::milliseconds limit) {
      std::unique_lock lock(mutex);
      return changed.wait_for(lock, limit, [&] { return finished; });
    }
    bool done() {
      std::lock_guard lock(mutex);
      return finished;
    }
  };
  UniqueFd device_fd;
  std::thread do_it_thread;
  std::shared_ptr<DoIt> do_it = std::make_shared<DoIt>();

  void start_do_it() {
    BlockAllSignals blocked;
    do_it_thread = std::thread([state = do_it, fd = device_fd.get()] {
      const int result = ::ioctl(fd, NBD_DO_IT);
      const int error = result < 0 ? errno : 0;
      std::lock_guard lock(state->mutex);
      state->finished = true;
      state->error = error;
      state->changed.notify_all();
    });
  }

  std::mutex mutex;  // notes, attached
  std::vector<std::string> notes;
  bool attached = true;
  std::thread detach_thread;

  void note(std::string text) {
    std::lock_guard lock(mutex);
    notes.push_back(std::move(text));
  }

  void tune_queue(uint32_t max_transfer_bytes) {
    const std::string queue = sysfs_dir(index) + "/queue/";
    uint32_t hw_kb = 0;
    if (const auto text = read_line(queue + "max_hw_sectors_kb")) {
      std::from_chars(text->data(), text->data() + text->size(), hw_kb);
    }
    const uint32_t kb = max_sectors_kb_for(max_transfer_bytes, hw_kb);
    if (auto ec = write_text(queue + "max_sectors_kb", std::to_string(kb))) {
      note("cannot set " + queue + "max_sectors_kb to " + std::to_string(kb) + ": " + ec.message() +
           "; large requests reach the LUN split");
      return;
    }
    max_sectors_kb = kb;
  }

  // Whatever the device holds in memory goes to the LUN before the driver lets go of it.
  void flush() {
    const auto mounts = mounts_of(index);
    for (const auto& mount_point : mounts) {
      note(device_path(index) + " is still mounted on " + mount_point +
           " at detach: flushed it, later writes there fail");
      UniqueFd dir(::open(mount_point.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (dir) ::syncfs(dir.get());
    }
    if (device_fd) {
      ::fsync(device_fd.get());
      return;
    }
    UniqueFd device(::open(device_path(index).c_str(), O_RDONLY | O_CLOEXEC));
    if (device) ::fsync(device.get());
  }

  bool wait_until(std::chrono::milliseconds limit, const std::function<bool()>& condition) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!condition()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(20ms);
    }
    return true;
  }

  std::error_code detach(bool flush_first, std::string& detail) {
    {
      std::lock_guard lock(mutex);
      if (!attached) return {};
      attached = false;
    }
    if (flush_first) flush();
    return interface == KernelInterface::netlink ? detach_netlink(detail) : detach_ioctl(detail);
  }

  // The device may have been disconnected behind our back (nbd-client -d) and connected again
  // by someone else: then it is theirs, and left alone.
  bool still_ours() {
    const auto pid = read_line(sysfs_dir(index) + "/pid");
    if (!pid) {
      note(device_path(index) + " was already disconnected by someone else");
      return false;
    }
    if (*pid != connected_pid) {
      note(device_path(index) + " now belongs to pid " + *pid + ": left connected");
      return false;
    }
    return true;
  }

  std::error_code detach_netlink(std::string& detail) {
    if (!still_ours()) return {};
    GenericNetlink netlink;
    netlink::Reply reply;
    if (auto ec = netlink.open(detail)) return ec;
    if (auto ec = netlink.ask(
            [&](uint32_t seq) { return netlink::disconnect_request(family_id, seq, index); },
            "NBD_CMD_DISCONNECT for " + device_path(index), reply, detail))
      return ec;
    if (reply.error != 0) {
      detail = "NBD_CMD_DISCONNECT for " + device_path(index) + ": " + std::strerror(reply.error);
      return reply.error == EPERM ? std::error_code(kernel_errc::not_permitted)
                                  : errno_code(reply.error);
    }
    if (!wait_until(10s, [&] { return !exists(sysfs_dir(index) + "/pid"); })) {
      note(device_path(index) + " still reports a connection 10 s after NBD_CMD_DISCONNECT " +
           "(something holds it open)");
    }
    return {};
  }

  std::error_code resize(uint64_t size_bytes, std::string& detail) {
    {
      std::lock_guard lock(mutex);
      if (!attached) return {};
    }
    if (interface == KernelInterface::ioctl) {
      // NBD_SET_SIZE on a running device sets the capacity and tells the block layer.
      if (::ioctl(device_fd.get(), NBD_SET_SIZE, static_cast<unsigned long>(size_bytes)) < 0) {
        detail = "NBD_SET_SIZE on " + device_path(index) + ": " + std::strerror(errno);
        return errno_code(errno);
      }
      return {};
    }
    GenericNetlink netlink;
    netlink::Reply reply;
    if (auto ec = netlink.open(detail)) return ec;
    if (auto ec = netlink.ask(
            [&](uint32_t seq) {
              return netlink::resize_request(family_id, seq, index, size_bytes, backend_identifier);
            },
            "NBD_CMD_RECONFIGURE for " + device_path(index), reply, detail))
      return ec;
    if (reply.error != 0) {
      detail = "NBD_CMD_RECONFIGURE (size) for " + device_path(index) +
               " refused: " + std::strerror(reply.error);
      return reply.error == EPERM ? std::error_code(kernel_errc::not_permitted)
                                  : errno_code(reply.error);
    }
    return {};
  }

  std::error_code detach_ioctl(std::string& detail) {
    if (do_it->done()) {
      // Disconnected behind our back: the device is no longer ours to touch.
      note(device_path(index) + " was already disconnected by someone else");
      do_it_thread.join();
      device_fd.reset();
      return {};
    }
    if (::ioctl(device_fd.get(), NBD_DISCONNECT) < 0) {
      note("NBD_DISCONNECT on " + device_path(index) + ": " + std::strerror(errno));
    }
    // NBD_DO_IT returns once the server closes its end after NBD_CMD_DISC; NBD_CLEAR_SOCK
    // shuts the sockets down from the kernel's side if the server never does.
    if (!do_it->wait_for(10s)) {
      ::ioctl(device_fd.get(), NBD_CLEAR_SOCK);
      if (!do_it->wait_for(10s)) {
        detail = "NBD_DO_IT on " + device_path(index) + " did not return after disconnect";
        do_it_thread.detach();  // it holds only its shared state and the open device
        (void)device_fd.release();
        return kernel_errc::kernel_refused;
      }
    }
    do_it_thread.join();
    ::ioctl(device_fd.get(), NBD_CLEAR_SOCK);
    device_fd.reset();
    return {};
  }
};

namespace {

struct SocketPair {
  UniqueFd ours;
  UniqueFd kernels;
};

std::error_code make_socket_pairs(unsigned count, std::vector<SocketPair>& pairs,
                                  std::string& detail) {
  for (unsigned i = 0; i < std::max(count, 1u); ++i) {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0) {
      detail = std::string("socketpair: ") + std::strerror(errno);
      return errno_code(errno);
    }
    pairs.push_back({UniqueFd(fds[0]), UniqueFd(fds[1])});
  }
  return {};
}

std::error_code serve_all(std::vector<SocketPair>& pairs, const KernelDevice::ServeSocket& serve,
                          std::string& detail) {
  for (auto& pair : pairs) {
    std::string why;
    if (auto ec = serve(pair.ours.release(), why)) {
      detail = "cannot serve the kernel's NBD socket: " + (why.empty() ? ec.message() : why);
      return ec;
    }
  }
  return {};
}

// The driver takes logical block sizes that are powers of two from 512 to the page size.
std::error_code check_export(const KernelAttachOptions& options, std::string& detail) {
  const uint32_t bs = options.block_size;
  if (bs < 512 || bs > 4096 || (bs & (bs - 1)) != 0) {
    detail = "the nbd driver takes block sizes 512..4096, the LUN has " + std::to_string(bs);
    return kernel_errc::unsupported_export;
  }
  if (options.size_bytes < bs) {
    detail = "the export is smaller than one block";
    return kernel_errc::unsupported_export;
  }
  return {};
}

std::error_code attach_netlink(KernelDevice::Impl& impl, GenericNetlink& netlink,
                               const KernelAttachOptions& options,
                               const KernelDevice::ServeSocket& serve, std::string& detail) {
  std::vector<SocketPair> pairs;
  if (auto ec = make_socket_pairs(options.connections, pairs, detail)) return ec;
  netlink::ConnectRequest request;
  request.index = options.index;
  request.size_bytes = options.size_bytes;
  request.block_size = options.block_size;
  request.server_flags = options.transmission_flags;
  request.timeout_seconds = static_cast<uint64_t>(options.timeouts.request.count());
  request.dead_connection_timeout_seconds =
      static_cast<uint64_t>(options.timeouts.dead_connection.count());
  request.backend_identifier = options.backend_identifier;
  for (const auto& pair : pairs) request.socket_fds.push_back(pair.kernels.get());
  if (auto ec = serve_all(pairs, serve, detail)) return ec;

  netlink::Reply reply;
  if (auto ec = netlink.ask(
          [&](uint32_t seq) { return netlink::connect_request(impl.family_id, seq, request); },
          "NBD_CMD_CONNECT", reply, detail))
    return ec;
  // The kernel holds its own references to the sockets now (or refused them): closing our
  // copies of its ends here is right either way, and on refusal ends our served ends too.
  for (auto& pair : pairs) pair.kernels.reset();
  const std::string what = options.index ? device_path(*options.index) : "an NBD device";
  switch (reply.error) {
    case 0:
      break;
    case EPERM:
    case EACCES:
      detail = permission_detail("connecting " + what);
      return kernel_errc::not_permitted;
    case EBUSY:
      detail = busy_detail(options.index.value_or(0),
                           options.index ? holder_of(*options.index) : std::nullopt);
      return kernel_errc::device_busy;
    default:
      detail = "NBD_CMD_CONNECT for " + what + " refused: " + std::strerror(reply.error) +
               (reply.kernel_message.empty() ? std::string(" (see dmesg)")
                                             : " (" + reply.kernel_message + ")");
      return kernel_errc::kernel_refused;
  }
  if (reply.index) {
    impl.index = *reply.index;
  } else if (options.index) {
    impl.index = *options.index;
  } else {
    detail = "NBD_CMD_CONNECT did not say which device it connected";
    return kernel_errc::netlink_protocol;
  }
  return {};
}

// Candidate devices for the ioctl interface: the one asked for, or every /dev/nbdN in order.
std::vector<uint32_t> ioctl_candidates(const KernelAttachOptions& options) {
  if (options.index) return {*options.index};
  std::vector<uint32_t> found;
  for (uint32_t index = 0; index < 4096; ++index) {
    if (!exists(sysfs_dir(index))) break;  // the module creates nbd0..nbd(nbds_max-1)
    found.push_back(index);
  }
  return found;
}

std::error_code attach_ioctl(KernelDevice::Impl& impl, const KernelAttachOptions& options,
                             const KernelDevice::ServeSocket& serve, std::string& detail) {
  const auto candidates = ioctl_candidates(options);
  if (candidates.empty()) {
    detail = module_missing_detail();
    return kernel_errc::module_missing;
  }
  std::error_code last = kernel_errc::device_busy;
  for (const uint32_t index : candidates) {
    const std::string path = device_path(index);
    if (const auto holder = holder_of(index)) {
      detail = busy_detail(index, holder);
      last = kernel_errc::device_busy;
      continue;
    }
    UniqueFd device(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (!device) {
      const int error = errno;
      if (error == EACCES || error == EPERM) {
        detail = permission_detail("opening " + path);
        return kernel_errc::not_permitted;
      }
      if (error == ENOENT || error == ENXIO || error == ENODEV) {
        detail =
            "no " + path +
            (exists("/sys/module/nbd") ? " (the module made fewer devices: modprobe nbd nbds_max=N)"
                                       : ": " + module_missing_detail());
        last = exists("/sys/module/nbd") ? std::error_code(kernel_errc::no_such_device)
                                         : std::error_code(kernel_errc::module_missing);
        continue;
      }
      detail = "cannot open " + path + ": " + std::strerror(error);
      return errno_code(error);
    }
    std::vector<SocketPair> pairs;
    if (auto ec = make_socket_pairs(options.connections, pairs, detail)) return ec;
    bool claimed = false;
    std::error_code failure;
    for (auto& pair : pairs) {
      if (::ioctl(device.get(), NBD_SET_SOCK, static_cast<unsigned long>(pair.kernels.get())) ==
          0) {
        claimed = true;
        continue;
      }
      const int error = errno;
      if (error == EPERM || error == EACCES) {
        detail = permission_detail("NBD_SET_SOCK on " + path);
        failure = kernel_errc::not_permitted;
      } else if (error == EBUSY || error == EINVAL) {
        // EINVAL: a device set up through netlink refuses the ioctl interface.
        detail = busy_detail(index, holder_of(index));
        failure = kernel_errc::device_busy;
      } else {
        detail = "NBD_SET_SOCK on " + path + ": " + std::strerror(error);
        failure = errno_code(error);
      }
      break;
    }
    auto release = [&] {
      if (claimed) ::ioctl(device.get(), NBD_CLEAR_SOCK);
    };
    if (failure == kernel_errc::device_busy && !options.index) {
      release();
      last = failure;
      continue;
    }
    if (failure) {
      release();
      return failure;
    }
    const uint64_t blocks = options.size_bytes / options.block_size;
    const std::pair<unsigned long, unsigned long> settings[] = {
        {NBD_SET_BLKSIZE, options.block_size},
        {NBD_SET_SIZE_BLOCKS, blocks},
        {NBD_SET_FLAGS, options.transmission_flags},
        {NBD_SET_TIMEOUT, static_cast<unsigned long>(options.timeouts.request.count())},
    };
    for (const auto& [request, value] : settings) {
      if (::ioctl(device.get(), request, value) < 0) {
        const int error = errno;
        release();
        detail = "configuring " + path + " through ioctl: " + std::strerror(error);
        return errno_code(error);
      }
    }
    if (auto ec = serve_all(pairs, serve, detail)) {
      release();
      return ec;
    }
    for (auto& pair : pairs) pair.kernels.reset();  // NBD_SET_SOCK took its own reference

    impl.index = index;
    impl.device_fd = std::move(device);
    impl.start_do_it();
    // Connected once the driver publishes the pid; an early return of NBD_DO_IT is a refusal.
    impl.wait_until(5s, [&] { return impl.do_it->done() || exists(sysfs_dir(index) + "/pid"); });
    if (impl.do_it->done() || !exists(sysfs_dir(index) + "/pid")) {
      if (!impl.do_it->done()) ::ioctl(impl.device_fd.get(), NBD_CLEAR_SOCK);
      impl.do_it_thread.join();
      const int error = impl.do_it->error;  // joined: no lock needed
      ::ioctl(impl.device_fd.get(), NBD_CLEAR_SOCK);
      impl.device_fd.reset();
      if (error == EBUSY) {
        detail = busy_detail(index, holder_of(index));
        return kernel_errc::device_busy;
      }
      detail = "NBD_DO_IT on " + path +
               " failed: " + (error != 0 ? std::strerror(error) : "no connection within 5 s");
      return kernel_errc::kernel_refused;
    }
    return {};
  }
  return last;
}

}  // namespace

KernelDevice::KernelDevice(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::optional<uint32_t> left_by_dead_attach(const std::vector<DeviceSeen>& devices,
                                            std::string_view backend_identifier,
                                            std::optional<uint32_t> index) noexcept {
  if (backend_identifier.empty()) return std::nullopt;
  for (const auto& device : devices) {
    if (index && device.index != *index) continue;
    if (device.backend == backend_identifier && device.pid && !device.owner_alive)
      return device.index;
  }
  return std::nullopt;
}

namespace {

std::vector<DeviceSeen> devices_seen() {
  std::vector<DeviceSeen> seen;
  for (uint32_t index = 0; index < 4096; ++index) {
    if (!exists(sysfs_dir(index))) break;  // the module creates nbd0..nbd(nbds_max-1)
    DeviceSeen device{.index = index};
    device.backend = read_line(sysfs_dir(index) + "/backend").value_or("");
    device.pid = read_line(sysfs_dir(index) + "/pid");
    device.owner_alive = device.pid && exists("/proc/" + *device.pid);
    seen.push_back(std::move(device));
  }
  return seen;
}

}  // namespace

std::unique_ptr<KernelDevice> KernelDevice::adopt(const KernelAttachOptions& options,
                                                  const ServeSocket& serve, std::error_code& ec,
                                                  std::string& detail) {
  ec.clear();
  if (options.interface == KernelInterface::ioctl) return nullptr;
  const auto index = left_by_dead_attach(devices_seen(), options.backend_identifier, options.index);
  if (!index) return nullptr;
  if ((ec = check_export(options, detail))) return nullptr;
  auto impl = std::make_unique<Impl>();
  GenericNetlink netlink;
  if ((ec = netlink.open()) || (ec = netlink.resolve_family(impl->family_id))) {
    detail = "the nbd netlink family cannot be resolved: " + ec.message();
    return nullptr;
  }
  std::vector<SocketPair> pairs;
  if ((ec = make_socket_pairs(options.connections, pairs, detail))) return nullptr;
  netlink::ReconnectRequest request;
  request.index = *index;
  request.size_bytes = options.size_bytes;
  request.dead_connection_timeout_seconds =
      static_cast<uint64_t>(options.timeouts.dead_connection.count());
  request.backend_identifier = options.backend_identifier;
  for (const auto& pair : pairs) request.socket_fds.push_back(pair.kernels.get());
  if ((ec = serve_all(pairs, serve, detail))) return nullptr;
  netlink::Reply reply;
  if ((ec = netlink.ask(
           [&](uint32_t seq) { return netlink::reconnect_request(impl->family_id, seq, request); },
           "NBD_CMD_RECONFIGURE for " + device_path(*index), reply, detail)))
    return nullptr;
  for (auto& pair : pairs) pair.kernels.reset();  // the kernel holds its own references now
  if (reply.error == ENOSPC) {
    // No dead connection to replace: whoever connected it last is serving it (the driver
    // keeps the first owner's pid through a reconfigure, so the pid check above can miss it).
    detail = busy_detail(*index, holder_of(*index));
    ec = kernel_errc::device_busy;
    return nullptr;
  }
  if (reply.error != 0) {
    detail = "NBD_CMD_RECONFIGURE for " + device_path(*index) +
             " (left by a dead attach) refused: " + std::strerror(reply.error) +
             (reply.kernel_message.empty() ? std::string(" (see dmesg)")
                                           : " (" + reply.kernel_message + ")");
    ec = reply.error == EPERM ? std::error_code(kernel_errc::not_permitted)
                              : std::error_code(kernel_errc::kernel_refused);
    return nullptr;
  }
  impl->index = *index;
  impl->interface = KernelInterface::netlink;
  impl->adopted = true;
  impl->dead_connection = options.timeouts.dead_connection;
  impl->backend_identifier = options.backend_identifier;
  // The driver keeps the pid of whoever connected it: from now on ours is the one to compare.
  impl->connected_pid = read_line(sysfs_dir(*index) + "/pid").value_or("");
  impl->tune_queue(options.max_transfer_bytes);
  return std::unique_ptr<KernelDevice>(new KernelDevice(std::move(impl)));
}

bool KernelDevice::adopted() const noexcept {
  return impl_->adopted;
}

std::unique_ptr<KernelDevice> KernelDevice::attach(const KernelAttachOptions& options,
                                                   const ServeSocket& serve, std::error_code& ec,
                                                   std::string& detail) {
  ec = check_export(options, detail);
  if (ec) return nullptr;
  if (options.index) {
    if (const auto holder = holder_of(*options.index)) {
      detail = busy_detail(*options.index, holder);
      ec = kernel_errc::device_busy;
      return nullptr;
    }
  }
  auto impl = std::make_unique<Impl>();

  KernelInterface interface = options.interface;
  GenericNetlink netlink;
  if (interface != KernelInterface::ioctl) {
    std::error_code family_ec = netlink.open();
    if (!family_ec) family_ec = netlink.resolve_family(impl->family_id);
    if (family_ec && interface == KernelInterface::netlink) {
      ec = family_ec == std::errc::no_such_file_or_directory
               ? std::error_code(kernel_errc::module_missing)
               : family_ec;
      detail = ec == kernel_errc::module_missing
                   ? module_missing_detail()
                   : "the nbd netlink family cannot be resolved: " + family_ec.message();
      return nullptr;
    }
    interface = family_ec ? KernelInterface::ioctl : KernelInterface::netlink;
    if (family_ec && !exists("/sys/module/nbd") && !exists("/sys/block/nbd0")) {
      detail = module_missing_detail();
      ec = kernel_errc::module_missing;
      return nullptr;
    }
  }
  impl->interface = interface;
  ec = interface == KernelInterface::netlink
           ? attach_netlink(*impl, netlink, options, serve, detail)
           : attach_ioctl(*impl, options, serve, detail);
  if (ec) return nullptr;
  impl->connected_pid = read_line(sysfs_dir(impl->index) + "/pid").value_or("");
  if (interface == KernelInterface::netlink) impl->backend_identifier = options.backend_identifier;
  impl->dead_connection = options.timeouts.dead_connection;
  impl->tune_queue(options.max_transfer_bytes);
  return std::unique_ptr<KernelDevice>(new KernelDevice(std::move(impl)));
}

KernelDevice::~KernelDevice() {
  if (impl_->detach_thread.joinable()) impl_->detach_thread.join();
  std::string ignored;
  impl_->detach(false, ignored);
}

uint32_t KernelDevice::index() const noexcept {
  return impl_->index;
}
std::string KernelDevice::path() const {
  return device_path(impl_->index);
}
KernelInterface KernelDevice::interface() const noexcept {
  return impl_->interface;
}
uint32_t KernelDevice::max_sectors_kb() const noexcept {
  return impl_->max_sectors_kb;
}

std::vector<std::string> KernelDevice::take_notes() {
  std::lock_guard lock(impl_->mutex);
  return std::exchange(impl_->notes, {});
}

std::error_code KernelDevice::detach(std::string& detail) {
  return impl_->detach(true, detail);
}

bool KernelDevice::can_leave() const noexcept {
  return impl_->interface == KernelInterface::netlink && !impl_->backend_identifier.empty();
}

std::chrono::seconds KernelDevice::dead_connection_timeout() const noexcept {
  return impl_->dead_connection;
}

std::error_code KernelDevice::leave(std::string& detail) {
  if (!can_leave()) {
    detail = path() + " cannot outlive this process: " +
             (impl_->interface == KernelInterface::ioctl
                  ? std::string("the ioctl interface's device ends with it")
                  : std::string("it has no backend identifier to be found by"));
    return std::make_error_code(std::errc::operation_not_supported);
  }
  std::lock_guard lock(impl_->mutex);
  impl_->attached = false;
  return {};
}

std::error_code KernelDevice::resize(uint64_t size_bytes, std::string& detail) {
  return impl_->resize(size_bytes, detail);
}

void KernelDevice::detach_async(DetachHandler done) {
  if (impl_->detach_thread.joinable()) return;
  BlockAllSignals blocked;
  impl_->detach_thread = std::thread([this, done = std::move(done)] {
    std::string detail;
    const auto ec = detach(detail);
    if (done) done(ec, detail);
  });
}

}  // namespace nbd
