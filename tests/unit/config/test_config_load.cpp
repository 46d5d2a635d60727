// Valid files parse to the right values; defaults; redacted output; the documentation files.
#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>

#include "config/config.hpp"
#include "config_test_support.hpp"
#include "loaded_config.hpp"

using config::Auth;
using config::Listen;
using config_test::load;

namespace {

constexpr std::string_view minimal = R"(
target:
  iqn: iqn.2023-01.com.example:storage
paths:
  - portal: 198.18.1.1
)";

constexpr std::string_view full = R"(
initiator:
  name: iqn.2026-11.org.example:host1
target:
  iqn: iqn.2023-01.com.example:storage
  lun: 1
  login_timeout: 30
  auth:
    method: chap
    username: u
    secret: initiator-secret-1
    mutual: {username: t, secret: target-secret-2}
paths:
  - {portal: "198.18.1.1:3260", source: 198.18.1.2}
  - portal: "[fd00::1]:3261"
    source: fd00::2
  - portal: san.example.com
nbd:
  listen: tcp:127.0.0.1:10810
  export: san_storage_lun0
)";

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

}  // namespace

TEST_CASE("a minimal file gets every default", "[config]") {
  const auto result = load(minimal);
  INFO(result.error_report());
  REQUIRE(result.ok());
  const config::Config& cfg = result.config();
  CHECK(cfg.target.iqn == "iqn.2023-01.com.example:storage");
  CHECK(cfg.target.lun == 0);
  CHECK(cfg.target.login_timeout == 15);
  CHECK(cfg.target.auth.method == Auth::Method::none);
  CHECK_FALSE(cfg.target.auth.mutual);
  REQUIRE(cfg.paths.size() == 1);
  CHECK(cfg.paths[0].portal.host == "198.18.1.1");
  CHECK(cfg.paths[0].portal.port == 3260);
  CHECK_FALSE(cfg.paths[0].source);
  CHECK_FALSE(cfg.paths[0].interface);
  CHECK_FALSE(cfg.paths[0].priority);
  CHECK(cfg.target.wwid.empty());
  CHECK(cfg.multipath.path_grouping_policy == config::Grouping::multibus);
  CHECK(cfg.multipath.failback == config::Failback{});
  CHECK_FALSE(cfg.multipath.max_sectors_kb);  // one burst per command, decided at login
  CHECK(cfg.nbd.export_name == "lun0");
  CHECK(cfg.nbd.listen.kind == Listen::Kind::unix_socket);
  CHECK(cfg.nbd.listen.path_or_host == "/run/iscsi-mpio/lun0.sock");
  CHECK(cfg.initiator.name_generated);
  CHECK_FALSE(config::iscsi_name_problem(cfg.initiator.name));
  CHECK(cfg.initiator.name.starts_with("iqn.2026-11.org.iscsi-mpio:"));
  CHECK(result.errors().empty());
}

TEST_CASE("the export name and socket path default from the LUN", "[config]") {
  const auto result = load(R"(
target: {iqn: "iqn.2023-01.com.example:storage", lun: 7}
paths: [{portal: 127.0.0.1}]
nbd: {export: "disk/one two"}
)");
  REQUIRE(result.ok());
  CHECK(result.config().nbd.export_name == "disk/one two");
  CHECK(result.config().nbd.listen.path_or_host == "/run/iscsi-mpio/disk_one_two.sock");

  const auto by_lun = load(
      "target: {iqn: 'iqn.2023-01.com.example:s', lun: 7}\n"
      "paths: [{portal: 127.0.0.1}]\n");
  REQUIRE(by_lun.ok());
  CHECK(by_lun.config().nbd.export_name == "lun7");
  CHECK(by_lun.config().nbd.listen.path_or_host == "/run/iscsi-mpio/lun7.sock");
}

