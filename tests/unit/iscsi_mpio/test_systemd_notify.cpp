// systemd::Notifier against a fake NOTIFY_SOCKET: a unix datagram socket the test binds and
// reads, as systemd's manager does; the path summary; the inherited socket (LISTEN_FDS).
#include <catch2/catch.hpp>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "bound_unix_socket.hpp"
#include "systemd_notify.hpp"

namespace {

using namespace std::chrono_literals;

// Binds a datagram socket, points NOTIFY_SOCKET (and WATCHDOG_USEC when given) at it, and
// undoes both when destroyed.
struct FakeSystemd {
  explicit FakeSystemd(const char* watchdog_usec = nullptr)
      : path("/tmp/notify-test-" + std::to_string(::getpid()) + ".sock") {
    fd = test::bound_unix_socket(path, SOCK_DGRAM, false);
    REQUIRE(fd >= 0);
    ::setenv("NOTIFY_SOCKET", path.c_str(), 1);
    if (watchdog_usec) ::setenv("WATCHDOG_USEC", watchdog_usec, 1);
  }
  ~FakeSystemd() {
    ::unsetenv("NOTIFY_SOCKET");
    ::unsetenv("WATCHDOG_USEC");
    ::close(fd);
    ::unlink(path.c_str());
  }

  // The next message within `limit`, or "" when none came.
  std::string next(std::chrono::milliseconds limit = 2s) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(limit.count())) != 1) return {};
    char buf[4096];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
  }

  std::string path;
  int fd = -1;
};

mpio::PathStatus path(std::string name, mpio::PathState state) {
  mpio::PathStatus p;
  p.name = std::move(name);
  p.state = state;
  return p;
}

}  // namespace

TEST_CASE("path_summary: usable paths over all, the others named", "[systemd]") {
  using mpio::PathState;
  CHECK(iscsi_mpio::systemd::path_summary(
            "lun0", {path("a", PathState::active), path("b", PathState::ghost)}) ==
        "lun0: 2/2 paths active");
  CHECK(iscsi_mpio::systemd::path_summary("disk", {path("a", PathState::active)}) ==
        "disk: 1/1 path active");
  CHECK(iscsi_mpio::systemd::path_summary(
            "lun1", {path("198.18.1.1:3260", PathState::failed), path("b", PathState::active),
                     path("198.18.3.1:3260", PathState::connecting)}) ==
        "lun1: 1/3 paths active (198.18.1.1:3260 failed, 198.18.3.1:3260 connecting)");
  CHECK(iscsi_mpio::systemd::status_line(
            {{"lun0", {path("a", PathState::active), path("b", PathState::active)}},
             {"lun1", {path("a", PathState::active), path("b", PathState::refused)}}}) ==
        "lun0: 2/2 paths active; lun1: 1/2 paths active (b refused)");
}

TEST_CASE("without NOTIFY_SOCKET every message is a no-op", "[systemd]") {
  ::unsetenv("NOTIFY_SOCKET");
  boost::asio::io_context io;
  iscsi_mpio::systemd::Notifier notifier(io);
  CHECK_FALSE(notifier.enabled());
  notifier.ready([] { return std::string("x"); });
  notifier.status_changed();
  notifier.reloading();
  notifier.reloaded();
  notifier.stopping("bye");
  CHECK(io.run_for(50ms) == 0);  // no timer was armed
}

TEST_CASE("READY=1 with STATUS=, rate-limited STATUS= updates, RELOADING and STOPPING",
          "[systemd]") {
  FakeSystemd systemd;
  boost::asio::io_context io;
  iscsi_mpio::systemd::Notifier notifier(io);
  REQUIRE(notifier.enabled());
  std::string status = "lun0: 2/2 paths active";
  notifier.ready([&] { return status; });
  CHECK(systemd.next() == "READY=1\nSTATUS=lun0: 2/2 paths active");

  // Two changes within the interval: one update at its end, with the latest line.
  status = "lun0: 1/2 paths active (b failed)";
  notifier.status_changed();
  status = "lun0: 0/2 paths active (a failed, b failed)";
  notifier.status_changed();
  CHECK(systemd.next(100ms).empty());
  const auto started = std::chrono::steady_clock::now();
  io.run_for(iscsi_mpio::systemd::Notifier::status_interval + 500ms);
  CHECK(systemd.next() == "STATUS=lun0: 0/2 paths active (a failed, b failed)");
  CHECK(systemd.next(50ms).empty());
  CHECK(std::chrono::steady_clock::now() - started >= 500ms);

  notifier.reloading();
  const auto reloading = systemd.next();
  CHECK(reloading.rfind("RELOADING=1\nMONOTONIC_USEC=", 0) == 0);
  notifier.reloaded();
  CHECK(systemd.next() == "READY=1\nSTATUS=lun0: 0/2 paths active (a failed, b failed)");
  notifier.stopping("shutting down");
  CHECK(systemd.next() == "STOPPING=1\nSTATUS=shutting down");
  notifier.status_changed();  // after STOPPING the status line is ours no more
  CHECK(systemd.next(50ms).empty());
}

