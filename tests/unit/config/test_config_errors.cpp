// Every refused input: the right key path, line and a message naming the problem.
#include <catch2/catch.hpp>

#include "config/config.hpp"
#include "config_test_support.hpp"

using Catch::Matchers::Contains;
using config::config_errc;
using config_test::error_at;
using config_test::load;

namespace {

// A valid file whose target: block is replaced; line 1 is "target:".
std::string with_target(std::string_view target_body) {
  return "target:\n" + std::string(target_body) + "paths:\n  - portal: 127.0.0.1\n";
}

// A valid file with `portal_line` as the only path entry, on line 3.
std::string with_path(std::string_view path_entry) {
  return "target:\n  iqn: iqn.2023-01.com.example:s\npaths:\n" + std::string(path_entry);
}

// A valid file with the given nbd: block starting on line 4.
std::string with_nbd(std::string_view nbd_body) {
  return "target: {iqn: 'iqn.2023-01.com.example:s'}\npaths:\n  - portal: 127.0.0.1\nnbd:\n" +
         std::string(nbd_body);
}

}  // namespace

TEST_CASE("an unknown key is named, with a suggestion when close to a known one", "[config]") {
  const auto result = load(
      "foo: 1\ntarget: {iqn: 'iqn.2023-01.com.example:s'}\n"
      "paths: [{portal: 127.0.0.1, sorce: 127.0.0.2}]\n");
  const auto foo = error_at(result, "foo");
  CHECK(foo.code == config_errc::unknown_key);
  CHECK(foo.line == 1);
  CHECK(foo.column == 1);
  CHECK(foo.message == "unknown key 'foo'");

  const auto sorce = error_at(result, "paths[0].sorce");
  CHECK(sorce.line == 3);
  CHECK(sorce.column == 29);
  CHECK_THAT(sorce.message, Contains("unknown key 'sorce'") && Contains("did you mean 'source'?"));
  CHECK(result.errors().size() == 2);
}

TEST_CASE("a misspelt section is unknown and the real one missing", "[config]") {
  const auto result = load("targte:\n  iqn: iqn.2023-01.com.example:s\npaths: [{portal: h}]\n");
  CHECK_THAT(error_at(result, "targte").message, Contains("did you mean 'target'?"));
  const auto missing = error_at(result, "target");
  CHECK(missing.code == config_errc::missing_key);
  CHECK_THAT(missing.message, Contains("missing required key 'target'"));
}

TEST_CASE("a key at the wrong level says where it belongs", "[config]") {
  const auto result = load(
      "target: {iqn: 'iqn.2023-01.com.example:s'}\nlun: 1\n"
      "paths: [{portal: h, login_timeout: 3}]\n");
  const auto lun = error_at(result, "lun");
  CHECK(lun.line == 2);
  CHECK_THAT(lun.message, Contains("unknown key 'lun'") && Contains("belongs under 'target'"));
  CHECK_THAT(error_at(result, "paths[0].login_timeout").message,
             Contains("belongs under 'target'"));
}

TEST_CASE("case and dash typos in keys are suggested", "[config]") {
  const auto result = load(with_target("  iqn: iqn.2023-01.com.example:s\n  Login-Timeout: 3\n"));
  const auto error = error_at(result, "target.Login-Timeout");
  CHECK(error.line == 3);
  CHECK_THAT(error.message, Contains("did you mean 'login_timeout'?"));
}

TEST_CASE("a duplicate key is refused", "[config]") {
  const auto result = load(with_target("  iqn: iqn.2023-01.com.example:s\n  lun: 1\n  lun: 2\n"));
  const auto error = error_at(result, "target.lun");
  CHECK(error.code == config_errc::duplicate_key);
  CHECK(error.line == 4);
  CHECK_THAT(error.message, Contains("duplicate key 'lun'") && Contains("line 3"));
}

TEST_CASE("lun must be an integer from 0 to 16383", "[config]") {
  for (const std::string bad :
       {"abc", "-1", "16384", "0x10", "1.5", "99999999999999999999999", "''", "1e3"}) {
    INFO("lun: " << bad);
    const auto error = error_at(
        load(with_target("  iqn: iqn.2023-01.com.example:s\n  lun: " + bad + "\n")), "target.lun");
    CHECK(error.code == config_errc::invalid_value);
    CHECK(error.line == 3);
    CHECK(error.column == 8);
    CHECK_THAT(error.message, Contains("integer from 0 to 16383"));
  }
  const auto list =
      error_at(load(with_target("  iqn: iqn.2023-01.com.example:s\n  lun: [1]\n")), "target.lun");
  CHECK(list.code == config_errc::wrong_type);
  CHECK_THAT(list.message, Contains("got a list"));
  const auto empty =
      error_at(load(with_target("  iqn: iqn.2023-01.com.example:s\n  lun:\n")), "target.lun");
  CHECK(empty.line == 3);  // the key's line, though the empty value has no text
  CHECK_THAT(empty.message, Contains("got no value"));
}

