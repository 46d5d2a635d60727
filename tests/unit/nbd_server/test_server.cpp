// nbd::Server on a temporary unix socket over a MemoryBlockDevice, driven by libnbd (the
// reference client) and, where exact bytes or timing matter, by a raw socket client.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <libnbd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <future>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "common/bytes.hpp"
#include "common/hex.hpp"
#include "eventually.hpp"
#include "memory_block_device.hpp"
#include "nbd/request.hpp"
#include "nbd/wire.hpp"
#include "nbd_server/server.hpp"

namespace {

// Hex with spaces between fields, as written in the tests, to the form to_hex() produces.
inline std::string hex(std::string_view spaced) {
  return common::to_hex(common::from_hex(spaced));
}

using namespace std::chrono_literals;
using test::eventually;
using test::MemoryBlockDevice;

std::string temp_socket_path() {
  static std::atomic<int> counter{0};
  return "/tmp/nbd-server-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) +
         ".sock";
}

std::vector<std::byte> pattern(size_t n, uint8_t seed) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((i * 7 + seed) & 0xff);
  return v;
}

// A Server on its own io_context thread.
struct Fixture {
  explicit Fixture(blockdev::DeviceInfo info = MemoryBlockDevice::make_info(),
                   std::function<void(nbd::ServerOptions&)> tweak = {})
      : device(std::move(info)), path(temp_socket_path()) {
    nbd::ServerOptions options;
    options.listen = nbd::UnixEndpoint{path};
    options.export_name = "disk";
    options.description = "memory test disk";
    if (tweak) tweak(options);
    server.emplace(io, device, options);
    std::string detail;
    const auto ec = server->start(detail);
    INFO(detail);
    REQUIRE_FALSE(ec);
    thread = std::thread([this] { io.run(); });
  }

  ~Fixture() {
    if (!stopped) stop();
    work.reset();
    io.stop();
    thread.join();
  }

  // Returns whether on_drained ran within the limit.
  bool stop(std::chrono::milliseconds limit = 5s) {
    stopped = true;
    auto drained = std::make_shared<std::promise<void>>();
    auto future = drained->get_future();
    server->stop([drained] { drained->set_value(); });
    return future.wait_for(limit) == std::future_status::ready;
  }

  MemoryBlockDevice device;
  std::string path;
  boost::asio::io_context io;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work{
      io.get_executor()};
  std::optional<nbd::Server> server;
  std::thread thread;
  bool stopped = false;
};

// libnbd handle with client-side checks off, so bad requests reach the server.
struct Client {
  explicit Client(const std::string& uri, bool structured = true, bool full_info = false,
                  const char* meta_context = nullptr) {
    handle = nbd_create();
    REQUIRE(handle != nullptr);
    nbd_set_request_structured_replies(handle, structured);
    if (meta_context != nullptr) REQUIRE(nbd_add_meta_context(handle, meta_context) == 0);
    nbd_set_full_info(handle, full_info);
    nbd_set_strict_mode(handle, 0);
    const int rc = nbd_connect_uri(handle, uri.c_str());
    INFO((rc == 0 ? "" : nbd_get_error()));
    REQUIRE(rc == 0);
  }
  ~Client() { nbd_close(handle); }

  int pread(std::vector<std::byte>& buf, uint64_t offset) {
    return nbd_pread(handle, buf.data(), buf.size(), offset, 0);
  }
  int pwrite(const std::vector<std::byte>& buf, uint64_t offset, uint32_t flags = 0) {
    return nbd_pwrite(handle, buf.data(), buf.size(), offset, flags);
  }

  nbd_handle* handle = nullptr;
};

// A client speaking raw bytes: for exact reply bytes, ordering and misbehaviour.
struct RawClient {
  explicit RawClient(const std::string& path, bool structured = false) {
    fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(receive(18).size() == 18);
    send("00000003");  // fixed newstyle, no zeroes
    if (structured) {
      send("49484156454f5054 00000008 00000000");
      REQUIRE(common::to_hex(receive(20)) == hex("0003e889045565a9 00000008 00000001 00000000"));
    }
    send("49484156454f5054 00000001 00000004 6469736b");  // NBD_OPT_EXPORT_NAME "disk"
    REQUIRE(receive(10).size() == 10);
  }
  // A socket already in the transmission phase (the kernel's side of serve_connected()).
  struct Adopt {
    int fd;
  };
  explicit RawClient(Adopt connected) : fd(connected.fd) {}
  ~RawClient() { ::close(fd); }

  void send(std::string_view hex) { send_bytes(common::from_hex(hex)); }
  void send_bytes(std::span<const std::byte> bytes) {
    REQUIRE(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(bytes.size()));
  }
  void request(uint16_t type, uint64_t cookie, uint64_t offset, uint32_t length,
               uint16_t flags = 0) {
    std::array<std::byte, 28> header{};
    nbd::encode_request(nbd::Request{flags, type, cookie, offset, length}, header);
    send_bytes(header);
  }

  // Up to n bytes; fewer on EOF or timeout.
  std::vector<std::byte> receive(size_t n, std::chrono::milliseconds limit = 5s) {
    std::vector<std::byte> out(n);
    size_t got = 0;
    while (got < n) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(limit.count())) <= 0) break;
      const ssize_t r = ::recv(fd, out.data() + got, n - got, 0);
      if (r <= 0) break;
      got += static_cast<size_t>(r);
    }
    out.resize(got);
    return out;
  }
  bool at_eof(std::chrono::milliseconds limit = 5s) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(limit.count())) <= 0) return false;
    std::byte b;
    return ::recv(fd, &b, 1, 0) == 0;
  }
  bool nothing_within(std::chrono::milliseconds limit) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(limit.count())) == 0;
  }
  // Simple reply: returns {error, cookie}.
  std::pair<uint32_t, uint64_t> simple_reply() {
    const auto r = receive(16);
    REQUIRE(r.size() == 16);
    REQUIRE(common::load_be32(r, 0) == nbd::kSimpleReplyMagic);
    return {common::load_be32(r, 4), common::load_be64(r, 8)};
  }

  int fd = -1;
};

}  // namespace

