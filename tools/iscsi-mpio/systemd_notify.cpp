#include "systemd_notify.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <spdlog/spdlog.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <variant>

#include <nbd_server/server.hpp>

namespace iscsi_mpio::systemd {

namespace asio = boost::asio;

std::string path_summary(std::string_view export_name, const std::vector<mpio::PathStatus>& paths) {
  size_t usable = 0;
  std::vector<std::string> down;
  for (const auto& path : paths) {
    if (path.state == mpio::PathState::active || path.state == mpio::PathState::ghost)
      ++usable;
    else
      down.push_back(path.name + " " + std::string(mpio::path_state_name(path.state)));
  }
  std::string line = std::string(export_name) + ": " + std::to_string(usable) + "/" +
                     std::to_string(paths.size()) + (paths.size() == 1 ? " path" : " paths") +
                     " active";
  for (size_t i = 0; i < down.size(); ++i) line += (i == 0 ? " (" : ", ") + down[i];
  return down.empty() ? line : line + ")";
}

std::string status_line(const std::vector<LunPaths>& luns) {
  std::string line;
  for (const auto& lun : luns)
    line += (line.empty() ? "" : "; ") + path_summary(lun.export_name, lun.paths);
  return line;
}

namespace {

// The three calls of libsystemd's sd-daemon we need, done here: the protocol is a documented,
// stable interface (sd_notify(3), sd_listen_fds(3), sd_watchdog_enabled(3)), while linking
// libsystemd maps it and its compression and crypto libraries (libgcrypt, libgpg-error, liblz4,
// liblzma, libzstd, libcap) into every attach: about 0.9 MiB of resident memory (issue 25).

// The first file descriptor systemd passes (SD_LISTEN_FDS_START).
constexpr int kListenFdsStart = 3;

// A decimal environment variable, nullopt when unset or not a whole number.
std::optional<uint64_t> env_number(const char* name) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return std::nullopt;
  uint64_t value = 0;
  const char* end = text + std::strlen(text);
  const auto [ptr, ec] = std::from_chars(text, end, value);
  if (ec != std::errc{} || ptr != end) return std::nullopt;
  return value;
}

// A variable naming a process (LISTEN_PID, WATCHDOG_PID) is meant for us: unset counts as ours
// only where the man page says so (`unset_means_ours`).
bool for_this_process(const char* name, bool unset_means_ours) {
  if (std::getenv(name) == nullptr) return unset_means_ours;
  const auto pid = env_number(name);
  return pid && *pid == static_cast<uint64_t>(::getpid());
}

// sd_notify(0, message): 0 without NOTIFY_SOCKET, 1 when sent, -errno when it fails. The
// address is a path or, with a leading '@', an abstract socket name.
int notify_systemd(const std::string& message) {
  const char* address = std::getenv("NOTIFY_SOCKET");
  if (address == nullptr || *address == '\0') return 0;
  sockaddr_un to{};
  to.sun_family = AF_UNIX;
  const size_t length = std::strlen(address);
  if ((address[0] != '/' && address[0] != '@') || length >= sizeof(to.sun_path))
    return -EAFNOSUPPORT;
  std::memcpy(to.sun_path, address, length);
  if (to.sun_path[0] == '@') to.sun_path[0] = '\0';
  const auto to_length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + length);
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  const ssize_t sent = ::sendto(fd, message.data(), message.size(), MSG_NOSIGNAL,
                                reinterpret_cast<const sockaddr*>(&to), to_length);
  const int error = errno;
  ::close(fd);
  return sent < 0 ? -error : 1;
}

// sd_listen_fds(1): how many descriptors from kListenFdsStart on systemd passed to this process
// (each made close-on-exec), or -errno; the variables are unset in every case.
int listen_fds() {
  int result = 0;
  if (for_this_process("LISTEN_PID", false)) {
    const auto count = env_number("LISTEN_FDS");
    if (!count || *count > 4096) {
      result = -EINVAL;
    } else {
      result = static_cast<int>(*count);
      for (int fd = kListenFdsStart; fd < kListenFdsStart + result; ++fd) {
        const int flags = ::fcntl(fd, F_GETFD);
        if (flags < 0 || ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0) {
          result = -errno;
          break;
        }
      }
    }
  }
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
  return result;
}

}  // namespace

std::optional<std::chrono::microseconds> watchdog_period() {
  // sd_watchdog_enabled(0, ...): WATCHDOG_USEC, for us when WATCHDOG_PID is unset or ours.
  const auto usec = env_number("WATCHDOG_USEC");
  if (!usec || *usec == 0 || !for_this_process("WATCHDOG_PID", true)) return std::nullopt;
  return std::chrono::microseconds(*usec / 2);
}