TEST_CASE("a full file parses to the written values", "[config]") {
  const auto result = load(full);
  INFO(result.error_report());
  REQUIRE(result.ok());
  const config::Config& cfg = result.config();
  CHECK(cfg.initiator.name == "iqn.2026-11.org.example:host1");
  CHECK_FALSE(cfg.initiator.name_generated);
  CHECK(cfg.target.lun == 1);
  CHECK(cfg.target.login_timeout == 30);
  CHECK(cfg.target.auth.method == Auth::Method::chap);
  CHECK(cfg.target.auth.username == "u");
  CHECK(cfg.target.auth.secret == "initiator-secret-1");
  REQUIRE(cfg.target.auth.mutual);
  CHECK(cfg.target.auth.mutual->username == "t");
  CHECK(cfg.target.auth.mutual->secret == "target-secret-2");
  REQUIRE(cfg.paths.size() == 3);
  CHECK(cfg.paths[0].portal == config::Portal{"198.18.1.1", 3260});
  CHECK(cfg.paths[0].source == "198.18.1.2");
  CHECK(cfg.paths[1].portal == config::Portal{"fd00::1", 3261});
  CHECK(cfg.paths[1].source == "fd00::2");
  CHECK(cfg.paths[2].portal == config::Portal{"san.example.com", 3260});
  CHECK_FALSE(cfg.paths[2].source);
  CHECK(cfg.nbd.listen == Listen{Listen::Kind::tcp, "127.0.0.1", 10810});
  CHECK(cfg.nbd.export_name == "san_storage_lun0");
}

TEST_CASE("the largest LUN and quoted digits are accepted", "[config]") {
  const auto result = load(
      "target: {iqn: 'eui.02004567A425678D', lun: '16383'}\n"
      "paths: [{portal: 'naa-host'}]\n");
  INFO(result.error_report());
  REQUIRE(result.ok());
  CHECK(result.config().target.lun == 16383);
}

TEST_CASE("credentials under method none are accepted and ignored", "[config]") {
  const auto result = load(R"(
target:
  iqn: iqn.2023-01.com.example:storage
  auth: {method: none, username: u}
paths: [{portal: 127.0.0.1}]
)");
  INFO(result.error_report());
  REQUIRE(result.ok());
  CHECK(result.config().target.auth.method == Auth::Method::none);
}

TEST_CASE("redacted() hides both secrets", "[config]") {
  const auto result = load(full);
  REQUIRE(result.ok());
  const std::string printed = config::redacted(result.config());
  CHECK(printed.find("initiator-secret-1") == std::string::npos);
  CHECK(printed.find("target-secret-2") == std::string::npos);
  CHECK(printed.find("secret: <redacted>") != std::string::npos);
  CHECK(printed.find("username: t") != std::string::npos);
  CHECK(printed.find("san_storage_lun0") != std::string::npos);
}

TEST_CASE("redacted() prints every value: it reads back as the same config", "[config]") {
  // Without mutual CHAP: with it, both secrets print alike and the reload refuses that.
  std::string one_way(full);
  one_way.erase(one_way.find("    mutual:"), one_way.find("paths:") - one_way.find("    mutual:"));
  const auto result = load(one_way);
  INFO(one_way << result.error_report());
  REQUIRE(result.ok());
  const std::string printed = config::redacted(result.config());

  const config::Config again = test_support::loaded_config(printed);
  config::Config expected = result.config();
  expected.target.auth.secret = "<redacted>";
  const config::Config& got = again;
  CHECK(got.initiator.name == expected.initiator.name);
  CHECK(got.target.iqn == expected.target.iqn);
  CHECK(got.target.lun == expected.target.lun);
  CHECK(got.target.login_timeout == expected.target.login_timeout);
  CHECK(got.target.auth.username == expected.target.auth.username);
  CHECK(got.target.auth.secret == expected.target.auth.secret);
  CHECK_FALSE(got.target.auth.mutual);
  REQUIRE(got.paths.size() == expected.paths.size());
  for (std::size_t i = 0; i < got.paths.size(); ++i) {
    CHECK(got.paths[i].portal == expected.paths[i].portal);
    CHECK(got.paths[i].source == expected.paths[i].source);
  }
  CHECK(got.nbd.listen == expected.nbd.listen);
  CHECK(got.nbd.export_name == expected.nbd.export_name);
}

TEST_CASE("redacted() of a minimal config prints the effective defaults", "[config]") {
  const auto result = load(minimal);
  REQUIRE(result.ok());
  const std::string printed = config::redacted(result.config());
  CHECK(printed.find("lun: 0") != std::string::npos);
  CHECK(printed.find("login_timeout: 15") != std::string::npos);
  CHECK(printed.find("method: none") != std::string::npos);
  CHECK(printed.find("unix:/run/iscsi-mpio/lun0.sock") != std::string::npos);
  CHECK(printed.find("username") == std::string::npos);
}