TEST_CASE("server advertises the export as libnbd sees it", "[nbd_server]") {
  Fixture f;
  CHECK(f.server->endpoint_uri() == "nbd+unix:///disk?socket=" + f.path);
  Client c(f.server->endpoint_uri(), true, true);
  CHECK(nbd_get_size(c.handle) == 1 << 20);
  CHECK(nbd_is_read_only(c.handle) == 0);
  CHECK(nbd_can_flush(c.handle) == 1);
  CHECK(nbd_can_fua(c.handle) == 1);
  CHECK(nbd_can_trim(c.handle) == 1);
  CHECK(nbd_can_zero(c.handle) == 1);
  CHECK(nbd_can_fast_zero(c.handle) == 1);
  CHECK(nbd_can_multi_conn(c.handle) == 1);
  CHECK(nbd_can_df(c.handle) == 1);
  CHECK(nbd_get_block_size(c.handle, LIBNBD_SIZE_MINIMUM) == 512);
  CHECK(nbd_get_block_size(c.handle, LIBNBD_SIZE_PREFERRED) == 4096);
  CHECK(nbd_get_block_size(c.handle, LIBNBD_SIZE_MAXIMUM) == 1 << 20);
  char* name = nbd_get_canonical_export_name(c.handle);
  REQUIRE(name != nullptr);
  CHECK(std::string(name) == "disk");
  free(name);
  char* description = nbd_get_export_description(c.handle);
  REQUIRE(description != nullptr);
  CHECK(std::string(description) == "memory test disk");
  free(description);
}

TEST_CASE("read, write, flush, trim and zero round trip", "[nbd_server]") {
  const bool structured = GENERATE(true, false);
  INFO("structured replies: " << structured);
  Fixture f;
  Client c(f.server->endpoint_uri(), structured);
  CHECK(nbd_get_structured_replies_negotiated(c.handle) == (structured ? 1 : 0));

  const auto data = pattern(8192, 3);
  REQUIRE(c.pwrite(data, 4096) == 0);
  CHECK(f.device.read_bytes(4096, 8192) == data);
  std::vector<std::byte> back(8192);
  REQUIRE(c.pread(back, 4096) == 0);
  CHECK(back == data);

  REQUIRE(c.pwrite(data, 65536, LIBNBD_CMD_FLAG_FUA) == 0);
  CHECK(f.device.counters().fua_writes == 1);
  REQUIRE(nbd_flush(c.handle, 0) == 0);
  CHECK(f.device.counters().flushes == 1);

  REQUIRE(nbd_trim(c.handle, 4096, 4096, 0) == 0);
  CHECK(f.device.counters().trims == 1);
  CHECK(f.device.read_bytes(4096, 4096) == std::vector<std::byte>(4096));
  CHECK(f.device.read_bytes(8192, 4096) == std::vector<std::byte>(data.begin() + 4096, data.end()));

  REQUIRE(nbd_zero(c.handle, 4096, 8192, 0) == 0);
  CHECK(f.device.read_bytes(8192, 4096) == std::vector<std::byte>(4096));
  CHECK(f.device.counters().unmapping_zeroes == 1);
  REQUIRE(nbd_zero(c.handle, 65536, 4096, LIBNBD_CMD_FLAG_NO_HOLE) == 0);
  CHECK(f.device.counters().write_zeroes == 2);
  CHECK(f.device.counters().unmapping_zeroes == 1);  // NO_HOLE: no unmap allowed

  // Fast zero is advertised but always refused quickly, per proto.md.
  CHECK(nbd_zero(c.handle, 0, 4096, LIBNBD_CMD_FLAG_FAST_ZERO) == -1);
  CHECK(nbd_get_errno() == ENOTSUP);
  CHECK(f.device.counters().write_zeroes == 2);

  // A large read exercises the gathered reply with a big payload.
  f.device.write_bytes(0, pattern(1 << 20, 9));
  std::vector<std::byte> all(1 << 20);
  REQUIRE(c.pread(all, 0) == 0);
  CHECK(all == pattern(1 << 20, 9));

  // Zero-length requests succeed without reaching the device.
  const auto before = f.device.counters().total();
  std::byte scratch{};  // libnbd wants a non-null buffer even for zero bytes
  CHECK(nbd_pread(c.handle, &scratch, 0, 0, 0) == 0);
  CHECK(nbd_pwrite(c.handle, &scratch, 0, 0, 0) == 0);
  CHECK(f.device.counters().total() == before);
}

TEST_CASE("bad requests get an error and the connection keeps working", "[nbd_server]") {
  const bool structured = GENERATE(true, false);
  INFO("structured replies: " << structured);
  Fixture f;
  Client c(f.server->endpoint_uri(), structured);
  std::vector<std::byte> buf(512);

  CHECK(c.pread(buf, 1 << 20) == -1);
  CHECK(nbd_get_errno() == EINVAL);
  CHECK(c.pwrite(buf, 1 << 20) == -1);  // payload drained, stream stays in step
  CHECK(nbd_get_errno() == ENOSPC);
  CHECK(c.pread(buf, 100) == -1);
  CHECK(nbd_get_errno() == EINVAL);
  std::vector<std::byte> odd(100);
  CHECK(c.pwrite(odd, 0) == -1);
  CHECK(nbd_get_errno() == EINVAL);
  std::vector<std::byte> too_big((1 << 20) + 512);
  CHECK(c.pread(too_big, 0) == -1);
  CHECK(nbd_get_errno() == EINVAL);
  CHECK(f.device.counters().total() == 0);

  f.device.fail_next(1, std::make_error_code(std::errc::io_error), "medium error");
  CHECK(c.pread(buf, 0) == -1);
  CHECK(nbd_get_errno() == EIO);
  f.device.fail_next(1, std::make_error_code(std::errc::no_space_on_device));
  CHECK(c.pwrite(buf, 0) == -1);
  CHECK(nbd_get_errno() == ENOSPC);

  const auto data = pattern(512, 1);
  REQUIRE(c.pwrite(data, 512) == 0);
  REQUIRE(c.pread(buf, 512) == 0);
  CHECK(buf == data);
}

TEST_CASE("read-only export refuses writes with EPERM", "[nbd_server]") {
  auto info = MemoryBlockDevice::make_info();
  info.read_only = true;
  Fixture f(info);
  Client c(f.server->endpoint_uri());
  CHECK(nbd_is_read_only(c.handle) == 1);
  std::vector<std::byte> buf(512);
  CHECK(c.pwrite(buf, 0) == -1);
  CHECK(nbd_get_errno() == EPERM);
  CHECK(c.pread(buf, 0) == 0);
}

