// check-config's report: which findings each situation gives, the exit status, the table.
#include <catch2/catch.hpp>

#include "check_config.hpp"

namespace check_config = iscsi_mpio::check_config;

using iscsi_mpio::check_config::Finding;
using iscsi_mpio::check_config::PathReport;
using iscsi_mpio::check_config::Step;

namespace {

Step ok_step(std::string summary = "ok") {
  return {Step::Outcome::ok, std::move(summary), {}};
}

PathReport good_path(std::string name, std::string interface, uint32_t mtu,
                     std::string wwid = "360000000000000000e00000000010001") {
  PathReport p;
  p.name = std::move(name);
  p.interface = std::move(interface);
  p.mtu = mtu;
  p.connect = ok_step("ok 0.2ms");
  p.login = ok_step();
  p.device = ok_step();
  p.wwid = std::move(wwid);
  p.vendor = "IET";
  p.product = "VIRTUAL-DISK";
  p.size_bytes = 512ull << 20;
  p.block_size = 512;
  return p;
}

size_t count(const std::vector<Finding>& findings, Finding::Severity severity) {
  return static_cast<size_t>(std::count_if(
      findings.begin(), findings.end(), [&](const Finding& f) { return f.severity == severity; }));
}

}  // namespace

TEST_CASE("two paths on two NICs reaching one device: no finding", "[check_config]") {
  std::vector<PathReport> paths{good_path("192.168.100.1:3260 from 192.168.10.10", "eth1", 9000),
                                good_path("192.168.101.1:3260 from 192.168.11.10", "eth2", 9000)};
  const auto findings = check_config::assess(paths, "");
  CHECK(findings.empty());
  CHECK(check_config::exit_code(findings, false) == check_config::exit_ok);
  CHECK(check_config::exit_code(findings, true) == check_config::exit_ok);
  const auto table = check_config::render(paths, findings);
  CHECK(table.find("PATH") == 0);
  CHECK(table.find("192.168.101.1:3260 from 192.168.11.10  eth2") != std::string::npos);
  CHECK(table.find("512M") != std::string::npos);
  CHECK(table.find("all 2 paths usable and consistent\n") != std::string::npos);
}

TEST_CASE("two paths through one interface are one path: a warning", "[check_config]") {
  std::vector<PathReport> paths{good_path("127.0.0.1:3260", "lo", 65536),
                                good_path("127.0.0.2:3260", "lo", 65536),
                                good_path("10.0.0.1:3260", "eth0", 65536)};
  const auto findings = check_config::assess(paths, "");
  REQUIRE(findings.size() == 1);
  CHECK(findings[0].severity == Finding::Severity::warning);
  CHECK(findings[0].paths == std::vector<size_t>{0, 1});
  CHECK(findings[0].message ==
        "paths 127.0.0.1:3260 and 127.0.0.2:3260 both leave through interface lo: that is one "
        "path, not two (give each NIC its own subnet, or policy-route each source address)");
  CHECK(check_config::exit_code(findings, false) == check_config::exit_ok);
  CHECK(check_config::exit_code(findings, true) == check_config::exit_problem);
  const auto table = check_config::render(paths, findings);
  CHECK(table.find("ok, warning") != std::string::npos);
  CHECK(table.find("all 3 paths usable and consistent, 1 warning\n") != std::string::npos);
}

TEST_CASE("three paths through one interface", "[check_config]") {
  std::vector<PathReport> paths{good_path("a", "lo", 65536), good_path("b", "lo", 65536),
                                good_path("c", "lo", 65536)};
  const auto findings = check_config::assess(paths, "");
  REQUIRE(findings.size() == 1);
  CHECK(findings[0].message.find("paths a, b and c all leave through interface lo: that is one "
                                 "path, not 3") == 0);
}

