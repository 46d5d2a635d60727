// nbd::Server with several exports (one per LUN) on one unix socket, added and removed while it
// runs: each client reaches only the device of the export it chose; a removed export's clients
// get EIO and new clients the removal reason; the other exports go on. Driven by libnbd.
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <libnbd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <functional>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "common/bytes.hpp"
#include "eventually.hpp"
#include "memory_block_device.hpp"
#include "nbd/request.hpp"
#include "nbd/wire.hpp"
#include "nbd_server/server.hpp"

namespace {

using namespace std::chrono_literals;
using test::eventually;
using test::MemoryBlockDevice;

std::vector<std::byte> filled(size_t n, uint8_t value) {
  return std::vector<std::byte>(n, std::byte{value});
}

// lun0: 1 MiB of 512-byte blocks (the default export); lun1: 2 MiB of 4096-byte blocks. The
// server starts with no export (Server(io, options)) and gets both from add_export().
struct TwoLuns {
  explicit TwoLuns(std::chrono::milliseconds linger = 30s,
                   blockdev::DeviceInfo lun1_info = MemoryBlockDevice::make_info(2 << 20, 4096))
      : lun0(MemoryBlockDevice::make_info(1 << 20, 512)), lun1(std::move(lun1_info)) {
    static std::atomic<int> counter{0};
    path = "/tmp/nbd-exports-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) +
           ".sock";
    nbd::ServerOptions options;
    options.listen = nbd::UnixEndpoint{path};
    options.removed_export_linger = linger;
    server.emplace(io, options);
    std::string detail;
    REQUIRE_FALSE(server->add_export({"lun0", "LUN 0 of iqn.test:two", false, lun0}, detail));
    REQUIRE_FALSE(server->add_export({"lun1", "LUN 1 of iqn.test:two", false, lun1}, detail));
    const auto ec = server->start(detail);
    INFO(detail);
    REQUIRE_FALSE(ec);
    thread = std::thread([this] { io.run(); });
  }

  ~TwoLuns() {
    auto drained = std::make_shared<std::promise<void>>();
    server->stop([drained] { drained->set_value(); });
    drained->get_future().wait_for(5s);
    work.reset();
    io.stop();
    thread.join();
  }

  // `call` on the server's thread (add_export, remove_export and serve_connected ask for it).
  std::error_code on_io_thread(
      const std::function<std::error_code(nbd::Server&, std::string&)>& call) {
    std::promise<std::error_code> result;
    boost::asio::post(io, [&] { result.set_value(call(*server, detail)); });
    return result.get_future().get();
  }

  MemoryBlockDevice lun0;
  MemoryBlockDevice lun1;
  std::string path;
  std::string detail;  // of the last on_io_thread call
  boost::asio::io_context io;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work{
      io.get_executor()};
  std::optional<nbd::Server> server;
  std::thread thread;
};

struct Client {
  explicit Client(const std::string& uri, const char* meta_context = nullptr) {
    handle = nbd_create();
    REQUIRE(handle != nullptr);
    if (meta_context != nullptr) REQUIRE(nbd_add_meta_context(handle, meta_context) == 0);
    // libnbd keeps the server's messages (an option's error reply, an error chunk's text) out
    // of nbd_get_error(); its debug log has them.
    nbd_set_debug(handle, true);
    nbd_set_debug_callback(handle, nbd_debug_callback{append_debug, &log, nullptr});
    connected = nbd_connect_uri(handle, uri.c_str()) == 0;
    if (!connected) error = nbd_get_error();
  }
  ~Client() { nbd_close(handle); }

  int pread(std::vector<std::byte>& buf, uint64_t offset) {
    return check(nbd_pread(handle, buf.data(), buf.size(), offset, 0));
  }
  int pwrite(const std::vector<std::byte>& buf, uint64_t offset) {
    return check(nbd_pwrite(handle, buf.data(), buf.size(), offset, 0));
  }

  nbd_handle* handle = nullptr;
  bool connected = false;
  std::string error;
  int errno_value = 0;
  std::string log;

 private:
  int check(int rc) {
    if (rc != 0) {
      error = nbd_get_error();
      errno_value = nbd_get_errno();
    }
    return rc;
  }
  static int append_debug(void* user_data, const char* context, const char* message) {
    *static_cast<std::string*>(user_data) += std::string(context) + ": " + message + "\n";
    return 0;
  }
};

int collect_export(void* user_data, const char* name, const char* description) {
  static_cast<std::vector<std::string>*>(user_data)->push_back(std::string(name) + ": " +
                                                               description);
  return 0;
}

}  // namespace