TEST_CASE("two clients at once see each other's writes", "[nbd_server]") {
  Fixture f;
  Client a(f.server->endpoint_uri());
  Client b(f.server->endpoint_uri(), false);
  CHECK(eventually([&] { return f.server->connection_count() == 2; }));
  const auto one = pattern(4096, 1);
  const auto two = pattern(4096, 2);
  REQUIRE(a.pwrite(one, 0) == 0);
  REQUIRE(b.pwrite(two, 4096) == 0);
  std::vector<std::byte> buf(4096);
  REQUIRE(a.pread(buf, 4096) == 0);
  CHECK(buf == two);
  REQUIRE(b.pread(buf, 0) == 0);
  CHECK(buf == one);
}

TEST_CASE("replies go out in completion order, keyed by cookie", "[nbd_server]") {
  Fixture f;
  f.device.write_bytes(0, pattern(1024, 5));
  RawClient raw(f.path);
  f.device.set_defer(true);
  raw.request(nbd::kCmdRead, 1, 0, 512);
  raw.request(nbd::kCmdRead, 2, 512, 512);
  REQUIRE(eventually([&] { return f.device.deferred_count() == 2; }));
  CHECK(raw.nothing_within(50ms));

  REQUIRE(f.device.complete_deferred(1));  // the second request finishes first
  auto [error, cookie] = raw.simple_reply();
  CHECK(error == 0);
  CHECK(cookie == 2);
  CHECK(raw.receive(512) == f.device.read_bytes(512, 512));

  REQUIRE(f.device.complete_deferred(0));
  std::tie(error, cookie) = raw.simple_reply();
  CHECK(cookie == 1);
  CHECK(raw.receive(512) == f.device.read_bytes(0, 512));
}

TEST_CASE("structured read reply is one OFFSET_DATA chunk marked done", "[nbd_server]") {
  Fixture f;
  f.device.write_bytes(1024, pattern(512, 8));
  RawClient raw(f.path, true);
  raw.request(nbd::kCmdRead, 0x42, 1024, 512);
  CHECK(common::to_hex(raw.receive(28)) ==
        hex("668e33ef 0001 0001 0000000000000042 00000208 0000000000000400"));
  CHECK(raw.receive(512) == pattern(512, 8));

  raw.request(nbd::kCmdRead, 0x43, 1 << 20, 512);  // beyond the end: an ERROR chunk
  const auto header = raw.receive(20);
  REQUIRE(header.size() == 20);
  CHECK(common::to_hex(std::span(header).first(16)) == hex("668e33ef 0001 8001 0000000000000043"));
  const auto payload = raw.receive(common::load_be32(header, 16));
  CHECK(common::load_be32(payload, 0) == nbd::kEinval);
  CHECK(common::load_be16(payload, 4) == payload.size() - 6);
}

TEST_CASE("a bad request magic closes that connection only", "[nbd_server]") {
  Fixture f;
  Client good(f.server->endpoint_uri());
  RawClient bad(f.path);
  bad.send("deadbeef 0000 0000 0000000000000001 0000000000000000 00000200");
  CHECK(bad.at_eof());
  std::vector<std::byte> buf(512);
  CHECK(good.pread(buf, 0) == 0);
}

TEST_CASE("NBD_CMD_DISC: in-flight requests finish, then the server closes", "[nbd_server]") {
  Fixture f;
  RawClient raw(f.path);
  f.device.set_defer(true);
  raw.request(nbd::kCmdWrite, 7, 0, 512);
  raw.send_bytes(pattern(512, 4));
  raw.request(nbd::kCmdDisc, 8, 0, 0);
  REQUIRE(eventually([&] { return f.device.deferred_count() == 1; }));
  CHECK(raw.nothing_within(50ms));  // neither reply nor close before the write is done
  f.device.complete_all_deferred();
  const auto [error, cookie] = raw.simple_reply();
  CHECK(error == 0);
  CHECK(cookie == 7);
  CHECK(raw.at_eof());
  CHECK(f.device.read_bytes(0, 512) == pattern(512, 4));
  CHECK(eventually([&] { return f.server->connection_count() == 0; }));
}

TEST_CASE("libnbd shutdown sends NBD_CMD_DISC and the connection ends", "[nbd_server]") {
  Fixture f;
  Client c(f.server->endpoint_uri());
  REQUIRE(eventually([&] { return f.server->connection_count() == 1; }));
  CHECK(nbd_shutdown(c.handle, 0) == 0);
  CHECK(eventually([&] { return f.server->connection_count() == 0; }));
}

TEST_CASE("backpressure: no more than the limit in flight per connection", "[nbd_server]") {
  Fixture f(MemoryBlockDevice::make_info(),
            [](nbd::ServerOptions& o) { o.max_requests_per_connection = 2; });
  RawClient raw(f.path);
  f.device.set_defer(true);
  for (uint64_t cookie = 1; cookie <= 5; ++cookie) raw.request(nbd::kCmdFlush, cookie, 0, 0);
  REQUIRE(eventually([&] { return f.device.deferred_count() == 2; }));
  std::this_thread::sleep_for(50ms);
  CHECK(f.device.deferred_count() == 2);
  size_t replies = 0;
  while (replies < 5) {
    REQUIRE(eventually([&] { return f.device.deferred_count() > 0; }));
    CHECK(f.device.deferred_count() <= 2);
    f.device.complete_deferred(0);
    CHECK(raw.simple_reply().first == 0);
    ++replies;
  }
  CHECK(f.device.counters().flushes == 5);
}

TEST_CASE("stop() drains in-flight requests before closing", "[nbd_server]") {
  Fixture f;
  RawClient raw(f.path);
  f.device.set_defer(true);
  raw.request(nbd::kCmdWrite, 9, 0, 512);
  raw.send_bytes(pattern(512, 6));
  REQUIRE(eventually([&] { return f.device.deferred_count() == 1; }));

  std::atomic<bool> drained{false};
  f.stopped = true;
  f.server->stop([&] { drained = true; });
  REQUIRE(eventually([&] {
    struct stat st {};
    return ::lstat(f.path.c_str(), &st) != 0;  // listener gone, socket file removed
  }));
  std::this_thread::sleep_for(50ms);
  CHECK_FALSE(drained);

  f.device.complete_all_deferred();
  const auto [error, cookie] = raw.simple_reply();
  CHECK(error == 0);
  CHECK(cookie == 9);
  CHECK(raw.at_eof());
  CHECK(eventually([&] { return drained.load(); }));
}