TEST_CASE("MTU differing between paths: jumbo frames on one path only", "[check_config]") {
  std::vector<PathReport> paths{good_path("p1", "eth1", 9000), good_path("p2", "eth2", 1500)};
  const auto findings = check_config::assess(paths, "");
  REQUIRE(findings.size() == 1);
  CHECK(findings[0].severity == Finding::Severity::warning);
  CHECK(findings[0].paths == std::vector<size_t>{0, 1});
  CHECK(findings[0].message.find("MTU differs between paths: 9000 on eth1 (p1), 1500 on eth2 "
                                 "(p2): jumbo frames on one path only") == 0);
  CHECK(check_config::exit_code(findings, false) == check_config::exit_ok);
}

TEST_CASE("an unknown interface or MTU is not compared", "[check_config]") {
  auto named = good_path("p1", "eth1", 9000);
  named.interface.reset();
  named.mtu.reset();
  auto unknown_mtu = good_path("p2", "eth1", 0);
  unknown_mtu.mtu.reset();
  std::vector<PathReport> paths{named, unknown_mtu, good_path("p3", "eth3", 1500)};
  CHECK(check_config::assess(paths, "").empty());
}

TEST_CASE("a refused connect is an error naming the path", "[check_config]") {
  auto refused = good_path("127.0.0.1:9", "lo", 1500);
  refused.connect = {Step::Outcome::failed, "refused", "Connection refused"};
  refused.login = {};
  refused.device = {};
  refused.wwid.clear();
  std::vector<PathReport> paths{good_path("127.0.0.1:3260", "eth0", 1500), refused};
  const auto findings = check_config::assess(paths, "");
  REQUIRE(count(findings, Finding::Severity::error) == 1);
  CHECK(findings[0].message == "path 127.0.0.1:9: connect failed: Connection refused");
  CHECK(findings[0].paths == std::vector<size_t>{1});
  CHECK(check_config::exit_code(findings, false) == check_config::exit_problem);
  const auto table = check_config::render(paths, findings);
  CHECK(table.find("refused") != std::string::npos);
  CHECK(table.find("FAIL") != std::string::npos);
  CHECK(table.find("1 of 2 paths reachable, 1 error\n") != std::string::npos);
}

TEST_CASE("a failed login carries the login status", "[check_config]") {
  auto refused = good_path("127.0.0.1:3260", "lo", 65536);
  refused.login = {Step::Outcome::failed, "authentication failure (0201)",
                   "authentication failure (0201)"};
  refused.device = {};
  std::vector<PathReport> paths{refused};
  const auto findings = check_config::assess(paths, "");
  REQUIRE(findings.size() == 1);
  CHECK(findings[0].message == "path 127.0.0.1:3260: login failed: authentication failure (0201)");
  // Only the first failed step is reported: the device was never probed.
  CHECK(check_config::render(paths, findings).find("authentication failure (0201)  -") !=
        std::string::npos);
}

TEST_CASE("paths presenting different devices without target.wwid", "[check_config]") {
  std::vector<PathReport> paths{good_path("p1", "eth1", 1500, "3600a"),
                                good_path("p2", "eth2", 1500, "3600b"),
                                good_path("p3", "eth3", 1500, "3600a")};
  const auto findings = check_config::assess(paths, "");
  REQUIRE(findings.size() == 1);
  CHECK(findings[0].severity == Finding::Severity::error);
  // The first path's device is the one attach takes: the others are the odd ones out.
  CHECK(findings[0].paths == std::vector<size_t>{1});
  CHECK(findings[0].message.find(
            "paths present different devices: p1 and p3 present 3600a; p2 presents 3600b") == 0);
  const auto table = check_config::render(paths, findings);
  CHECK(table.find("OTHER DEVICE") != std::string::npos);
  CHECK(check_config::exit_code(findings, false) == check_config::exit_problem);
}

