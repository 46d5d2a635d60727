// target.digests, target.command_timeout, target.auth.algorithms and the secret_file keys.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "config/config.hpp"
#include "config_test_support.hpp"
#include "loaded_config.hpp"

using Catch::Matchers::Contains;
using config::ChapAlgorithm;
using config::config_errc;
using config::Digest;
using config_test::error_at;
using config_test::load;

namespace {

// A valid file whose target: block is replaced; line 1 is "target:".
std::string with_target(std::string_view target_body) {
  return "target:\n  iqn: iqn.2023-01.com.example:s\n" + std::string(target_body) +
         "paths:\n  - portal: 127.0.0.1\n";
}

// A private directory for secret files, removed with everything in it.
class SecretDir {
 public:
  SecretDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "im-config-secret.XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    dir_ = pattern;
  }
  ~SecretDir() {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  SecretDir(const SecretDir&) = delete;
  SecretDir& operator=(const SecretDir&) = delete;

  std::string write(const std::string& name, const std::string& content, mode_t mode = 0600) {
    const auto path = dir_ / name;
    std::ofstream(path, std::ios::binary) << content;
    REQUIRE(::chmod(path.c_str(), mode) == 0);
    return path.string();
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

 private:
  std::filesystem::path dir_;
};

std::string chap_with_file(const std::string& file) {
  return with_target("  auth:\n    method: chap\n    username: u\n    secret_file: " + file + "\n");
}

}  // namespace

TEST_CASE("digests, command_timeout and CHAP algorithms default as documented", "[config]") {
  const auto result = load(with_target(""));
  INFO(result.error_report());
  REQUIRE(result.ok());
  const auto& target = result.config().target;
  CHECK(target.digests.header == Digest::none);
  CHECK(target.digests.data == Digest::none);
  CHECK(target.command_timeout == 30u);
  // No sha256 by default: tgtd takes its CHAP_A number (7) for SHA-1.
  CHECK(target.auth.algorithms ==
        std::vector{ChapAlgorithm::sha3_256, ChapAlgorithm::sha1, ChapAlgorithm::md5});
  CHECK(result.warnings().empty());
}

TEST_CASE("digests take none, crc32c and prefer-crc32c", "[config]") {
  const auto result =
      load(with_target("  digests: {header: crc32c, data: prefer-crc32c}\n  command_timeout: 0\n"));
  INFO(result.error_report());
  REQUIRE(result.ok());
  CHECK(result.config().target.digests.header == Digest::crc32c);
  CHECK(result.config().target.digests.data == Digest::prefer_crc32c);
  CHECK(result.config().target.command_timeout == 0u);

  const auto only_data = load(with_target("  digests:\n    data: crc32c\n"));
  REQUIRE(only_data.ok());
  CHECK(only_data.config().target.digests.header == Digest::none);
  CHECK(only_data.config().target.digests.data == Digest::crc32c);

  const auto bad =
      error_at(load(with_target("  digests: {header: CRC32C}\n")), "target.digests.header");
  CHECK(bad.line == 3);
  CHECK_THAT(bad.message, Contains("'CRC32C'") && Contains("none, crc32c, prefer-crc32c"));

  const auto typo =
      error_at(load(with_target("  digests: {headers: crc32c}\n")), "target.digests.headers");
  CHECK_THAT(typo.message, Contains("did you mean 'header'"));

  const auto timeout =
      error_at(load(with_target("  command_timeout: 3601\n")), "target.command_timeout");
  CHECK_THAT(timeout.message, Contains("from 0 to 3600"));
}

TEST_CASE("CHAP algorithms are a non-empty list of distinct known names", "[config]") {
  const auto result = load(with_target("  auth: {method: none, algorithms: [md5, sha256]}\n"));
  INFO(result.error_report());
  REQUIRE(result.ok());
  CHECK(result.config().target.auth.algorithms ==
        std::vector{ChapAlgorithm::md5, ChapAlgorithm::sha256});

  const auto unknown =
      error_at(load(with_target("  auth: {method: none, algorithms: [md5, sha512]}\n")),
               "target.auth.algorithms");
  CHECK(unknown.code == config_errc::invalid_value);
  CHECK(unknown.line == 3);
  CHECK_THAT(unknown.message, Contains("'sha512'") && Contains("sha3-256, sha256, sha1, md5"));

  CHECK_THAT(error_at(load(with_target("  auth: {method: none, algorithms: [md5, md5]}\n")),
                      "target.auth.algorithms")
                 .message,
             Contains("listed twice"));
  CHECK_THAT(error_at(load(with_target("  auth: {method: none, algorithms: []}\n")),
                      "target.auth.algorithms")
                 .message,
             Contains("non-empty list"));
  CHECK_THAT(error_at(load(with_target("  auth: {method: none, algorithms: md5}\n")),
                      "target.auth.algorithms")
                 .message,
             Contains("non-empty list"));
}

TEST_CASE("secret_file: the first line, trailing newline removed, never printed", "[config]") {
  SecretDir dir;
  const std::string ours = dir.write("ours", "initiator-secret-1\n");
  const std::string theirs = dir.write("theirs", "target-secret-2\r\n");
  const auto result =
      load(with_target("  auth:\n    method: chap\n    username: u\n"
                       "    secret_file: " +
                       ours +
                       "\n"
                       "    mutual: {username: t, secret_file: " +
                       theirs + "}\n"));
  INFO(result.error_report());
  REQUIRE(result.ok());
  const auto& auth = result.config().target.auth;
  CHECK(auth.secret == "initiator-secret-1");
  CHECK(auth.secret_file == ours);
  REQUIRE(auth.mutual);
  CHECK(auth.mutual->secret == "target-secret-2");
  CHECK(result.warnings().empty());

  // The printed form names the files, holds neither secret, and loads back to the same secrets.
  const std::string printed = config::redacted(result.config());
  CHECK_THAT(printed, Contains("secret_file: " + ours) && Contains("secret_file: " + theirs));
  CHECK_THAT(printed, !Contains("initiator-secret-1") && !Contains("target-secret-2") &&
                          !Contains("<redacted>"));
  const config::Config again = test_support::loaded_config(printed);
  CHECK(again.target.auth.secret == "initiator-secret-1");
  CHECK(again.target.auth.mutual->secret == "target-secret-2");
}

TEST_CASE("secret_file problems are errors naming the file, never its content", "[config]") {
  SecretDir dir;
  const std::pair<std::string, std::string> cases[] = {
      {dir.path("missing"),
       "cannot open secret file '" + dir.path("missing") + "': No such file or directory"},
      {dir.write("empty", ""), "secret file '" + dir.path("empty") + "' is empty"},
      {dir.write("newline", "\n"), "secret file '" + dir.path("newline") + "' is empty"},
      {dir.write("two-lines", "hunter2\nhunter3\n"), "more than one line"},
      {dir.write("long", std::string(256, 'S')), "holds a secret of 256 bytes; at most 255"},
      {dir.write("huge", std::string(5000, 'S')), "larger than 4096 bytes"},
      {dir.path(""), "is not a regular file"},
      {"/dev/null", "is not a regular file"},  // never opened: devices may act on open()
  };
  for (const auto& [file, reason] : cases) {
    INFO("file " << file);
    const auto result = load(chap_with_file(file));
    const auto error = error_at(result, "target.auth.secret_file");
    CHECK(error.line == 6);
    CHECK_THAT(error.message, Contains(reason));
    CHECK_THAT(error.message, Contains(file));
    CHECK_THAT(result.error_report(), !Contains("hunter") && !Contains("SSSS"));
  }

  if (::geteuid() != 0) {  // root reads a mode 0000 file anyway
    const std::string locked = dir.write("locked", "hunter2\n", 0000);
    CHECK_THAT(error_at(load(chap_with_file(locked)), "target.auth.secret_file").message,
               Contains("Permission denied"));
  }

  CHECK_THAT(error_at(load(chap_with_file("secrets/ours")), "target.auth.secret_file").message,
             Contains("absolute file path"));

  // Under method none nothing is read: a missing file is not an error.
  CHECK(
      load(with_target("  auth: {method: none, secret_file: " + dir.path("missing") + "}\n")).ok());
}

TEST_CASE("secret and secret_file exclude each other; one of them is required", "[config]") {
  SecretDir dir;
  const std::string file = dir.write("ours", "initiator-secret-1\n");
  const auto both =
      error_at(load(with_target("  auth:\n    method: chap\n    username: u\n    secret: s-1\n"
                                "    secret_file: " +
                                file + "\n")),
               "target.auth.secret_file");
  CHECK(both.line == 7);
  CHECK_THAT(both.message, Contains("either 'secret' or 'secret_file'"));

  const auto neither = error_at(load(with_target("  auth:\n    method: chap\n    username: u\n")),
                                "target.auth.secret");
  CHECK(neither.code == config_errc::missing_key);
  CHECK_THAT(neither.message, Contains("'secret' or 'secret_file'"));

  const std::string head =
      "  auth:\n    method: chap\n    username: u\n    secret: s-1\n"
      "    mutual:\n      username: t\n";
  const auto mutual_both =
      error_at(load(with_target(head + "      secret: s-2\n      secret_file: " + file + "\n")),
               "target.auth.mutual.secret_file");
  CHECK_THAT(mutual_both.message, Contains("not both"));

  // The file's secret is compared with ours like a written one (RFC 7143 §12.1.3).
  const auto same =
      error_at(load(with_target("  auth:\n    method: chap\n    username: u\n"
                                "    secret: initiator-secret-1\n    mutual:\n      username: t\n"
                                "      secret_file: " +
                                file + "\n")),
               "target.auth.mutual.secret_file");
  CHECK(same.line == 9);
  CHECK_THAT(same.message, Contains("must differ"));
}

TEST_CASE("a secret file others can read loads with a warning", "[config]") {
  SecretDir dir;
  const std::string world = dir.write("world", "initiator-secret-1\n", 0644);
  const auto result = load(chap_with_file(world));
  INFO(result.error_report());
  REQUIRE(result.ok());
  CHECK(result.config().target.auth.secret == "initiator-secret-1");
  REQUIRE(result.warnings().size() == 1);
  const auto& warning = result.warnings()[0];
  CHECK(warning.code == config_errc::insecure_file);
  CHECK(warning.key_path == "target.auth.secret_file");
  CHECK(warning.line == 6);
  CHECK_THAT(warning.message, Contains(world) && Contains("every user") && Contains("mode 0644") &&
                                  Contains("chmod 600"));
  CHECK_THAT(warning.message, !Contains("initiator-secret-1"));

  const std::string group = dir.write("group", "initiator-secret-1\n", 0640);
  const auto group_result = load(chap_with_file(group));
  REQUIRE(group_result.warnings().size() == 1);
  CHECK_THAT(group_result.warnings()[0].message, Contains("its group") && Contains("0640"));

  // Warnings travel with errors too: the admin sees both at once.
  const auto broken = load(
      "target:\n  iqn: iqn.2023-01.com.example:s\n  lun: x\n"
      "  auth:\n    method: chap\n    username: u\n    secret_file: " +
      world + "\npaths:\n  - portal: 127.0.0.1\n");
  CHECK_FALSE(broken.ok());
  CHECK(broken.warnings().size() == 1);
}