TEST_CASE("stop() with idle and handshaking clients completes", "[nbd_server]") {
  Fixture f;
  Client idle(f.server->endpoint_uri());
  const int handshaking = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, f.path.c_str(), sizeof addr.sun_path - 1);
  REQUIRE(::connect(handshaking, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(eventually([&] { return f.server->connection_count() == 2; }));
  CHECK(f.stop());
  CHECK(f.server->connection_count() == 0);
  ::close(handshaking);
}

TEST_CASE("start() replaces a stale socket but refuses a live one", "[nbd_server]") {
  Fixture f;
  MemoryBlockDevice other_device;
  boost::asio::io_context io;
  nbd::ServerOptions options;
  options.listen = nbd::UnixEndpoint{f.path};
  options.export_name = "disk";
  nbd::Server second(io, other_device, options);
  std::string detail;
  CHECK(second.start(detail) == std::errc::address_in_use);
  CHECK(detail.find("listening") != std::string::npos);

  SECTION("a socket file whose server is gone is replaced") {
    const std::string stale = temp_socket_path();
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, stale.c_str(), sizeof addr.sun_path - 1);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    ::close(fd);
    options.listen = nbd::UnixEndpoint{stale};
    nbd::Server third(io, other_device, options);
    CHECK_FALSE(third.start(detail));
    third.stop({});
    io.run();
    struct stat st {};
    CHECK(::lstat(stale.c_str(), &st) != 0);
  }
  SECTION("a regular file is never removed") {
    const std::string file = temp_socket_path();
    ::close(::open(file.c_str(), O_CREAT | O_WRONLY, 0600));
    options.listen = nbd::UnixEndpoint{file};
    nbd::Server third(io, other_device, options);
    CHECK(third.start(detail) == std::errc::file_exists);
    struct stat st {};
    CHECK(::lstat(file.c_str(), &st) == 0);
    ::unlink(file.c_str());
  }
}

TEST_CASE("TCP listener on loopback with an ephemeral port", "[nbd_server]") {
  MemoryBlockDevice device;
  device.write_bytes(0, pattern(512, 2));
  boost::asio::io_context io;
  nbd::ServerOptions options;
  options.listen = nbd::TcpEndpoint{"127.0.0.1", 0};
  options.export_name = "disk";
  nbd::Server server(io, device, options);
  std::string detail;
  REQUIRE_FALSE(server.start(detail));
  const std::string uri = server.endpoint_uri();
  CHECK(uri.rfind("nbd://127.0.0.1:", 0) == 0);
  CHECK(uri.find(":0/") == std::string::npos);
  std::thread thread([&] { io.run(); });
  {
    Client c(uri);
    std::vector<std::byte> buf(512);
    CHECK(c.pread(buf, 0) == 0);
    CHECK(buf == pattern(512, 2));
  }
  std::promise<void> drained;
  server.stop([&] { drained.set_value(); });
  CHECK(drained.get_future().wait_for(5s) == std::future_status::ready);
  thread.join();  // nothing left to run once drained
}

namespace {

// serve_connected() on the server's own thread, as the contract asks.
std::error_code serve_on_io_thread(Fixture& f, int fd) {
  std::promise<std::error_code> result;
  boost::asio::post(f.io, [&] {
    std::string detail;
    result.set_value(f.server->serve_connected(fd, "kernel", detail));
  });
  return result.get_future().get();
}

std::pair<int, int> stream_pair() {
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
  return {fds[0], fds[1]};
}

}  // namespace

TEST_CASE("serve_connected: no handshake, simple replies from the first byte", "[nbd_server]") {
  Fixture f;
  const auto [ours, kernels] = stream_pair();
  REQUIRE_FALSE(serve_on_io_thread(f, ours));
  RawClient kernel(RawClient::Adopt{kernels});
  CHECK(eventually([&] { return f.server->connection_count() == 1; }));

  // The first bytes on the wire are a request, not NBDMAGIC: nothing arrives unasked.
  CHECK(kernel.nothing_within(50ms));
  kernel.request(nbd::kCmdWrite, 0x1122334455667788, 4096, 512);
  kernel.send_bytes(pattern(512, 9));
  CHECK(common::to_hex(kernel.receive(16)) == hex("67446698 00000000 1122334455667788"));
  CHECK(f.device.read_bytes(4096, 512) == pattern(512, 9));

  kernel.request(nbd::kCmdRead, 2, 4096, 512);
  CHECK(common::to_hex(kernel.receive(16)) == hex("67446698 00000000 0000000000000002"));
  CHECK(kernel.receive(512) == pattern(512, 9));

  // DF needs structured replies, which this connection never negotiated.
  kernel.request(nbd::kCmdRead, 3, 0, 512, nbd::kCmdFlagDf);
  CHECK(kernel.simple_reply() == std::pair<uint32_t, uint64_t>{nbd::kEinval, 3});

  kernel.request(nbd::kCmdDisc, 4, 0, 0);
  CHECK(kernel.at_eof());
  CHECK(eventually([&] { return f.server->connection_count() == 0; }));
}

namespace {

// The kernel's end of a socketpair whose other end the fixture's server serves.
int connect_kernel(Fixture& f) {
  const auto [ours, kernels] = stream_pair();
  REQUIRE_FALSE(serve_on_io_thread(f, ours));
  return kernels;
}

// Server::release_connected() under way; outcome() waits for its end.
class Release {
 public:
  Release(Fixture& f, std::vector<std::string> exports, std::chrono::milliseconds quiet_within) {
    f.server->release_connected(std::move(exports), quiet_within,
                                [this](nbd::Server::Released r) { promise_.set_value(r); });
  }
  nbd::Server::Released outcome() {
    auto future = promise_.get_future();
    REQUIRE(future.wait_for(5s) == std::future_status::ready);
    return future.get();
  }