TEST_CASE("WATCHDOG=1 at half of WATCHDOG_USEC while the io_context runs", "[systemd]") {
  FakeSystemd systemd("200000");  // 200 ms: a ping every 100 ms
  REQUIRE(iscsi_mpio::systemd::watchdog_period() == std::chrono::microseconds(100000));
  boost::asio::io_context io;
  iscsi_mpio::systemd::Notifier notifier(io);
  CHECK(systemd.next() == "WATCHDOG=1");  // at once: the login may take long
  io.run_for(450ms);
  int pings = 0;
  for (std::string m; !(m = systemd.next(10ms)).empty();) pings += m == "WATCHDOG=1";
  CHECK(pings >= 3);
  CHECK(pings <= 5);
  // A loop that does not run sends nothing.
  CHECK(systemd.next(300ms).empty());
}

TEST_CASE("no watchdog without WATCHDOG_USEC, or when WATCHDOG_PID is another process",
          "[systemd]") {
  ::unsetenv("WATCHDOG_USEC");
  CHECK_FALSE(iscsi_mpio::systemd::watchdog_period());
  ::setenv("WATCHDOG_USEC", "200000", 1);
  ::setenv("WATCHDOG_PID", std::to_string(::getpid() + 1).c_str(), 1);
  CHECK_FALSE(iscsi_mpio::systemd::watchdog_period());
  ::unsetenv("WATCHDOG_PID");
  ::unsetenv("WATCHDOG_USEC");
}

TEST_CASE("inherited_listening_socket: LISTEN_FDS for this process only, one socket at nbd.listen",
          "[systemd]") {
  using iscsi_mpio::systemd::inherited_listening_socket;
  const std::string path = "/tmp/listen-fds-test-" + std::to_string(::getpid()) + ".sock";
  const config::Listen listen{
      .kind = config::Listen::Kind::unix_socket, .path_or_host = path, .port = 0};
  std::error_code ec;
  std::string detail;
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_PID");
  CHECK_FALSE(inherited_listening_socket(listen, ec, detail));
  CHECK_FALSE(ec);

  // Another process's sockets: not ours (sd_listen_fds unsets the variables all the same).
  ::setenv("LISTEN_FDS", "1", 1);
  ::setenv("LISTEN_PID", std::to_string(::getpid() + 1).c_str(), 1);
  CHECK_FALSE(inherited_listening_socket(listen, ec, detail));
  CHECK_FALSE(ec);

  // Descriptor 3 a socket listening at `path`, as systemd passes it.
  const int saved = ::dup(3);  // whatever the test runner has there
  const int sock = test::bound_unix_socket(path, SOCK_STREAM, true);
  REQUIRE(sock >= 0);
  REQUIRE(::dup2(sock, 3) == 3);
  if (sock != 3) ::close(sock);
  auto pass_fds = [](const char* count) {
    ::setenv("LISTEN_FDS", count, 1);
    ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
  };

  SECTION("taken, and the variables gone") {
    pass_fds("1");
    CHECK(inherited_listening_socket(listen, ec, detail) == 3);
    CHECK_FALSE(ec);
    CHECK(std::getenv("LISTEN_FDS") == nullptr);
  }
  SECTION("at another path: refused before any login, naming both") {
    pass_fds("1");
    const config::Listen other{
        .kind = config::Listen::Kind::unix_socket, .path_or_host = path + ".other", .port = 0};
    CHECK_FALSE(inherited_listening_socket(other, ec, detail));
    CHECK(ec == std::errc::invalid_argument);
    CHECK(detail.find("unix:" + path + ",") != std::string::npos);
    CHECK(detail.find("unix:" + path + ".other") != std::string::npos);
  }
  SECTION("two sockets are refused") {
    pass_fds("2");
    const int extra = ::dup(3);
    REQUIRE(::dup2(extra, 4) == 4);
    if (extra != 4) ::close(extra);
    CHECK_FALSE(inherited_listening_socket(listen, ec, detail));
    CHECK(ec == std::errc::invalid_argument);
    CHECK(detail.find("ListenStream") != std::string::npos);
  }
  if (saved >= 0) {
    ::dup2(saved, 3);
    ::close(saved);
  } else {
    ::close(3);
  }
  ::unlink(path.c_str());
}
