// nbd::Server on a listening socket it is handed (ServerOptions::listening_fd), as systemd's
// socket activation hands one over: the test plays systemd, binding and listening itself and
// keeping its own descriptor across the server's life.
#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <libnbd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "bound_unix_socket.hpp"
#include "memory_block_device.hpp"
#include "nbd_server/server.hpp"

namespace {

using namespace std::chrono_literals;
using test::MemoryBlockDevice;

std::string temp_socket_path() {
  static std::atomic<int> counter{0};
  return "/tmp/nbd-listening-fd-test-" + std::to_string(::getpid()) + "-" +
         std::to_string(counter++) + ".sock";
}

// What systemd does for ListenStream=PATH: socket, bind, listen (when `listen_too`).
int bound_unix_socket(const std::string& path, int type = SOCK_STREAM, bool listen_too = true) {
  const int fd = test::bound_unix_socket(path, type, listen_too);
  REQUIRE(fd >= 0);
  return fd;
}

// A TCP socket listening on a free loopback port.
int listening_tcp_socket() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(fd, 4) == 0);
  return fd;
}

// Reads `n` bytes at offset 0 through libnbd; empty on failure (the error in `why`).
std::vector<std::byte> read_export(const std::string& uri, size_t n, std::string& why) {
  nbd_handle* handle = nbd_create();
  std::vector<std::byte> buf(n);
  if (nbd_connect_uri(handle, uri.c_str()) != 0 || nbd_pread(handle, buf.data(), n, 0, 0) != 0) {
    why = nbd_get_error() ? nbd_get_error() : "libnbd failed";
    buf.clear();
  }
  nbd_close(handle);
  return buf;
}

std::vector<std::byte> pattern(size_t n) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((i * 13 + 5) & 0xff);
  return v;
}

nbd::ServerOptions unix_options(const std::string& path, int fd) {
  nbd::ServerOptions options;
  options.listen = nbd::UnixEndpoint{path};
  options.listening_fd = fd;
  options.export_name = "disk";
  return options;
}

}  // namespace

TEST_CASE("a handed-over unix socket serves clients that connected before start()",
          "[nbd_server][listening_fd]") {
  const std::string path = temp_socket_path();
  const int held = bound_unix_socket(path);  // the "systemd" descriptor, kept throughout
  MemoryBlockDevice device;
  device.write_bytes(0, pattern(4096));
  const std::string uri = "nbd+unix:///disk?socket=" + path;

  // Connects while no server runs: it waits in the backlog instead of being refused.
  std::string why;
  auto early = std::async(std::launch::async, [&] { return read_export(uri, 4096, why); });
  CHECK(early.wait_for(200ms) == std::future_status::timeout);

  boost::asio::io_context io;
  nbd::Server server(io, device, unix_options(path, ::dup(held)));
  std::string detail;
  REQUIRE_FALSE(server.start(detail));
  CHECK(server.endpoint_uri() == uri);
  std::thread thread([&] { io.run(); });
  REQUIRE(early.wait_for(10s) == std::future_status::ready);
  const auto data = early.get();
  INFO(why);
  CHECK(data == pattern(4096));

  server.stop({});
  thread.join();
  // The file is its owner's: still there, and still accepting into the backlog.
  struct stat st {};
  CHECK(::lstat(path.c_str(), &st) == 0);
  const int probe = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  CHECK(::connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  ::close(probe);
  ::close(held);
  ::unlink(path.c_str());
}

TEST_CASE("a handed-over socket that does not match nbd.listen is refused",
          "[nbd_server][listening_fd]") {
  MemoryBlockDevice device;
  boost::asio::io_context io;
  const std::string path = temp_socket_path();
  std::string detail;

  SECTION("another unix path: both are named") {
    const std::string other = temp_socket_path();
    nbd::Server server(io, device, unix_options(path, bound_unix_socket(other)));
    CHECK(server.start(detail) == std::errc::invalid_argument);
    CHECK(detail.find("unix:" + other) != std::string::npos);
    CHECK(detail.find("unix:" + path) != std::string::npos);
    ::unlink(other.c_str());
  }
  SECTION("bound but not listening") {
    nbd::Server server(io, device, unix_options(path, bound_unix_socket(path, SOCK_STREAM, false)));
    CHECK(server.start(detail) == std::errc::invalid_argument);
    CHECK(detail.find("not a listening stream socket") != std::string::npos);
  }
  SECTION("a datagram socket") {
    nbd::Server server(io, device, unix_options(path, bound_unix_socket(path, SOCK_DGRAM, false)));
    CHECK(server.start(detail) == std::errc::invalid_argument);
    CHECK(detail.find("not a listening stream socket") != std::string::npos);
  }
  SECTION("not a socket at all") {
    int pipe_fds[2];
    REQUIRE(::pipe(pipe_fds) == 0);
    ::close(pipe_fds[1]);
    nbd::Server server(io, device, unix_options(path, pipe_fds[0]));
    CHECK(server.start(detail) == std::errc::invalid_argument);
    CHECK(detail.find("not a socket") != std::string::npos);
  }
  SECTION("a TCP socket where nbd.listen is a unix path") {
    nbd::Server server(io, device, unix_options(path, listening_tcp_socket()));
    CHECK(server.start(detail) == std::errc::invalid_argument);
    CHECK(detail.find("unix:" + path) != std::string::npos);
  }
  ::unlink(path.c_str());
}

TEST_CASE("a handed-over TCP socket: the port must match unless nbd.listen's is 0",
          "[nbd_server][listening_fd]") {
  const int fd = listening_tcp_socket();
  sockaddr_in addr{};
  socklen_t size = sizeof addr;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &size) == 0);
  const uint16_t port = ntohs(addr.sin_port);
  MemoryBlockDevice device;
  device.write_bytes(0, pattern(512));
  boost::asio::io_context io;
  nbd::ServerOptions options;
  options.export_name = "disk";
  std::string detail;

  SECTION("another port is refused, naming both") {
    options.listen = nbd::TcpEndpoint{"127.0.0.1", static_cast<uint16_t>(port == 1 ? 2 : 1)};
    options.listening_fd = ::dup(fd);
    nbd::Server server(io, device, options);
    CHECK(server.start(detail) == std::errc::invalid_argument);
    CHECK(detail.find("127.0.0.1:" + std::to_string(port)) != std::string::npos);
  }
  SECTION("the same port serves") {
    options.listen = nbd::TcpEndpoint{"127.0.0.1", port};
    options.listening_fd = ::dup(fd);
    nbd::Server server(io, device, options);
    REQUIRE_FALSE(server.start(detail));
    const std::string uri = "nbd://127.0.0.1:" + std::to_string(port) + "/disk";
    CHECK(server.endpoint_uri() == uri);
    std::thread thread([&] { io.run(); });
    std::string why;
    CHECK(read_export(uri, 512, why) == pattern(512));
    server.stop({});
    thread.join();
  }
  ::close(fd);
}