 private:
  std::promise<nbd::Server::Released> promise_;
};

// What the kernel's next send meets once the receive side is shut: EPIPE, which makes the
// driver requeue that request for the next connection instead of waiting for an answer.
bool send_refused(int fd) {
  std::array<std::byte, 28> header{};
  nbd::encode_request(nbd::Request{0, nbd::kCmdRead, 9, 0, 512}, header);
  return ::send(fd, header.data(), header.size(), MSG_NOSIGNAL) < 0 && errno == EPIPE;
}

}  // namespace

TEST_CASE("release_connected: closes the kernel's socket at a quiet moment", "[nbd_server]") {
  Fixture f;
  const int kernels = connect_kernel(f);
  RawClient kernel(RawClient::Adopt{kernels});
  kernel.request(nbd::kCmdRead, 1, 0, 512);
  CHECK(kernel.simple_reply() == std::pair<uint32_t, uint64_t>{0, 1});
  CHECK(kernel.receive(512).size() == 512);

  const auto released = Release(f, {"disk"}, 2s).outcome();
  CHECK(released.quiet == 1);
  CHECK(released.forced == 0);
  CHECK(kernel.at_eof());
  CHECK(send_refused(kernels));
  // The listener and its clients are another matter: stop() ends them.
  CHECK(f.server->endpoint_uri() != "");
}

TEST_CASE("release_connected: waits for the answers before it closes", "[nbd_server]") {
  Fixture f;
  RawClient kernel(RawClient::Adopt{connect_kernel(f)});
  f.device.set_defer(true);
  kernel.request(nbd::kCmdRead, 7, 0, 512);
  REQUIRE(eventually([&] { return f.device.deferred_count() == 1; }));
  Release release(f, {"disk"}, 5s);
  // Not quiet while the read is unanswered: the socket stays open and a new request is taken.
  CHECK(kernel.nothing_within(50ms));
  kernel.request(nbd::kCmdRead, 8, 512, 512);
  REQUIRE(eventually([&] { return f.device.deferred_count() == 2; }));
  f.device.complete_all_deferred();
  std::set<uint64_t> answered;
  for (int i = 0; i < 2; ++i) {
    const auto [error, cookie] = kernel.simple_reply();
    CHECK(error == 0);
    answered.insert(cookie);
    CHECK(kernel.receive(512).size() == 512);
  }
  CHECK(answered == std::set<uint64_t>{7, 8});
  CHECK(kernel.at_eof());
  CHECK(release.outcome().quiet == 1);
}

TEST_CASE("release_connected: without a quiet moment, shuts down at the deadline", "[nbd_server]") {
  Fixture f;
  const int kernels = connect_kernel(f);
  RawClient kernel(RawClient::Adopt{kernels});
  f.device.set_defer(true);
  kernel.request(nbd::kCmdRead, 3, 0, 512);
  REQUIRE(eventually([&] { return f.device.deferred_count() == 1; }));
  Release release(f, {"disk"}, 100ms);
  // After the deadline the kernel's sends fail (requeued by the driver); what was read is
  // still answered before the socket closes.
  std::this_thread::sleep_for(500ms);
  CHECK(send_refused(kernels));
  f.device.complete_all_deferred();
  CHECK(kernel.simple_reply() == std::pair<uint32_t, uint64_t>{0, 3});
  CHECK(kernel.receive(512).size() == 512);
  CHECK(kernel.at_eof());
  CHECK(release.outcome().forced == 1);
}

TEST_CASE("release_connected: another export's connection is left alone", "[nbd_server]") {
  Fixture f;
  RawClient kernel(RawClient::Adopt{connect_kernel(f)});
  const auto released = Release(f, {"other"}, 1s).outcome();
  CHECK(released.quiet + released.forced == 0);
  kernel.request(nbd::kCmdRead, 4, 0, 512);
  CHECK(kernel.simple_reply() == std::pair<uint32_t, uint64_t>{0, 4});
}

TEST_CASE("serve_connected: stop() drains and closes it like any connection", "[nbd_server]") {
  Fixture f;
  const auto [ours, kernels] = stream_pair();
  REQUIRE_FALSE(serve_on_io_thread(f, ours));
  RawClient kernel(RawClient::Adopt{kernels});
  f.device.set_defer(true);
  kernel.request(nbd::kCmdRead, 5, 0, 512);
  REQUIRE(eventually([&] { return f.device.deferred_count() == 1; }));
  std::promise<void> drained;
  f.stopped = true;
  f.server->stop([&] { drained.set_value(); });
  CHECK(kernel.nothing_within(50ms));
  f.device.complete_all_deferred();
  CHECK(kernel.simple_reply() == std::pair<uint32_t, uint64_t>{0, 5});
  CHECK(kernel.receive(512).size() == 512);
  CHECK(kernel.at_eof());
  CHECK(drained.get_future().wait_for(5s) == std::future_status::ready);

  // Once stopping, a new socket is refused and closed.
  const auto [late_ours, late_kernels] = stream_pair();
  CHECK(serve_on_io_thread(f, late_ours) == std::errc::operation_canceled);
  RawClient late(RawClient::Adopt{late_kernels});
  CHECK(late.at_eof());
}

TEST_CASE("counters(): requests read and those answered with an error", "[nbd_server]") {
  Fixture f;
  CHECK(f.server->counters().requests == 0);
  Client c(f.server->endpoint_uri());
  std::vector<std::byte> buf(512);
  REQUIRE(c.pwrite(pattern(512, 3), 0) == 0);
  REQUIRE(c.pread(buf, 0) == 0);
  CHECK(c.pread(buf, 100) == -1);  // invalid: misaligned
  f.device.fail_next(1, std::make_error_code(std::errc::io_error), "medium error");
  CHECK(c.pread(buf, 0) == -1);  // failed on the device
  // The error reply may be on the wire before the counter is read on the io thread.
  CHECK(eventually([&] { return f.server->counters().requests == 4; }));
  CHECK(f.server->counters().errors == 2);
}

namespace {

// Phases of `count` deferred reads of `length` bytes on one raw connection: all are read by the
// server before any completes, then all complete and their replies are read.
struct ReadPhases {
  Fixture& f;
  RawClient raw;
  uint64_t cookie = 0;