TEST_CASE("two exports on one server: each client reaches only its own device", "[nbd_server]") {
  TwoLuns f;
  CHECK(f.server->endpoint_uri() == "nbd+unix:///lun0?socket=" + f.path);
  CHECK(f.server->endpoint_uri("lun1") == "nbd+unix:///lun1?socket=" + f.path);

  SECTION("NBD_OPT_LIST lists both, with their descriptions") {
    nbd_handle* h = nbd_create();
    REQUIRE(h != nullptr);
    nbd_set_opt_mode(h, true);
    REQUIRE(nbd_connect_uri(h, f.server->endpoint_uri().c_str()) == 0);
    std::vector<std::string> listed;
    CHECK(nbd_opt_list(h, nbd_list_callback{collect_export, &listed, nullptr}) == 2);
    CHECK(listed ==
          std::vector<std::string>{"lun0: LUN 0 of iqn.test:two", "lun1: LUN 1 of iqn.test:two"});
    nbd_opt_abort(h);
    nbd_close(h);
  }

  Client c0(f.server->endpoint_uri("lun0"));
  Client c1(f.server->endpoint_uri("lun1"));
  REQUIRE(c0.connected);
  REQUIRE(c1.connected);
  CHECK(nbd_get_size(c0.handle) == 1 << 20);
  CHECK(nbd_get_size(c1.handle) == 2 << 20);
  CHECK(nbd_get_block_size(c0.handle, LIBNBD_SIZE_MINIMUM) == 512);
  CHECK(nbd_get_block_size(c1.handle, LIBNBD_SIZE_MINIMUM) == 4096);

  REQUIRE(c0.pwrite(filled(4096, 0xa0), 0) == 0);
  REQUIRE(c1.pwrite(filled(4096, 0xb1), 0) == 0);
  REQUIRE(c1.pwrite(filled(4096, 0xb2), (2 << 20) - 4096) == 0);  // beyond lun0's end
  CHECK(f.lun0.read_bytes(0, 4096) == filled(4096, 0xa0));
  CHECK(f.lun1.read_bytes(0, 4096) == filled(4096, 0xb1));
  CHECK(f.lun1.read_bytes((2 << 20) - 4096, 4096) == filled(4096, 0xb2));
  CHECK(f.lun0.counters().writes == 1);
  CHECK(f.lun1.counters().writes == 2);
  std::vector<std::byte> buf(4096);
  REQUIRE(c0.pread(buf, 0) == 0);
  CHECK(buf == filled(4096, 0xa0));

  // The empty name is the default export, the first one added.
  Client by_default("nbd+unix:///?socket=" + f.path);
  REQUIRE(by_default.connected);
  CHECK(nbd_get_size(by_default.handle) == 1 << 20);

  CHECK(eventually([&] { return f.server->counters("lun1").requests == 2; }));
  CHECK(f.server->counters("lun0").requests == 2);
  // A client is counted once its GO reply is written, which it may see first.
  CHECK(eventually([&] { return f.server->counters("lun0").connections == 2; }));
  CHECK(f.server->counters("lun1").connections == 1);
  CHECK(f.server->counters().requests == 4);
  CHECK(f.server->counters("lun9").requests == 0);
}

TEST_CASE("add_export refuses a name served already, remove_export one not served",
          "[nbd_server]") {
  TwoLuns f;
  MemoryBlockDevice other;
  CHECK(f.on_io_thread([&](nbd::Server& s, std::string& detail) {
    return s.add_export({"lun1", "again", false, other}, detail);
  }) == std::errc::file_exists);
  CHECK(f.detail == "export 'lun1' is served already");
  CHECK(f.on_io_thread([&](nbd::Server& s, std::string& detail) {
    return s.remove_export("lun7", "never there", detail);
  }) == std::errc::no_such_device);
  CHECK(f.detail == "no export 'lun7' is served");
  // lun1 is still the first device.
  Client c1(f.server->endpoint_uri("lun1"));
  REQUIRE(c1.connected);
  CHECK(nbd_get_size(c1.handle) == 2 << 20);

  SECTION("an export added at run time is served to the next client") {
    REQUIRE_FALSE(f.on_io_thread([&](nbd::Server& s, std::string& detail) {
      return s.add_export({"lun2", "LUN 2", true, other}, detail);
    }));
    Client c2(f.server->endpoint_uri("lun2"));
    REQUIRE(c2.connected);
    CHECK(nbd_is_read_only(c2.handle) == 1);
    CHECK(c2.pwrite(filled(512, 1), 0) == -1);
    CHECK(c2.errno_value == EPERM);
  }
}

