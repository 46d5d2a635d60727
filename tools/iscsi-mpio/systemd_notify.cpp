#include "systemd_notify.hpp"

#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include <spdlog/spdlog.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdlib>
#include <variant>

#include <common_dl/shared_library.hpp>
#include <nbd_server/server.hpp>

namespace iscsi_mpio::systemd {

namespace asio = boost::asio;

namespace {

// libsystemd is opened with dlopen when systemd (or podman --sdnotify) started the attach, not
// linked: linking it maps libsystemd and the libraries it needs (libgcrypt, libgpg-error, liblz4,
// liblzma, libzstd, libcap) into every attach, about 0.9 MiB of an idle attach's resident memory,
// for three calls. The declarations come from <systemd/sd-daemon.h>, so each call is
// type-checked; the soname is the ABI that header describes.
constexpr const char* kLibsystemdSoname = "libsystemd.so.0";

struct Libsystemd {
  decltype(&::sd_notify) notify = nullptr;
  decltype(&::sd_listen_fds) listen_fds = nullptr;
  decltype(&::sd_watchdog_enabled) watchdog_enabled = nullptr;
  std::string error;  // non-empty: the library or one of its symbols is missing
};

Libsystemd open_libsystemd() {
  Libsystemd lib;
  // Left open when it goes out of scope: the notifier uses it until exit.
  common_dl::SharedLibrary library(kLibsystemdSoname, "Debian package libsystemd0");
  library.resolve(lib.notify, "sd_notify");
  library.resolve(lib.listen_fds, "sd_listen_fds");
  library.resolve(lib.watchdog_enabled, "sd_watchdog_enabled");
  lib.error = library.error();
  return lib;
}

// Opened on first use, once; thread-safe by the function-local static.
const Libsystemd& libsystemd() {
  static const Libsystemd lib = open_libsystemd();
  return lib;
}

// Set and not empty: systemd speaks to us through it, and only then is libsystemd opened.
bool from_systemd(const char* variable) {
  const char* value = std::getenv(variable);
  return value != nullptr && *value != '\0';
}

}  // namespace

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

std::optional<std::chrono::microseconds> watchdog_period() {
  if (!from_systemd("WATCHDOG_USEC")) return std::nullopt;
  const auto& sd = libsystemd();
  if (!sd.error.empty()) {
    spdlog::warn("WATCHDOG_USEC is set but the watchdog cannot be served: {}", sd.error);
    return std::nullopt;
  }
  uint64_t usec = 0;
  if (sd.watchdog_enabled(0, &usec) <= 0 || usec == 0) return std::nullopt;
  return std::chrono::microseconds(usec / 2);
}

std::optional<int> inherited_listening_socket(const config::Listen& listen, std::error_code& ec,
                                              std::string& detail) {
  ec.clear();
  if (!from_systemd("LISTEN_FDS")) return std::nullopt;
  const auto& sd = libsystemd();
  if (!sd.error.empty()) {
    // The socket is ours to serve and nobody else will: refusing beats ignoring it.
    ec = std::make_error_code(std::errc::function_not_supported);
    detail = "LISTEN_FDS is set: " + sd.error;
    return std::nullopt;
  }
  const int n = sd.listen_fds(1);  // 1: unset LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES
  if (n < 0) {
    ec = std::error_code(-n, std::generic_category());
    detail = "LISTEN_FDS: " + ec.message();
    return std::nullopt;
  }
  if (n == 0) return std::nullopt;
  if (n > 1) {
    // The .socket unit has more than one Listen line: which one nbd.listen means is a guess.
    for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; ++fd) ::close(fd);
    ec = std::make_error_code(std::errc::invalid_argument);
    detail = "systemd passed " + std::to_string(n) +
             " sockets (LISTEN_FDS); the attach serves NBD on one: give the .socket unit a "
             "single ListenStream=";
    return std::nullopt;
  }
  const int fd = SD_LISTEN_FDS_START;
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
    const auto& sd = libsystemd();
    if (!sd.error.empty()) {
      if (!send_failed)
        spdlog::warn("NOTIFY_SOCKET is set but systemd cannot be told: {}", sd.error);
      send_failed = true;
      return;
    }
    // sd_notify(3): 0 without NOTIFY_SOCKET (not expected here), < 0 when the socket refuses.
    if (const int rc = sd.notify(0, message.c_str()); rc < 0 && !send_failed) {
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
  impl_->enabled = from_systemd("NOTIFY_SOCKET");
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