  void phase(size_t count, uint32_t length) {
    for (size_t i = 0; i < count; ++i)
      raw.request(nbd::kCmdRead, ++cookie, (i * length) % (4u << 20), length);
    REQUIRE(eventually([&] { return f.device.deferred_count() == count; }));
    CHECK(f.device.complete_all_deferred() == count);
    for (size_t i = 0; i < count; ++i) {
      REQUIRE(raw.simple_reply().first == 0);
      REQUIRE(raw.receive(length).size() == length);
    }
  }
};

constexpr uint32_t kLargeRead = 256u << 10;

}  // namespace

TEST_CASE("kept payload buffers stay within twice the byte budget, whatever the size mix",
          "[nbd_server]") {
  // Phases of four 256 KiB reads and of 64 reads of 4 KiB. Ops are reused last-in first-out,
  // so without a bound every large phase would grow four more kept ops to 256 KiB.
  constexpr uint32_t kBudget = 1u << 20;
  Fixture f(MemoryBlockDevice::make_info(4u << 20), [](nbd::ServerOptions& o) {
    o.max_bytes_per_connection = kBudget;
    o.max_requests_per_connection = 64;
    o.idle_buffer_release = std::chrono::milliseconds(0);  // however slow the machine
  });
  {
    ReadPhases reads{f, RawClient(f.path)};
    f.device.set_defer(true);
    for (int round = 0; round < 6; ++round) {
      INFO("round " << round);
      reads.phase(4, kLargeRead);
      CHECK(f.server->counters().buffer_bytes <= 2 * kBudget);
      reads.phase(64, 4096);
      CHECK(f.server->counters().buffer_bytes <= 2 * kBudget);
    }
  }
  // The connection's ops, and their buffers, go when the client does.
  CHECK(eventually([&] { return f.server->counters().buffer_bytes == 0; }));
}

TEST_CASE("a client that keeps its byte budget full reuses its buffers", "[nbd_server]") {
  // Eight 256 KiB reads at a time against a 1 MiB budget: four are in flight, the rest wait
  // for them. Every answered request's buffer must serve a waiting one; trimming kept buffers
  // against everything held (in flight included) freed each of them and allocated a new one
  // per request, a map, unmap and page faults per request at 1 MiB.
  constexpr uint32_t kBudget = 1u << 20;
  Fixture f(MemoryBlockDevice::make_info(4u << 20), [](nbd::ServerOptions& o) {
    o.max_bytes_per_connection = kBudget;
    o.max_requests_per_connection = 64;
    o.idle_buffer_release = std::chrono::milliseconds(0);  // however slow the machine
  });
  RawClient raw(f.path);
  f.device.set_defer(true);
  uint64_t cookie = 0;
  auto round = [&] {
    for (int i = 0; i < 8; ++i) {
      ++cookie;
      raw.request(nbd::kCmdRead, cookie, (cookie * kLargeRead) % (4u << 20), kLargeRead);
    }
    for (int answered = 0; answered < 8;) {
      REQUIRE(eventually([&] { return f.device.deferred_count() > 0; }));
      const size_t done = f.device.complete_all_deferred();
      for (size_t i = 0; i < done; ++i) {
        REQUIRE(raw.simple_reply().first == 0);
        REQUIRE(raw.receive(kLargeRead).size() == kLargeRead);
      }
      answered += static_cast<int>(done);
    }
  };
  round();
  round();
  const uint64_t allocated = f.server->counters().buffer_allocations;
  CHECK(allocated <= 8);
  for (int i = 0; i < 6; ++i) round();
  CHECK(f.server->counters().buffer_allocations == allocated);
  CHECK(f.server->counters().buffer_bytes <= 2 * kBudget);
}

TEST_CASE("kept payload buffers are reused when a request size comes back", "[nbd_server]") {
  // A budget the phases never reach: at the bound, which kept buffers are trimmed depends on
  // how replies and requests interleave, and reuse could not be told from a trim and a new
  // allocation.
  Fixture f(MemoryBlockDevice::make_info(4u << 20), [](nbd::ServerOptions& o) {
    o.max_bytes_per_connection = 4u << 20;
    o.max_requests_per_connection = 64;
    o.idle_buffer_release = std::chrono::milliseconds(0);  // however slow the machine
  });
  ReadPhases reads{f, RawClient(f.path)};
  f.device.set_defer(true);
  reads.phase(4, kLargeRead);
  reads.phase(64, 4096);
  reads.phase(4, kLargeRead);
  const uint64_t held = f.server->counters().buffer_bytes;
  CHECK(held >= 4 * kLargeRead);
  // The last four ops out are the first four in (last in, first out): their 256 KiB buffers
  // serve the next large phase, which allocates nothing.
  reads.phase(4, kLargeRead);
  CHECK(f.server->counters().buffer_bytes == held);
}

TEST_CASE("an idle connection gives its kept payload buffers back and serves on", "[nbd_server]") {
  Fixture f(MemoryBlockDevice::make_info(4u << 20), [](nbd::ServerOptions& o) {
    o.max_requests_per_connection = 64;
    o.idle_buffer_release = std::chrono::milliseconds(100);
  });
  ReadPhases reads{f, RawClient(f.path)};
  f.device.set_defer(true);
  reads.phase(4, kLargeRead);
  // No request after the phase: released within a period or two, the client still connected.
  CHECK(eventually([&] { return f.server->counters().buffer_bytes == 0; }));
  CHECK(f.server->counters().connections == 1);
  // The next requests grow buffers again.
  reads.phase(4, kLargeRead);
  CHECK(eventually([&] { return f.server->counters().buffer_bytes == 0; }));
}

// --- the payload budget every connection shares (ServerOptions::max_bytes_total) ---------------

namespace {

constexpr uint32_t kQuarter = 256u << 10;

// A server whose connections share a 1 MiB payload budget, each alone allowed 8 MiB; requests
// wait at the device until the test completes them.
Fixture shared_budget_fixture(size_t total = 1u << 20) {
  return Fixture(MemoryBlockDevice::make_info(4u << 20), [total](nbd::ServerOptions& o) {
    o.max_bytes_total = total;
    o.max_bytes_per_connection = 8u << 20;
    o.max_requests_per_connection = 64;
    o.idle_buffer_release = std::chrono::milliseconds(0);  // however slow the machine
  });
}

// Reads `count` replies of `length` bytes, checking the data against the device's.
void read_replies(Fixture& f, RawClient& raw, size_t count, uint32_t length, uint64_t offset) {
  for (size_t i = 0; i < count; ++i) {
    const auto [error, cookie] = raw.simple_reply();
    REQUIRE(error == 0);
    (void)cookie;
    REQUIRE(raw.receive(length) == f.device.read_bytes(offset, length));
  }
}

}  // namespace