TEST_CASE("remove_export: its clients get EIO, new ones the reason, the other export goes on",
          "[nbd_server]") {
  TwoLuns f;
  Client c0(f.server->endpoint_uri("lun0"));
  Client c1(f.server->endpoint_uri("lun1"));
  REQUIRE(c0.connected);
  REQUIRE(c1.connected);

  // A read in flight on lun0 when it goes: it completes normally.
  f.lun0.set_defer(true);
  std::vector<std::byte> in_flight(512);
  const int64_t cookie =
      nbd_aio_pread(c0.handle, in_flight.data(), in_flight.size(), 0, NBD_NULL_COMPLETION, 0);
  REQUIRE(cookie > 0);
  REQUIRE(eventually([&] {
    nbd_poll(c0.handle, 0);
    return f.lun0.deferred_count() == 1;
  }));

  std::atomic<bool> released{false};
  REQUIRE_FALSE(f.on_io_thread([&](nbd::Server& s, std::string& detail) {
    return s.remove_export("lun0", "LUN 0 went away on the target", detail,
                           [&] { released = true; });
  }));
  CHECK_FALSE(released);  // the read in flight still holds the device

  // The next request on the removed export: EIO with the reason, and the device never sees it.
  std::vector<std::byte> buf(512);
  CHECK(c0.pread(buf, 0) == -1);
  CHECK(c0.errno_value == EIO);
  CHECK_THAT(c0.log, Catch::Contains("export lun0 was removed: LUN 0 went away on the target"));
  CHECK(f.lun0.counters().reads == 1);

  f.lun0.complete_all_deferred();
  int done = 0;
  for (int i = 0; i < 500 && done == 0; ++i) {
    nbd_poll(c0.handle, 10);
    done = nbd_aio_command_completed(c0.handle, static_cast<uint64_t>(cookie));
  }
  CHECK(done == 1);

  // A new client asking for it is refused with the reason; the default export is gone too.
  Client late(f.server->endpoint_uri("lun0"));
  CHECK_FALSE(late.connected);
  CHECK_THAT(late.log, Catch::Contains("export lun0 was removed: LUN 0 went away on the target"));
  Client late_default("nbd+unix:///?socket=" + f.path);
  CHECK_FALSE(late_default.connected);

  // The other export is untouched.
  REQUIRE(c1.pwrite(filled(4096, 0xc1), 4096) == 0);
  std::vector<std::byte> block(4096);
  REQUIRE(c1.pread(block, 4096) == 0);
  CHECK(f.lun1.read_bytes(4096, 4096) == filled(4096, 0xc1));
  Client c1_again(f.server->endpoint_uri("lun1"));
  CHECK(c1_again.connected);

  // Once its last client is gone, the device is released.
  nbd_shutdown(c0.handle, 0);
  CHECK(eventually([&] { return released.load(); }));
  CHECK(f.server->counters("lun0").connections == 0);
  CHECK(f.server->counters("lun1").connections == 2);
}

TEST_CASE("remove_export: its connections close after the linger", "[nbd_server]") {
  TwoLuns f(50ms);
  Client c0(f.server->endpoint_uri("lun0"));
  Client c1(f.server->endpoint_uri("lun1"));
  REQUIRE(c0.connected);
  REQUIRE(c1.connected);
  REQUIRE(eventually([&] { return f.server->connection_count() == 2; }));
  std::atomic<bool> released{false};
  REQUIRE_FALSE(f.on_io_thread([&](nbd::Server& s, std::string& detail) {
    return s.remove_export("lun0", "gone", detail, [&] { released = true; });
  }));
  CHECK(eventually([&] { return f.server->connection_count() == 1; }));
  CHECK(eventually([&] { return released.load(); }));
  std::vector<std::byte> buf(4096);
  CHECK(c1.pread(buf, 0) == 0);

  SECTION("added again, the name serves the new device") {
    MemoryBlockDevice replacement(MemoryBlockDevice::make_info(3 << 20));
    REQUIRE_FALSE(f.on_io_thread([&](nbd::Server& s, std::string& detail) {
      return s.add_export({"lun0", "LUN 0, back", false, replacement}, detail);
    }));
    Client back(f.server->endpoint_uri("lun0"));
    REQUIRE(back.connected);
    CHECK(nbd_get_size(back.handle) == 3 << 20);
  }
}

TEST_CASE("serve_connected names its export; an unknown one is refused", "[nbd_server]") {
  TwoLuns f;
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
  REQUIRE_FALSE(f.on_io_thread([&](nbd::Server& s, std::string& detail) {
    return s.serve_connected(fds[0], "lun1", "kernel", detail);
  }));
  // A simple-reply WRITE of 4096 bytes at offset 8192, straight in the transmission phase.
  std::array<std::byte, 28> header{};
  nbd::encode_request(nbd::Request{0, nbd::kCmdWrite, 9, 8192, 4096}, header);
  const auto payload = filled(4096, 0xd4);
  REQUIRE(::send(fds[1], header.data(), header.size(), MSG_NOSIGNAL) == 28);
  REQUIRE(::send(fds[1], payload.data(), payload.size(), MSG_NOSIGNAL) == 4096);
  std::array<std::byte, 16> reply{};
  REQUIRE(::recv(fds[1], reply.data(), reply.size(), MSG_WAITALL) == 16);
  CHECK(common::load_be32(reply, 4) == 0);
  CHECK(f.lun1.read_bytes(8192, 4096) == payload);
  CHECK(f.lun0.counters().writes == 0);
  ::close(fds[1]);

  int late[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, late) == 0);
  CHECK(f.on_io_thread([&](nbd::Server& s, std::string& detail) {
    return s.serve_connected(late[0], "lun5", "kernel", detail);
  }) == std::errc::no_such_device);
  CHECK(f.detail == "no export 'lun5' is served");
  std::byte b{};
  CHECK(::recv(late[1], &b, 1, 0) == 0);  // closed
  ::close(late[1]);
}