TEST_CASE("load_file reads a file and reports a missing one", "[config]") {
  const auto example =
      config::load_file((config_test::config_source_dir() / "example.yaml").string());
  INFO(example.error_report());
  CHECK(example.ok());

  const auto missing = config::load_file("/nonexistent/iscsi-mpio.yaml");
  REQUIRE_FALSE(missing.ok());
  REQUIRE(missing.errors().size() == 1);
  const auto& error = missing.errors()[0];
  CHECK(error.code == config::config_errc::io_error);
  CHECK(error.line == 0);
  CHECK(error.to_string() ==
        "/nonexistent/iscsi-mpio.yaml: cannot open: No such file or directory");

  const auto directory = config::load_file("/");
  CHECK_FALSE(directory.ok());
}

TEST_CASE("example.yaml sets every key and matches the documented values", "[config]") {
  const auto path = config_test::config_source_dir() / "example.yaml";
  const auto result = config::load_file(path.string());
  INFO(result.error_report());
  REQUIRE(result.ok());
  const config::Config& cfg = result.config();
  CHECK(cfg.target.lun == 1);
  CHECK(cfg.target.auth.mutual);
  CHECK(cfg.paths.size() == 2);
  CHECK(cfg.paths[1].interface == "ini2");
  CHECK(cfg.paths[0].priority == 10u);
  CHECK(cfg.multipath.failback.mode == config::Failback::Mode::immediate);
  CHECK(cfg.nbd.listen.path_or_host == "/run/iscsi-mpio/lun1.sock");

  const std::string text = read_file(path);
  for (const std::string& key_path : config::known_key_paths()) {
    const std::string leaf = key_path.substr(key_path.find_last_of(".]") + 1);
    INFO("key " << key_path);
    CHECK(text.find(leaf + ":") != std::string::npos);
  }
}

TEST_CASE("README.md has a table row for every key of the schema", "[config]") {
  const std::string readme = read_file(config_test::config_source_dir() / "README.md");
  const auto keys = config::known_key_paths();
  CHECK(keys.size() >= 19);
  for (const std::string& key_path : keys) {
    INFO("key " << key_path);
    CHECK(readme.find("| `" + key_path + "` |") != std::string::npos);
  }
}

TEST_CASE("known_key_paths lists nested and list keys", "[config]") {
  const auto keys = config::known_key_paths();
  const auto has = [&](std::string_view key) {
    return std::find(keys.begin(), keys.end(), key) != keys.end();
  };
  CHECK(has("target.auth.mutual.secret"));
  CHECK(has("paths[].portal"));
  CHECK(has("nbd.export"));
  CHECK_FALSE(has("paths.portal"));
}

TEST_CASE("generated initiator names are valid iSCSI names", "[config]") {
  CHECK(config::generate_initiator_name("Host1.Example", 0xdeadbeef) ==
        "iqn.2026-11.org.iscsi-mpio:host1.example-deadbeef");
  CHECK(config::generate_initiator_name("", 1) == "iqn.2026-11.org.iscsi-mpio:host-00000001");
  CHECK(config::generate_initiator_name("we_ird host", 2) ==
        "iqn.2026-11.org.iscsi-mpio:we-ird-host-00000002");

  const std::string long_name = config::generate_initiator_name(std::string(300, 'a'), 3);
  CHECK(long_name.size() == config::max_iscsi_name_length);
  CHECK_FALSE(config::iscsi_name_problem(long_name));

  const std::string real = config::generate_initiator_name();
  INFO(real);
  CHECK_FALSE(config::iscsi_name_problem(real));
  CHECK(real != config::generate_initiator_name());  // 32 random bits
}

TEST_CASE("ConfigError::to_string formats FILE:LINE:COL: KEY: MESSAGE", "[config]") {
  config::ConfigError error{.code = config::config_errc::invalid_value,
                            .file = "a.yaml",
                            .line = 3,
                            .column = 5,
                            .key_path = "paths[1].portal",
                            .message = "bad"};
  CHECK(error.to_string() == "a.yaml:3:5: paths[1].portal: bad");
  error.key_path.clear();
  CHECK(error.to_string() == "a.yaml:3:5: bad");
  const std::error_code code = config::config_errc::unknown_key;
  CHECK(code.category().name() == std::string("config"));
  CHECK(code.message() == "unknown key");
}