TEST_CASE("connections share the payload budget: one above it waits until another gives back",
          "[nbd_server][budget]") {
  Fixture f = shared_budget_fixture();
  f.device.write_bytes(0, pattern(kQuarter, 5));
  f.device.set_defer(true);
  RawClient a(f.path), b(f.path);
  // A fills the budget with four reads at the device.
  for (uint64_t i = 1; i <= 4; ++i) a.request(nbd::kCmdRead, i, 0, kQuarter);
  REQUIRE(eventually([&] { return f.device.deferred_count() == 4; }));
  CHECK(f.server->counters().buffer_bytes == 4 * kQuarter);
  // B has nothing in flight: its first read runs above the budget. Its second waits, unread.
  b.request(nbd::kCmdRead, 11, 0, kQuarter);
  REQUIRE(eventually([&] { return f.device.deferred_count() == 5; }));
  b.request(nbd::kCmdRead, 12, 0, kQuarter);
  CHECK(eventually([&] { return f.server->counters().buffer_waits == 1; }));
  std::this_thread::sleep_for(50ms);
  CHECK(f.device.deferred_count() == 5);
  CHECK(f.server->counters().buffer_bytes == 5 * kQuarter);
  // One of A's reads done: still 1 MiB held, B's 256 KiB does not fit. Two: it does.
  CHECK(f.device.complete_deferred(0));
  read_replies(f, a, 1, kQuarter, 0);
  std::this_thread::sleep_for(50ms);
  CHECK(f.device.deferred_count() == 4);
  CHECK(f.device.complete_deferred(0));
  read_replies(f, a, 1, kQuarter, 0);
  REQUIRE(eventually([&] { return f.device.deferred_count() == 4; }));
  // No buffer is kept while B waits: what came back served B.
  CHECK(f.server->counters().buffer_bytes == 4 * kQuarter);
  CHECK(f.device.complete_all_deferred() == 4);
  read_replies(f, a, 2, kQuarter, 0);
  read_replies(f, b, 2, kQuarter, 0);
}

TEST_CASE("a request larger than the shared budget runs when its connection holds nothing",
          "[nbd_server][budget]") {
  Fixture f = shared_budget_fixture(kQuarter);
  f.device.write_bytes(0, pattern(1u << 20, 6));
  f.device.set_defer(true);
  RawClient a(f.path), b(f.path);
  // A's read reaches the device before B's is sent: complete_deferred(0) below must be A's.
  a.request(nbd::kCmdRead, 1, 0, 1u << 20);
  REQUIRE(eventually([&] { return f.device.deferred_count() == 1; }));
  b.request(nbd::kCmdRead, 2, 0, 1u << 20);
  REQUIRE(eventually([&] { return f.device.deferred_count() == 2; }));
  // A's second read waits for its first, B's for its own.
  a.request(nbd::kCmdRead, 3, 0, 1u << 20);
  CHECK(eventually([&] { return f.server->counters().buffer_waits == 1; }));
  std::this_thread::sleep_for(50ms);
  CHECK(f.device.deferred_count() == 2);
  // A's first read done and its reply read (a reply larger than the socket's buffer is written
  // as the client reads): A holds nothing, its second read goes.
  CHECK(f.device.complete_deferred(0));
  read_replies(f, a, 1, 1u << 20, 0);
  REQUIRE(eventually([&] { return f.device.deferred_count() == 2; }));
  CHECK(f.device.complete_all_deferred() == 2);
  read_replies(f, b, 1, 1u << 20, 0);
  read_replies(f, a, 1, 1u << 20, 0);
  // Nothing is kept above the budget.
  CHECK(eventually([&] { return f.server->counters().buffer_bytes == 0; }));
}

TEST_CASE("buffers kept for reuse are freed when another connection needs the budget",
          "[nbd_server][budget]") {
  Fixture f = shared_budget_fixture();
  f.device.set_defer(true);
  ReadPhases reads{f, RawClient(f.path)};
  reads.phase(4, kQuarter);
  // A is idle and keeps its four buffers: the whole budget.
  CHECK(eventually([&] { return f.server->counters().buffer_bytes == 4 * kQuarter; }));
  RawClient b(f.path);
  b.request(nbd::kCmdRead, 1, 0, kQuarter);
  REQUIRE(eventually([&] { return f.device.deferred_count() == 1; }));
  // B's buffer, and nothing kept: A's went before the budget was exceeded.
  CHECK(eventually([&] { return f.server->counters().buffer_bytes == kQuarter; }));
  CHECK(f.device.complete_all_deferred() == 1);
  read_replies(f, b, 1, kQuarter, 0);
  // A serves on.
  reads.phase(4, kQuarter);
}

TEST_CASE("requests packed into one send, or a header split across sends, are read in order",
          "[nbd_server]") {
  Fixture f;
  RawClient raw(f.path);
  // A WRITE with its payload and a READ of the same block, in one send: the reader takes the
  // second header from what the first read brought in.
  std::vector<std::byte> burst(28 + 512 + 28);
  nbd::encode_request(nbd::Request{0, nbd::kCmdWrite, 1, 1024, 512},
                      std::span<std::byte, 28>(burst.data(), 28));
  const auto data = pattern(512, 3);
  std::copy(data.begin(), data.end(), burst.begin() + 28);
  nbd::encode_request(nbd::Request{0, nbd::kCmdRead, 2, 1024, 512},
                      std::span<std::byte, 28>(burst.data() + 28 + 512, 28));
  raw.send_bytes(burst);
  auto [error, cookie] = raw.simple_reply();
  CHECK(error == 0);
  CHECK(cookie == 1);
  std::tie(error, cookie) = raw.simple_reply();
  CHECK(cookie == 2);
  CHECK(raw.receive(512) == data);
  CHECK(f.device.read_bytes(1024, 512) == data);

  // A header in two pieces with a pause between: nothing is answered until it is whole.
  std::array<std::byte, 28> header{};
  nbd::encode_request(nbd::Request{0, nbd::kCmdRead, 3, 1024, 512}, header);
  raw.send_bytes(std::span(header).first(10));
  CHECK(raw.nothing_within(50ms));
  raw.send_bytes(std::span(header).subspan(10));
  std::tie(error, cookie) = raw.simple_reply();
  CHECK(error == 0);
  CHECK(cookie == 3);
  CHECK(raw.receive(512) == data);
}