TEST_CASE("a resized device is advertised with its new size to new clients", "[nbd_server]") {
  TwoLuns f;
  Client before(f.server->endpoint_uri("lun1"));
  REQUIRE(before.connected);
  CHECK(nbd_get_size(before.handle) == 2 << 20);
  REQUIRE_FALSE(f.on_io_thread([&](nbd::Server&, std::string&) {
    f.lun1.resize(4 << 20);
    return std::error_code{};
  }));
  Client after(f.server->endpoint_uri("lun1"));
  REQUIRE(after.connected);
  CHECK(nbd_get_size(after.handle) == 4 << 20);
  Client other(f.server->endpoint_uri("lun0"));
  CHECK(nbd_get_size(other.handle) == 1 << 20);
}

TEST_CASE("the kernel's connection follows a resize; a client keeps the size it was given",
          "[nbd_server]") {
  TwoLuns f;
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
  REQUIRE_FALSE(f.on_io_thread([&](nbd::Server& s, std::string& detail) {
    return s.serve_connected(fds[0], "lun1", "kernel", detail);
  }));
  Client client(f.server->endpoint_uri("lun1"));
  REQUIRE(client.connected);
  REQUIRE_FALSE(f.on_io_thread([&](nbd::Server&, std::string&) {
    f.lun1.resize(4 << 20);
    return std::error_code{};
  }));
  // A simple-reply WRITE of 4096 bytes just past the old end (2 MiB), as /dev/nbdN sends once
  // KernelDevice::resize() gave it the new size.
  const uint64_t past_old_end = 2 << 20;
  std::array<std::byte, 28> header{};
  nbd::encode_request(nbd::Request{0, nbd::kCmdWrite, 7, past_old_end, 4096}, header);
  const auto payload = filled(4096, 0x6b);
  REQUIRE(::send(fds[1], header.data(), header.size(), MSG_NOSIGNAL) == 28);
  REQUIRE(::send(fds[1], payload.data(), payload.size(), MSG_NOSIGNAL) == 4096);
  std::array<std::byte, 16> reply{};
  REQUIRE(::recv(fds[1], reply.data(), reply.size(), MSG_WAITALL) == 16);
  CHECK(common::load_be32(reply, 4) == 0);
  CHECK(f.lun1.read_bytes(past_old_end, 4096) == payload);
  ::close(fds[1]);
  // The negotiating client was told 2 MiB: past that its requests stay out of bounds.
  CHECK(nbd_get_size(client.handle) == 2 << 20);
}

TEST_CASE("block status and CACHE go to the device of the connection's export", "[nbd_server]") {
  // lun1 reports provisioning and takes CACHE; lun0 does neither.
  auto lun1_info = MemoryBlockDevice::make_info(2 << 20, 4096);
  lun1_info.supports_block_status = true;
  lun1_info.supports_cache = true;
  TwoLuns f(30s, lun1_info);
  Client c0(f.server->endpoint_uri("lun0"), "base:allocation");
  Client c1(f.server->endpoint_uri("lun1"), "base:allocation");
  REQUIRE(c0.connected);
  REQUIRE(c1.connected);
  CHECK(nbd_can_cache(c0.handle) == 0);
  CHECK(nbd_can_cache(c1.handle) == 1);
  REQUIRE(nbd_can_meta_context(c0.handle, "base:allocation") == 1);
  REQUIRE(nbd_can_meta_context(c1.handle, "base:allocation") == 1);

  nbd_extent_callback ignore_extents{};
  ignore_extents.callback = [](void*, const char*, uint64_t, uint32_t*, size_t, int*) { return 0; };
  CHECK(nbd_block_status(c0.handle, 4096, 0, ignore_extents, 0) == 0);  // answered "all data"
  CHECK(nbd_block_status(c1.handle, 4096, 0, ignore_extents, 0) == 0);
  CHECK(nbd_cache(c1.handle, 4096, 0, 0) == 0);
  CHECK(f.lun0.counters().total() == 0);
  CHECK(f.lun1.counters().block_statuses == 1);
  CHECK(f.lun1.counters().caches == 1);
}