std::optional<int> inherited_listening_socket(const config::Listen& listen, std::error_code& ec,
                                              std::string& detail) {
  ec.clear();
  const int n = listen_fds();
  if (n < 0) {
    ec = std::error_code(-n, std::generic_category());
    detail = "LISTEN_FDS: " + ec.message();
    return std::nullopt;
  }
  if (n == 0) return std::nullopt;
  if (n > 1) {
    // The .socket unit has more than one Listen line: which one nbd.listen means is a guess.
    for (int fd = kListenFdsStart; fd < kListenFdsStart + n; ++fd) ::close(fd);
    ec = std::make_error_code(std::errc::invalid_argument);
    detail = "systemd passed " + std::to_string(n) +
             " sockets (LISTEN_FDS); the attach serves NBD on one: give the .socket unit a "
             "single ListenStream=";
    return std::nullopt;
  }
  const int fd = kListenFdsStart;
  std::variant<nbd::UnixEndpoint, nbd::TcpEndpoint> endpoint;
  if (listen.kind == config::Listen::Kind::unix_socket)
    endpoint = nbd::UnixEndpoint{listen.path_or_host};
  else
    endpoint = nbd::TcpEndpoint{listen.path_or_host, listen.port};
  if ((ec = nbd::check_listening_socket(fd, endpoint, detail))) {
    ::close(fd);
    detail = "systemd's " + detail;
    return std::nullopt;
  }
  return fd;
}

struct Notifier::Impl : std::enable_shared_from_this<Notifier::Impl> {
  explicit Impl(asio::io_context& io) : watchdog_timer(io), status_timer(io) {}

  void send(const std::string& message) {
    if (!enabled) return;
    // 0 without NOTIFY_SOCKET (not expected here), < 0 when the socket refuses.
    if (const int rc = notify_systemd(message); rc < 0 && !send_failed) {
      send_failed = true;  // once: the watchdog would repeat it every few seconds
      spdlog::warn("sd_notify({}): {}", message.substr(0, message.find('\n')),
                   std::error_code(-rc, std::generic_category()).message());
    }
  }

  void send_status() {
    if (!status) return;
    last_status_sent = std::chrono::steady_clock::now();
    send("STATUS=" + status());
  }

  void ping_watchdog() {
    watchdog_timer.expires_after(*watchdog);
    watchdog_timer.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
      auto self = weak.lock();
      if (ec || !self) return;
      self->send("WATCHDOG=1");
      self->ping_watchdog();
    });
  }

  bool enabled = false;
  bool send_failed = false;
  std::optional<std::chrono::microseconds> watchdog;
  std::function<std::string()> status;
  std::chrono::steady_clock::time_point last_status_sent{};
  bool status_pending = false;
  asio::steady_timer watchdog_timer;
  asio::steady_timer status_timer;
};

Notifier::Notifier(asio::io_context& io) : impl_(std::make_shared<Impl>(io)) {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  impl_->enabled = socket != nullptr && *socket != '\0';
  if (!impl_->enabled) return;
  impl_->watchdog = watchdog_period();
  if (impl_->watchdog) {
    spdlog::info("systemd watchdog: pinging every {} ms", impl_->watchdog->count() / 1000);
    impl_->send("WATCHDOG=1");
    impl_->ping_watchdog();
  }
}

Notifier::~Notifier() {
  impl_->watchdog_timer.cancel();
  impl_->status_timer.cancel();
}

bool Notifier::enabled() const {
  return impl_->enabled;
}

void Notifier::ready(std::function<std::string()> status) {
  impl_->status = std::move(status);
  if (!impl_->enabled) return;
  impl_->last_status_sent = std::chrono::steady_clock::now();
  impl_->send("READY=1\nSTATUS=" + impl_->status());
}

void Notifier::status_changed() {
  auto& impl = *impl_;
  if (!impl.enabled || !impl.status || impl.status_pending) return;
  const auto next = impl.last_status_sent + status_interval;
  if (std::chrono::steady_clock::now() >= next) return impl.send_status();
  // Within the interval: one update at its end shows the latest state.
  impl.status_pending = true;
  impl.status_timer.expires_at(next);
  impl.status_timer.async_wait([weak = impl.weak_from_this()](const boost::system::error_code& ec) {
    auto self = weak.lock();
    if (ec || !self) return;
    self->status_pending = false;
    self->send_status();
  });
}

void Notifier::reloading() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  const uint64_t usec = uint64_t(now.tv_sec) * 1000000 + uint64_t(now.tv_nsec) / 1000;
  impl_->send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec));
}

void Notifier::reloaded() {
  impl_->send("READY=1" + (impl_->status ? "\nSTATUS=" + impl_->status() : std::string()));
}

void Notifier::stopping(const std::string& why) {
  impl_->status_timer.cancel();
  impl_->status = nullptr;  // the paths' line would hide that we are stopping
  impl_->send("STOPPING=1\nSTATUS=" + why);
}

}  // namespace iscsi_mpio::systemd