TEST_CASE("login_timeout must be 1 to 3600 seconds", "[config]") {
  const auto error =
      error_at(load(with_target("  iqn: iqn.2023-01.com.example:s\n  login_timeout: 0\n")),
               "target.login_timeout");
  CHECK(error.line == 3);
  CHECK_THAT(error.message, Contains("from 1 to 3600") && Contains("'0'"));
}

TEST_CASE("missing required keys are reported at their parent", "[config]") {
  SECTION("no target, no paths") {
    const auto result = load("nbd: {export: x}\n");
    CHECK(error_at(result, "target").line == 1);
    CHECK(error_at(result, "paths").code == config_errc::missing_key);
    CHECK(result.errors().size() == 2);
  }
  SECTION("empty document") {
    const auto result = load("");
    CHECK_THAT(error_at(result, "target").message, Contains("missing required key 'target'"));
    CHECK(error_at(result, "paths").line == 1);
  }
  SECTION("target without iqn") {
    const auto result = load("paths: [{portal: h}]\ntarget:\n  lun: 1\n");
    const auto error = error_at(result, "target.iqn");
    CHECK(error.line == 2);
    CHECK_THAT(error.message, Contains("missing required key 'iqn'"));
  }
  SECTION("target with no value") {
    const auto error = error_at(load("paths: [{portal: h}]\ntarget:\n"), "target.iqn");
    CHECK(error.line == 2);
  }
  SECTION("path entry without portal") {
    const auto result = load(with_path("  - portal: 127.0.0.1\n  - source: 127.0.0.2\n"));
    const auto error = error_at(result, "paths[1].portal");
    CHECK(error.line == 5);
    CHECK_THAT(error.message, Contains("missing required key 'portal'"));
  }
}

TEST_CASE("paths must be a non-empty list of mappings", "[config]") {
  const auto empty = error_at(load(with_path("  []\n")), "paths");
  CHECK(empty.line == 4);
  CHECK_THAT(empty.message, Contains("at least 1 entry"));

  const auto scalar = error_at(load(with_path("  127.0.0.1\n")), "paths");
  CHECK(scalar.code == config_errc::wrong_type);
  CHECK_THAT(scalar.message, Contains("expected a list"));

  const auto none = error_at(load(with_path("")), "paths");
  CHECK(none.line == 3);
  CHECK_THAT(none.message, Contains("got no value"));

  const auto entry = error_at(load(with_path("  - 127.0.0.1:3260\n")), "paths[0]");
  CHECK(entry.code == config_errc::wrong_type);
  CHECK_THAT(entry.message, Contains("expected a mapping"));
}

TEST_CASE("malformed portals are refused with the reason", "[config]") {
  const std::pair<std::string, std::string> cases[] = {
      {"1.2.3.4:abc", "port 'abc' is not a number"},
      {"1.2.3.4:0", "port 0"},
      {"1.2.3.4:65536", "out of range"},
      {"1.2.3.4:99999999999999999999", "out of range"},
      {"'1.2.3.4:'", "port after ':' is empty"},
      {":3260", "host is empty"},
      {"''", "empty"},
      {"1.2.3.4:3260x", "not a number"},
      {"999.1.1.1", "not a valid IPv4 address"},
      {"1.2.3", "not a valid IPv4 address"},
      {"'bad host'", "neither an IP address nor a valid host name"},
      {"-leading.example", "valid host name"},
      {"fd00::1", "brackets"},
      {"fd00::1:3260", "brackets"},
      {"'[fd00::1'", "no closing ']'"},
      {"'[1.2.3.4]:3260'", "does not hold an IPv6 address"},
      {"'[fd00::1]3260'", "unexpected '3260'"},
      {"'[fd00::1]:0'", "port 0"},
  };
  for (const auto& [portal, reason] : cases) {
    INFO("portal: " << portal);
    const auto error = error_at(load(with_path("  - portal: " + portal + "\n")), "paths[0].portal");
    CHECK(error.code == config_errc::invalid_value);
    CHECK(error.line == 4);
    CHECK(error.column == 13);
    CHECK_THAT(error.message, Contains("invalid portal") && Contains(reason));
  }
}