TEST_CASE("every path must present target.wwid when it is set", "[check_config]") {
  std::vector<PathReport> paths{good_path("p1", "eth1", 1500, "3600a"),
                                good_path("p2", "eth2", 1500, "3600b")};
  const auto findings = check_config::assess(paths, "3600b");
  REQUIRE(findings.size() == 1);
  CHECK(findings[0].paths == std::vector<size_t>{0});
  CHECK(findings[0].message ==
        "different devices: path p1 presents 3600a, not target.wwid 3600b (attach refuses this "
        "path)");
  CHECK(check_config::assess(paths, "3600c").size() == 2);
}

TEST_CASE("one device with two sizes, and a device without identifier", "[check_config]") {
  auto bigger = good_path("p2", "eth2", 1500);
  bigger.size_bytes = 1ull << 30;
  auto anonymous = good_path("p3", "eth3", 1500, "");
  std::vector<PathReport> paths{good_path("p1", "eth1", 1500), bigger};
  auto findings = check_config::assess(paths, "");
  REQUIRE(findings.size() == 1);
  CHECK(findings[0].severity == Finding::Severity::warning);
  CHECK(findings[0].message.find("has different sizes: 512M (536870912 bytes) on p1, 1G") !=
        std::string::npos);

  findings = check_config::assess({anonymous}, "");
  REQUIRE(findings.size() == 1);
  CHECK(findings[0].message.find("presents no device identifier") != std::string::npos);
}

TEST_CASE("a path's note is a warning; a standby port's unknown size is not compared",
          "[check_config]") {
  auto standby = good_path("p2", "eth2", 1500);
  standby.block_size = 0;
  standby.size_bytes = 0;
  standby.notes.push_back("LUN 1 is not accessible through this port now");
  std::vector<PathReport> paths{good_path("p1", "eth1", 1500), standby};
  const auto findings = check_config::assess(paths, "");
  REQUIRE(findings.size() == 1);
  CHECK(findings[0].message == "path p2: LUN 1 is not accessible through this port now");
  CHECK(check_config::exit_code(findings, false) == check_config::exit_ok);
}

TEST_CASE("errors come before warnings", "[check_config]") {
  auto refused = good_path("p3", "eth1", 1500);
  refused.connect = {Step::Outcome::failed, "timeout", "no answer"};
  std::vector<PathReport> paths{good_path("p1", "eth1", 9000), good_path("p2", "eth2", 1500),
                                refused};
  const auto findings = check_config::assess(paths, "");
  REQUIRE(findings.size() == 3);
  CHECK(findings[0].severity == Finding::Severity::error);
  CHECK(findings[1].severity == Finding::Severity::warning);
  CHECK(findings[2].severity == Finding::Severity::warning);
}

TEST_CASE("size_text", "[check_config]") {
  CHECK(check_config::size_text(0) == "0");
  CHECK(check_config::size_text(512) == "512");
  CHECK(check_config::size_text(512ull << 20) == "512M");
  CHECK(check_config::size_text(3ull << 29) == "1.5G");
  CHECK(check_config::size_text(~0ull) == "16384P");
}

TEST_CASE("offline: no path probed, only the local facts judged", "[check_config]") {
  PathReport a;
  a.name = "127.0.0.1:3260";
  a.interface = "lo";
  a.mtu = 65536;
  PathReport b = a;
  b.name = "192.168.100.1:3260 from 192.168.10.10";
  b.interface.reset();
  b.mtu.reset();
  std::vector<PathReport> paths{a, b};
  auto findings = check_config::assess(paths, "3600a");
  CHECK(findings.empty());  // nothing probed: no device to compare with target.wwid
  auto table = check_config::render(paths, findings);
  CHECK(table.find("127.0.0.1:3260                         lo         65536  -        -      -     "
                   "-     not probed\n") != std::string::npos);
  CHECK(table.find("configuration valid, 2 paths not probed\n") != std::string::npos);

  paths[1].interface = "lo";
  findings = check_config::assess(paths, "");
  REQUIRE(findings.size() == 1);
  CHECK(findings[0].message.find("one path, not two") != std::string::npos);
  CHECK(check_config::render(paths, findings)
            .find("configuration valid, 2 paths not probed, 1 warning\n") != std::string::npos);
}
