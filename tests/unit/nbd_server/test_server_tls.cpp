// nbd::Server with TLS (proto.md "TLS support") over a temporary unix socket, with libnbd as the
// client and a pre-shared key (no certificates to make): data through TLS, a plaintext client
// refused under require, a wrong key refused, credentials that do not load refuse the start.
// X.509 is covered by tests/integration/tls-checks.sh (certtool).
#include <catch2/catch.hpp>

#include <unistd.h>

#include <libnbd.h>

#include <atomic>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include "memory_block_device.hpp"
#include "nbd_server/server.hpp"

namespace {

using test::MemoryBlockDevice;

std::string temp_path(const std::string& suffix) {
  static std::atomic<int> counter{0};
  return "/tmp/nbd-server-tls-test-" + std::to_string(::getpid()) + "-" +
         std::to_string(counter++) + suffix;
}

// A keys file in psktool's format, removed at scope exit.
struct PskFile {
  std::string path = temp_path(".psk");
  explicit PskFile(const std::string& content) { std::ofstream(path) << content; }
  ~PskFile() { ::unlink(path.c_str()); }
};

constexpr const char* kAliceKey = "alice:00112233445566778899aabbccddeeff\n";

struct TlsServer {
  TlsServer(nbd::TlsMode mode, const std::string& psk_file)
      : device(MemoryBlockDevice::make_info()) {
    nbd::ServerOptions options;
    options.listen = nbd::UnixEndpoint{path};
    options.export_name = "disk";
    options.tls.mode = mode;
    options.tls.psk_file = psk_file;
    server.emplace(io, device, options);
    start_error = server->start(detail);
    if (!start_error) thread = std::thread([this] { io.run(); });
  }
  ~TlsServer() {
    if (!start_error) {
      server->stop([] {});
      work.reset();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      io.stop();
      thread.join();
    }
  }

  MemoryBlockDevice device;
  std::string path = temp_path(".sock");
  boost::asio::io_context io;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work{
      io.get_executor()};
  std::optional<nbd::Server> server;
  std::thread thread;
  std::error_code start_error;
  std::string detail;
};

// Connects with TLS (`psk_file` set) or without; returns the handle or null with the error.
nbd_handle* connect(const std::string& socket, const char* psk_file, std::string& error) {
  nbd_handle* h = nbd_create();
  REQUIRE(h != nullptr);
  if (psk_file != nullptr) {
    REQUIRE(nbd_set_tls(h, LIBNBD_TLS_REQUIRE) == 0);
    REQUIRE(nbd_set_tls_psk_file(h, psk_file) == 0);
    REQUIRE(nbd_set_tls_username(h, "alice") == 0);
  }
  REQUIRE(nbd_set_export_name(h, "disk") == 0);
  if (nbd_connect_unix(h, socket.c_str()) != 0) {
    error = nbd_get_error() ? nbd_get_error() : "?";
    nbd_close(h);
    return nullptr;
  }
  return h;
}

}  // namespace

TEST_CASE("TLS with a pre-shared key carries reads and writes", "[nbd_server][tls]") {
  PskFile keys(kAliceKey);
  for (const auto mode : {nbd::TlsMode::on, nbd::TlsMode::require}) {
    TlsServer s(mode, keys.path);
    INFO(s.detail);
    REQUIRE_FALSE(s.start_error);
    std::string error;
    nbd_handle* h = connect(s.path, keys.path.c_str(), error);
    INFO(error);
    REQUIRE(h != nullptr);
    CHECK(nbd_get_tls_negotiated(h) == 1);
    // Larger than one TLS record (16 KiB) and than the server's receive buffer (64 KiB).
    std::vector<char> out(300 * 1024), in(out.size());
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<char>(i * 13 + 5);
    CHECK(nbd_pwrite(h, out.data(), out.size(), 4096, 0) == 0);
    CHECK(nbd_pread(h, in.data(), in.size(), 4096, 0) == 0);
    CHECK(in == out);
    CHECK(nbd_shutdown(h, 0) == 0);
    nbd_close(h);
  }
}

TEST_CASE("TLS on serves plaintext clients; require refuses them", "[nbd_server][tls]") {
  PskFile keys(kAliceKey);
  std::string error;
  {
    TlsServer s(nbd::TlsMode::on, keys.path);
    REQUIRE_FALSE(s.start_error);
    nbd_handle* h = connect(s.path, nullptr, error);
    INFO(error);
    REQUIRE(h != nullptr);
    CHECK(nbd_get_tls_negotiated(h) == 0);
    nbd_close(h);
  }
  {
    TlsServer s(nbd::TlsMode::require, keys.path);
    REQUIRE_FALSE(s.start_error);
    CHECK(connect(s.path, nullptr, error) == nullptr);
  }
}

TEST_CASE("TLS with the wrong key is refused", "[nbd_server][tls]") {
  PskFile keys(kAliceKey);
  PskFile wrong("alice:ffeeddccbbaa99887766554433221100\n");
  TlsServer s(nbd::TlsMode::require, keys.path);
  REQUIRE_FALSE(s.start_error);
  std::string error;
  CHECK(connect(s.path, wrong.path.c_str(), error) == nullptr);
  // The server keeps serving the right key.
  nbd_handle* h = connect(s.path, keys.path.c_str(), error);
  INFO(error);
  REQUIRE(h != nullptr);
  nbd_close(h);
}

TEST_CASE("TLS credentials that do not load refuse the start, naming the file",
          "[nbd_server][tls]") {
  {
    TlsServer s(nbd::TlsMode::require, "/nonexistent/keys.psk");
    CHECK(s.start_error);
    CHECK_THAT(s.detail, Catch::Contains("/nonexistent/keys.psk"));
  }
  {
    PskFile bad("alice:00112233\nbob=nothex\n");
    TlsServer s(nbd::TlsMode::on, bad.path);
    CHECK(s.start_error);
    CHECK_THAT(s.detail, Catch::Contains("line 2"));
  }
  {
    nbd::ServerOptions options;
    TlsServer s(nbd::TlsMode::require, "");  // x509_dir empty too: no server-cert.pem found
    CHECK(s.start_error);
    CHECK_THAT(s.detail, Catch::Contains("server-cert.pem"));
  }
}