TEST_CASE("the source must be a numeric address of the portal's family", "[config]") {
  for (const std::string bad :
       {"1.2.3", "host.example", "'1.2.3.4 '", "fd00::1%eth0", "'[fd00::1]'"}) {
    INFO("source: " << bad);
    const auto error = error_at(load(with_path("  - portal: 127.0.0.1\n    source: " + bad + "\n")),
                                "paths[0].source");
    CHECK(error.line == 5);
    CHECK_THAT(error.message, Contains("is not an IPv4 or IPv6 address"));
  }
  const auto mixed =
      error_at(load(with_path("  - {portal: '[fd00::1]', source: 10.0.0.1}\n")), "paths[0].source");
  CHECK_THAT(mixed.message, Contains("IPv4 address but the portal is IPv6"));

  // A host name portal may resolve to either family: not checked at load time.
  CHECK(load(with_path("  - {portal: san.example, source: fd00::2}\n")).ok());
}

TEST_CASE("two identical paths are refused", "[config]") {
  const auto result =
      load(with_path("  - {portal: '127.0.0.1:3260', source: 127.0.0.2}\n"
                     "  - {portal: 127.0.0.1, source: 127.0.0.2}\n"
                     "  - {portal: 127.0.0.1}\n"));
  const auto error = error_at(result, "paths[1]");
  CHECK(error.line == 5);
  CHECK_THAT(error.message, Contains("same portal and source as paths[0]"));
  CHECK(result.errors().size() == 1);
}

TEST_CASE("malformed iSCSI names are refused with the reason", "[config]") {
  const std::pair<std::string, std::string> cases[] = {
      {"foo.bar", "starts with 'iqn.', 'eui.' or 'naa.'"},
      {"IQN.2023-01.com.example", "lower case"},
      {"iqn.2023-13.com.example", "month 13"},
      {"iqn.2023-00.com.example", "month 00"},
      {"iqn.23-01.com.example", "date YYYY-MM"},
      {"iqn.2023-01", "date YYYY-MM"},
      {"iqn.2023-01.", "reversed domain name"},
      {"'iqn.2023-01.:x'", "reversed domain name"},
      {"iqn.2023-01.com..example", "empty label"},
      {"iqn.2023-01.com.example:disk_1", "contains '_'"},
      {"'iqn.2023-01.com.example:a b'", "contains byte 0x20"},
      {"eui.123", "16 hex digits"},
      {"eui.0123456789abcdeg", "16 hex digits"},
      {"naa.0123456789abcdef0", "16 or 32 hex digits"},
      {"iqn.2023-01.com.example:" + std::string(200, 'x'), "at most 223"},
      {"''", "empty"},
  };
  for (const auto& [name, reason] : cases) {
    INFO("iqn: " << name);
    const auto error = error_at(load(with_target("  iqn: " + name + "\n")), "target.iqn");
    CHECK(error.line == 2);
    CHECK(error.column == 8);
    CHECK_THAT(error.message, Contains("invalid iSCSI name") && Contains(reason));
  }
  const auto initiator =
      error_at(load("initiator:\n  name: host1\n" + with_target("  iqn: naa.0123456789ABCDEF\n")),
               "initiator.name");
  CHECK(initiator.line == 2);
}

TEST_CASE("chap needs username and secret, reported at auth", "[config]") {
  const auto result =
      load(with_target("  iqn: iqn.2023-01.com.example:s\n  auth:\n"
                       "    method: chap\n"));
  const auto username = error_at(result, "target.auth.username");
  CHECK(username.code == config_errc::missing_key);
  CHECK(username.line == 3);
  CHECK_THAT(username.message, Contains("'username'") && Contains("chap"));
  CHECK(error_at(result, "target.auth.secret").line == 3);

  const auto no_method = error_at(
      load(with_target("  iqn: iqn.2023-01.com.example:s\n  auth: {username: u, secret: s}\n")),
      "target.auth.method");
  CHECK_THAT(no_method.message, Contains("missing required key 'method'"));

  const auto bad_method =
      error_at(load(with_target("  iqn: iqn.2023-01.com.example:s\n  auth: {method: chapp}\n")),
               "target.auth.method");
  CHECK(bad_method.line == 3);
  CHECK_THAT(bad_method.message, Contains("'chapp'") && Contains("one of: none, chap"));

  const auto empty_secret =
      error_at(load(with_target("  iqn: iqn.2023-01.com.example:s\n"
                                "  auth: {method: chap, username: u, secret: ''}\n")),
               "target.auth.secret");
  CHECK_THAT(empty_secret.message, Contains("must not be empty"));
}