// --- NBD_CMD_BLOCK_STATUS over base:allocation ------------------------------------------------

namespace {

// A libnbd client that asks for base:allocation, and the extents one block status returns as
// (length, flags) pairs.
struct MapClient : Client {
  explicit MapClient(const std::string& uri) : Client(uri, true, false, "base:allocation") {}
};

std::vector<std::pair<uint32_t, uint32_t>> block_status(Client& c, uint64_t count, uint64_t offset,
                                                        uint32_t flags, int& rc) {
  std::vector<std::pair<uint32_t, uint32_t>> out;
  nbd_extent_callback cb{};
  cb.user_data = &out;
  cb.callback = [](void* user, const char* context, uint64_t, uint32_t* entries, size_t n, int*) {
    auto& extents = *static_cast<std::vector<std::pair<uint32_t, uint32_t>>*>(user);
    if (std::string_view(context) != "base:allocation") return 0;
    for (size_t i = 0; i + 1 < n; i += 2) extents.emplace_back(entries[i], entries[i + 1]);
    return 0;
  };
  rc = nbd_block_status(c.handle, count, offset, cb, flags);
  return out;
}

using Extents = std::vector<std::pair<uint32_t, uint32_t>>;

}  // namespace

TEST_CASE("block status: holes and data of the device, REQ_ONE, bounds", "[nbd_server]") {
  auto info = MemoryBlockDevice::make_info();
  info.supports_block_status = true;
  Fixture f(info);
  f.device.write_bytes(4096, pattern(1024, 3));
  MapClient c(f.server->endpoint_uri());
  REQUIRE(nbd_can_meta_context(c.handle, "base:allocation") == 1);
  int rc = 0;
  CHECK(block_status(c, 16384, 0, 0, rc) == Extents{{4096, 3}, {1024, 0}, {11264, 3}});
  CHECK(rc == 0);
  CHECK(block_status(c, 16384, 4096, LIBNBD_CMD_FLAG_REQ_ONE, rc) == Extents{{1024, 0}});
  CHECK(rc == 0);
  CHECK(f.device.counters().block_statuses == 2);
  block_status(c, 1024, (1 << 20) - 512, 0, rc);
  CHECK(rc == -1);
  CHECK(nbd_get_errno() == EINVAL);
  f.device.fail_next(1, std::make_error_code(std::errc::io_error), "GET LBA STATUS failed");
  block_status(c, 512, 0, 0, rc);
  CHECK(rc == -1);
  CHECK(nbd_get_errno() == EIO);
  CHECK(block_status(c, 512, 4096, 0, rc) == Extents{{512, 0}});  // still in step
}

TEST_CASE("block status of a device without provisioning: all data, device not asked",
          "[nbd_server]") {
  Fixture f;
  MapClient c(f.server->endpoint_uri());
  REQUIRE(nbd_can_meta_context(c.handle, "base:allocation") == 1);
  int rc = 0;
  CHECK(block_status(c, 1 << 20, 0, 0, rc) == Extents{{1u << 20, 0}});
  CHECK(rc == 0);
  CHECK(f.device.counters().total() == 0);
}

TEST_CASE("block status without the context selected is EINVAL", "[nbd_server]") {
  auto info = MemoryBlockDevice::make_info();
  info.supports_block_status = true;
  Fixture f(info);
  Client c(f.server->endpoint_uri());
  CHECK(nbd_can_meta_context(c.handle, "base:allocation") == 0);
  int rc = 0;
  block_status(c, 512, 0, 0, rc);
  CHECK(rc == -1);
  CHECK(nbd_get_errno() == EINVAL);
  CHECK(f.device.counters().total() == 0);
}

TEST_CASE("NBD_CMD_CACHE is offered and reaches the device only where it is supported",
          "[nbd_server]") {
  {
    Fixture f;
    Client c(f.server->endpoint_uri());
    CHECK(nbd_can_cache(c.handle) == 0);
  }
  auto info = MemoryBlockDevice::make_info();
  info.supports_cache = true;
  Fixture f(info);
  Client c(f.server->endpoint_uri());
  REQUIRE(nbd_can_cache(c.handle) == 1);
  CHECK(nbd_cache(c.handle, 4096, 0, 0) == 0);
  CHECK(f.device.counters().caches == 1);
}

namespace {

size_t open_fds() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd"))
    ++n;
  return n;
}

// A unix socket connected to `path`, without reading anything: -1 on failure.
int connect_unix(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// True once `fd` has the 18-byte greeting to read.
bool greeted(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN) != 0;
}

}  // namespace

TEST_CASE("accepting pauses to keep the descriptor reserve and resumes when clients go",
          "[nbd_server]") {
  // The server counts its descriptors before every accept: between counts it would estimate one
  // per client, and a client here costs two (both ends are in this process).
  Fixture f(MemoryBlockDevice::make_info(), [](nbd::ServerOptions& o) {
    o.fd_reserve = 8;
    o.fd_recount_interval = 0ms;
  });
  rlimit saved{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved) == 0);
  // Each client here costs two descriptors, its end and the server's: room for two above the
  // reserve and the one an accept needs.
  rlimit low = saved;
  low.rlim_cur = open_fds() + 8 + 1 + 4;
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
  const int first = connect_unix(f.path);
  const bool first_served = first >= 0 && greeted(first, 2000);
  const int second = connect_unix(f.path);
  const bool second_served = second >= 0 && greeted(second, 2000);
  const bool paused = eventually([&] { return f.server->counters().fd_reserve_pauses >= 1; });
  // The third waits in the listen backlog: no greeting while the reserve is short.
  const int third = connect_unix(f.path);
  const bool third_waits = third >= 0 && !greeted(third, 300);
  for (const int fd : {first, second, third})
    if (fd >= 0) ::close(fd);
  const int again = connect_unix(f.path);
  const bool resumed = again >= 0 && greeted(again, 3000);
  if (again >= 0) ::close(again);
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &saved) == 0);
  CHECK(first_served);
  CHECK(second_served);
  CHECK(paused);
  CHECK(third_waits);
  CHECK(resumed);
}
