// nbd.tls: mode, x509_dir, verify_peer, psk_file; and the warning for a plaintext TCP listener.
#include <catch2/catch.hpp>

#include <unistd.h>
#include <filesystem>
#include <fstream>

#include <cstdint>
#include <string>

#include "config/config.hpp"
#include "config_test_support.hpp"
#include "loaded_config.hpp"

using config::NbdTls;
using config_test::error_at;
using config_test::load;

namespace {

namespace fs = std::filesystem;

config::Result with_nbd(const std::string& nbd) {
  return load(
      "target: {iqn: 'iqn.2023-01.com.example:s', lun: 1}\n"
      "paths: [{portal: 127.0.0.1}]\n"
      "nbd: " +
      nbd + "\n");
}

// A temporary directory holding the named (empty) files, removed at scope exit.
struct TempDir {
  fs::path path;
  explicit TempDir(std::initializer_list<const char*> files) {
    path =
        fs::temp_directory_path() / ("im-tls-" + std::to_string(reinterpret_cast<uintptr_t>(this)) +
                                     "-" + std::to_string(::getpid()));
    fs::create_directories(path);
    for (const char* name : files) std::ofstream(path / name) << "x\n";
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
  std::string str() const { return path.string(); }
};

bool has_warning(const config::Result& result, config::config_errc code) {
  for (const auto& warning : result.warnings())
    if (warning.code == code) return true;
  return false;
}

}  // namespace

TEST_CASE("nbd.tls defaults to off", "[config][tls]") {
  const auto result = with_nbd("{}");
  REQUIRE(result.ok());
  CHECK(result.config().nbd.tls.mode == NbdTls::Mode::off);
  CHECK_FALSE(result.config().nbd.tls.x509_dir);
  CHECK_FALSE(result.config().nbd.tls.psk_file);
  CHECK_FALSE(result.config().nbd.tls.verify_peer);
}

TEST_CASE("nbd.tls with X.509 credentials in qemu's layout", "[config][tls]") {
  TempDir dir({"ca-cert.pem", "server-cert.pem", "server-key.pem"});
  for (const char* mode : {"on", "require"}) {
    INFO(mode);
    const auto result = with_nbd(std::string("{tls: {mode: ") + mode + ", x509_dir: " + dir.str() +
                                 ", verify_peer: true}}");
    INFO(result.error_report());
    REQUIRE(result.ok());
    const NbdTls& tls = result.config().nbd.tls;
    CHECK(tls.mode == (std::string(mode) == "on" ? NbdTls::Mode::on : NbdTls::Mode::require));
    CHECK(tls.x509_dir == dir.str());
    CHECK(tls.verify_peer);
    // redacted() reads back the same.
    const std::string printed = config::redacted(result.config());
    const config::Config again = test_support::loaded_config(printed);
    CHECK(again.nbd.tls.mode == tls.mode);
  }
}

TEST_CASE("nbd.tls names each missing X.509 file", "[config][tls]") {
  TempDir dir({"server-cert.pem"});
  const auto result =
      with_nbd("{tls: {mode: require, x509_dir: " + dir.str() + ", verify_peer: true}}");
  REQUIRE_FALSE(result.ok());
  const std::string report = result.error_report();
  CHECK_THAT(report, Catch::Contains(dir.str() + "/server-key.pem"));
  CHECK_THAT(report, Catch::Contains(dir.str() + "/ca-cert.pem"));
  CHECK_THAT(report, !Catch::Contains("server-cert.pem"));
  for (const auto& error : result.errors()) CHECK(error.key_path == "nbd.tls.x509_dir");

  // ca-cert.pem is needed only to verify clients.
  TempDir no_ca({"server-cert.pem", "server-key.pem"});
  CHECK(with_nbd("{tls: {mode: on, x509_dir: " + no_ca.str() + "}}").ok());
}

TEST_CASE("nbd.tls with a PSK file", "[config][tls]") {
  TempDir dir({"keys.psk"});
  const std::string file = dir.str() + "/keys.psk";
  const auto result = with_nbd("{tls: {mode: require, psk_file: " + file + "}}");
  INFO(result.error_report());
  REQUIRE(result.ok());
  CHECK(result.config().nbd.tls.psk_file == file);

  const auto missing = with_nbd("{tls: {mode: require, psk_file: " + dir.str() + "/nope.psk}}");
  const auto error = error_at(missing, "nbd.tls.psk_file");
  CHECK(error.code == config::config_errc::io_error);
  CHECK_THAT(error.message, Catch::Contains(dir.str() + "/nope.psk"));
}

TEST_CASE("nbd.tls refuses bad modes and incomplete or conflicting credentials", "[config][tls]") {
  SECTION("unknown mode") {
    const auto error = error_at(with_nbd("{tls: {mode: yes-please}}"), "nbd.tls.mode");
    CHECK(error.code == config::config_errc::invalid_value);
    CHECK_THAT(error.message, Catch::Contains("off, on, require"));
  }
  SECTION("on without credentials") {
    const auto error = error_at(with_nbd("{tls: {mode: on}}"), "nbd.tls.x509_dir");
    CHECK(error.code == config::config_errc::missing_key);
    CHECK_THAT(error.message, Catch::Contains("psk_file"));
  }
  SECTION("both kinds of credentials") {
    const auto error =
        error_at(with_nbd("{tls: {mode: on, x509_dir: /a, psk_file: /b}}"), "nbd.tls.psk_file");
    CHECK_THAT(error.message, Catch::Contains("not both"));
  }
  SECTION("verify_peer without certificates") {
    const auto error = error_at(with_nbd("{tls: {mode: on, psk_file: /b, verify_peer: true}}"),
                                "nbd.tls.verify_peer");
    CHECK_THAT(error.message, Catch::Contains("x509_dir"));
  }
  SECTION("relative paths") {
    error_at(with_nbd("{tls: {x509_dir: tls}}"), "nbd.tls.x509_dir");
  }
  SECTION("files are not opened while mode is off") {
    CHECK(with_nbd("{tls: {mode: off, x509_dir: /nonexistent}}").ok());
  }
}

TEST_CASE("a plaintext tcp: listener beyond loopback is warned about", "[config][tls]") {
  const auto exposed = with_nbd("{listen: 'tcp:0.0.0.0'}");
  REQUIRE(exposed.ok());
  CHECK(has_warning(exposed, config::config_errc::plaintext_nbd));
  for (const char* quiet : {"{listen: 'tcp:127.0.0.1'}", "{listen: 'tcp:[::1]:10809'}",
                            "{listen: 'tcp:localhost'}", "{listen: 'unix:/run/x.sock'}"}) {
    INFO(quiet);
    const auto result = with_nbd(quiet);
    REQUIRE(result.ok());
    CHECK_FALSE(has_warning(result, config::config_errc::plaintext_nbd));
  }
  TempDir dir({"keys.psk"});
  const auto with_tls =
      with_nbd("{listen: 'tcp:0.0.0.0', tls: {mode: on, psk_file: " + dir.str() + "/keys.psk}}");
  REQUIRE(with_tls.ok());
  CHECK_FALSE(has_warning(with_tls, config::config_errc::plaintext_nbd));
}