TEST_CASE("mutual chap needs both fields and its own secret", "[config]") {
  const std::string head =
      "  iqn: iqn.2023-01.com.example:s\n  auth:\n    method: chap\n    username: u\n"
      "    secret: same-secret-1\n    mutual:\n";
  const auto no_secret =
      error_at(load(with_target(head + "      username: t\n")), "target.auth.mutual.secret");
  CHECK(no_secret.line == 7);
  CHECK_THAT(no_secret.message, Contains("missing required key 'secret'"));

  const auto no_username = error_at(load(with_target(head + "      secret: other-secret\n")),
                                    "target.auth.mutual.username");
  CHECK(no_username.line == 7);

  const auto empty = load(with_target(head));
  CHECK(error_at(empty, "target.auth.mutual.username").line == 7);
  CHECK(error_at(empty, "target.auth.mutual.secret").line == 7);

  const auto same =
      error_at(load(with_target(head + "      username: t\n      secret: same-secret-1\n")),
               "target.auth.mutual.secret");
  CHECK(same.line == 9);
  CHECK_THAT(same.message, Contains("must differ"));
  CHECK_THAT(same.message, !Contains("same-secret-1"));
}

TEST_CASE("messages never quote a secret", "[config]") {
  const std::string secret(300, 'S');
  const auto result =
      load(with_target("  iqn: iqn.2023-01.com.example:s\n"
                       "  auth: {method: chap, username: u, secret: " +
                       secret + "}\n"));
  const auto error = error_at(result, "target.auth.secret");
  CHECK_THAT(error.message, Contains("at most 255"));
  CHECK_THAT(result.error_report(), !Contains("SSSS"));

  const auto typed =
      load(with_target("  iqn: iqn.2023-01.com.example:s\n"
                       "  auth: {method: chap, username: u, secret: {x: hunter2}}\n"));
  CHECK_THAT(error_at(typed, "target.auth.secret").message, Contains("got a mapping"));
  CHECK_THAT(typed.error_report(), !Contains("hunter2"));
}

TEST_CASE("bad nbd settings are refused", "[config]") {
  const std::pair<std::string, std::string> cases[] = {
      {"unix:run/x.sock", "must be absolute"},
      {"'unix:'", "socket path"},
      {"unix:/" + std::string(120, 'x'), "at most 107"},
      {"'tcp:'", "'tcp:' must be followed by HOST[:PORT]"},
      {"'tcp:127.0.0.1:0'", "port 0"},
      {"'tcp:fd00::1'", "brackets"},
      {"http://127.0.0.1", "write 'unix:/path/to.sock' or 'tcp:HOST[:PORT]'"},
      {"/run/x.sock", "write 'unix:"},
  };
  for (const auto& [listen, reason] : cases) {
    INFO("listen: " << listen);
    const auto error = error_at(load(with_nbd("  listen: " + listen + "\n")), "nbd.listen");
    CHECK(error.line == 5);
    CHECK(error.column == 11);
    CHECK_THAT(error.message, Contains("invalid listen address") && Contains(reason));
  }
  CHECK_THAT(error_at(load(with_nbd("  export: ''\n")), "nbd.export").message,
             Contains("must not be empty"));
  const auto long_export =
      error_at(load(with_nbd("  export: " + std::string(100, 'e') + "\n")), "nbd.export");
  CHECK(long_export.line == 5);
  CHECK_THAT(long_export.message, Contains("set nbd.listen"));
  CHECK(load(with_nbd("  export: " + std::string(100, 'e') + "\n  listen: unix:/x.sock\n")).ok());
  CHECK_THAT(error_at(load(with_nbd("  - listen\n")), "nbd").message,
             Contains("expected a mapping"));
}

TEST_CASE("YAML syntax errors carry the line and column", "[config]") {
  SECTION("unclosed flow sequence") {
    const auto result = load("target:\n  iqn: [a, b\npaths: []\n");
    REQUIRE(result.errors().size() == 1);
    const auto& error = result.errors()[0];
    CHECK(error.code == config_errc::syntax_error);
    CHECK(error.key_path.empty());
    CHECK(error.line >= 2);
    CHECK(error.column >= 1);
    CHECK_THAT(error.to_string(), Contains("t.yaml:" + std::to_string(error.line) + ":"));
  }
  SECTION("bad indentation") {
    const auto result = load("target:\n  iqn: x\n lun: 1\n");
    REQUIRE(result.errors().size() == 1);
    CHECK(result.errors()[0].code == config_errc::syntax_error);
    CHECK(result.errors()[0].line == 3);
  }
  SECTION("a second ': ' on one line") {
    const auto result = load("target:\n  iqn: iqn.2023-01.com.example: x\npaths: []\n");
    REQUIRE(result.errors().size() == 1);
    CHECK(result.errors()[0].code == config_errc::syntax_error);
    CHECK(result.errors()[0].line == 2);
    // yaml-cpp's own "yaml-cpp: error at line..." prefix is not repeated in the message.
    CHECK_THAT(result.errors()[0].message, !Contains("yaml-cpp:"));
  }
}

TEST_CASE("the document itself must be a mapping", "[config]") {
  for (const std::string doc : {"- a\n- b\n", "just a string\n", "42\n"}) {
    const auto result = load(doc);
    REQUIRE(result.errors().size() == 1);
    CHECK(result.errors()[0].code == config_errc::wrong_type);
    CHECK_THAT(result.errors()[0].message, Contains("document must be a mapping"));
  }
  const auto complex_key = load("? [a, b]\n: c\n");
  CHECK_THAT(complex_key.error_report(), Contains("keys must be plain strings"));
}

TEST_CASE("all independent errors are collected, sorted by position", "[config]") {
  const auto result = load(R"(target:
  iqn: bogus
  lun: -1
paths:
  - portal: "1.2.3.4:0"
  - portal: 1.2.3.4
    source: nope
nbd:
  lisen: tcp:x
)");
  REQUIRE(result.errors().size() == 5);
  CHECK(result.errors()[0].key_path == "target.iqn");
  CHECK(result.errors()[1].key_path == "target.lun");
  CHECK(result.errors()[2].key_path == "paths[0].portal");
  CHECK(result.errors()[3].key_path == "paths[1].source");
  CHECK(result.errors()[4].key_path == "nbd.lisen");
  CHECK(result.errors()[4].line == 9);
  const std::string report = result.error_report();
  CHECK_THAT(report, Contains("t.yaml:5:13: paths[0].portal: invalid portal '1.2.3.4:0'"));
}

TEST_CASE("multipath grouping and failback take only their documented values", "[config]") {
  const std::string head = "target: {iqn: 'iqn.2023-01.com.example:s'}\npaths: [{portal: h}]\n";
  const auto grouping = error_at(load(head + "multipath: {path_grouping_policy: group-by-prio}\n"),
                                 "multipath.path_grouping_policy");
  CHECK(grouping.line == 3);
  CHECK_THAT(grouping.message,
             Contains("group-by-prio") && Contains("failover, multibus, group_by_prio"));
  const auto failback =
      error_at(load(head + "multipath: {failback: followover}\n"), "multipath.failback");
  CHECK_THAT(failback.message, Contains("immediate, manual, or a number of seconds"));
  CHECK(error_at(load(head + "multipath: {failback: 0}\n"), "multipath.failback").code ==
        config_errc::invalid_value);
}

TEST_CASE("multipath.max_sectors_kb takes KiB from 4 to 32768", "[config]") {
  const std::string head = "target: {iqn: 'iqn.2023-01.com.example:s'}\npaths: [{portal: h}]\n";
  const auto ok = load(head + "multipath: {max_sectors_kb: 256}\n");
  REQUIRE(ok.ok());
  CHECK(ok.config().multipath.max_sectors_kb == 256u);
  for (const char* bad : {"0", "3", "32769", "-1", "1.5", "big"}) {
    INFO(bad);
    const auto e = error_at(load(head + "multipath: {max_sectors_kb: " + bad + "}\n"),
                            "multipath.max_sectors_kb");
    CHECK(e.line == 3);
    CHECK(e.code == config_errc::invalid_value);
  }
}

namespace {

// An nbd.KEY that takes an integer: DEFAULT when absent, GOOD taken as given, and each of BAD
// refused at the key with the range (RANGE, e.g. "from 0 to 1000") in the message.
template <class T>
void check_nbd_integer(const std::string& key, T config::Nbd::*member, T fallback, T good,
                       std::initializer_list<const char*> bad, const std::string& range) {
  const std::string head = "target: {iqn: 'iqn.2023-01.com.example:s'}\npaths: [{portal: h}]\n";
  const auto absent = load(head);
  REQUIRE(absent.ok());
  CHECK(absent.config().nbd.*member == fallback);
  const auto set = load(head + "nbd: {" + key + ": " + std::to_string(good) + "}\n");
  REQUIRE(set.ok());
  CHECK(set.config().nbd.*member == good);
  for (const char* value : bad) {
    INFO(value);
    const auto e = error_at(load(head + "nbd: {" + key + ": " + value + "}\n"), "nbd." + key);
    CHECK(e.code == config_errc::invalid_value);
    CHECK_THAT(e.message, Contains(range));
  }
}

}  // namespace

TEST_CASE("nbd.busy_poll_us takes microseconds from 0 to 1000, off by default", "[config]") {
  check_nbd_integer<std::uint32_t>("busy_poll_us", &config::Nbd::busy_poll_us, 0, 50, {"1001"},
                                   "from 0 to 1000");
}

TEST_CASE("a path's interface must be a valid interface name", "[config]") {
  for (const char* bad : {"'eth 0'", "a/b", "'eth0:1'", "averyveryverylongname", "''"}) {
    INFO(bad);
    const auto e =
        error_at(load(with_path("  - {portal: h, interface: " + std::string(bad) + "}\n")),
                 "paths[0].interface");
    CHECK(e.line == 4);
    CHECK_THAT(e.message, Contains("not a network interface name"));
  }
  CHECK(load(with_path("  - {portal: h, interface: ini2, priority: 7}\n")).ok());
}

TEST_CASE("nbd.read_only is a boolean, false by default", "[config]") {
  const std::string head = "target: {iqn: 'iqn.2023-01.com.example:s'}\npaths: [{portal: h}]\n";
  const auto absent = load(head);
  REQUIRE(absent.ok());
  CHECK_FALSE(absent.config().nbd.read_only);
  const auto set = load(head + "nbd: {read_only: true}\n");
  REQUIRE(set.ok());
  CHECK(set.config().nbd.read_only);
  const auto e = error_at(load(head + "nbd: {read_only: maybe}\n"), "nbd.read_only");
  CHECK(e.line == 3);
  CHECK(e.code == config_errc::invalid_value);
}

TEST_CASE("nbd.description is optional text of at most 4096 bytes", "[config]") {
  const std::string head = "target: {iqn: 'iqn.2023-01.com.example:s'}\npaths: [{portal: h}]\n";
  const auto absent = load(head);
  REQUIRE(absent.ok());
  CHECK_FALSE(absent.config().nbd.description.has_value());
  const auto set = load(head + "nbd: {description: 'database volume'}\n");
  REQUIRE(set.ok());
  CHECK(set.config().nbd.description == "database volume");
  const auto empty = error_at(load(head + "nbd: {description: ''}\n"), "nbd.description");
  CHECK(empty.code == config_errc::invalid_value);
  const auto e = error_at(load(head + "nbd: {description: " + std::string(4097, 'd') + "}\n"),
                          "nbd.description");
  CHECK(e.code == config_errc::invalid_value);
  CHECK_THAT(e.message, Contains("at most 4096"));
}

TEST_CASE("nbd.max_clients is 100 by default, 0 for no limit", "[config]") {
  check_nbd_integer<std::uint32_t>("max_clients", &config::Nbd::max_clients, 100, 0,
                                   {"-1", "100001", "many", "1.5"}, "from 0 to 100000");
}

TEST_CASE("nbd.client_buffer_mib is 8 by default, 1 to 1024", "[config]") {
  check_nbd_integer<std::uint32_t>("client_buffer_mib", &config::Nbd::client_buffer_mib, 8, 64,
                                   {"0", "1025", "8M"}, "from 1 to 1024");
}

TEST_CASE("nbd.total_buffer_mib is 16 by default, 0 for no limit, at most 65536", "[config]") {
  check_nbd_integer<std::uint32_t>("total_buffer_mib", &config::Nbd::total_buffer_mib, 16, 0,
                                   {"-1", "65537", "16M", "1.5"}, "from 0 to 65536");
}

TEST_CASE("nbd.handshake_timeout is 10 seconds by default, 0 for no limit", "[config]") {
  check_nbd_integer<std::uint32_t>("handshake_timeout", &config::Nbd::handshake_timeout, 10, 3,
                                   {"3601"}, "from 0 to 3600");
}
