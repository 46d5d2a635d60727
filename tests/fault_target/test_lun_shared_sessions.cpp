// Several mpio::LunDevices on one iscsi_io::SessionPool, as an attach of several LUNs of one
// target opens them: one session per path at the target, whatever the number of devices; a
// session the target ends is logged in again once for all of them; a device that closes, or
// whose open fails, leaves the others' sessions alone, and the last one out logs out.
//
// The fake serves one LU, so the devices here are opened on the same LUN: what is under test is
// how sessions are shared, which does not depend on the LUN a device addresses. The faults are
// the target dropping its connections, which ends a session under every device, and a
// LUN that does not exist (the open of one device fails).
#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <iscsi_io/session_pool.hpp>

#include "lun_fixture.hpp"

namespace {
using namespace std::chrono_literals;
using fault_target::FaultTarget;
using fault_target::Script;

struct SharedFixture {
  explicit SharedFixture(const std::vector<Script>& scripts) {
    for (const Script& script : scripts) {
      targets.push_back(std::make_unique<FaultTarget>(io, script));
      // One ISID per path, the same for every device: one I_T nexus per path.
      paths.push_back(fault_target::path_to(*targets.back()));
    }
  }

  ~SharedFixture() {
    for (auto& device : devices) {
      if (!device) continue;
      bool closed = false;
      device->close(2s, [&](std::error_code) { closed = true; });
      run_until([&] { return closed; });
    }
  }

  // Opens a device on `lun` through every path; the error's detail, or "" on success.
  std::string open(uint16_t lun) {
    mpio::LunConfig config;
    config.lun = lun;
    config.paths = paths;
    config.polling_interval = 200ms;
    config.sessions = pool;
    std::optional<std::string> failure;
    std::shared_ptr<mpio::LunDevice> opened;
    mpio::LunDevice::open(io, config,
                          [&](std::error_code ec, const std::string& detail,
                              std::shared_ptr<mpio::LunDevice> device) {
                            if (ec) failure = detail.empty() ? ec.message() : detail;
                            opened = std::move(device);
                          });
    REQUIRE(run_until([&] { return opened != nullptr || failure.has_value(); }));
    if (opened) devices.push_back(std::move(opened));
    return failure.value_or("");
  }

  std::error_code read(mpio::LunDevice& device, uint64_t offset, std::string& detail) {
    std::vector<std::byte> buffer(4096);
    std::optional<std::error_code> result;
    blockdev::IoRequest request;
    request.op = blockdev::IoOp::read;
    request.offset = offset;
    request.length = buffer.size();
    request.buffer = buffer;
    request.done = [&](std::error_code ec, const std::string& d) {
      result = ec;
      detail = d;
    };
    device.submit(request);
    REQUIRE(run_until([&] { return result.has_value(); }));
    return *result;
  }

  bool all_active(const mpio::LunDevice& device) const {
    for (const auto& path : device.path_status())
      if (path.state != mpio::PathState::active) return false;
    return true;
  }

  void close(size_t index) {
    bool closed = false;
    devices.at(index)->close(2s, [&](std::error_code) { closed = true; });
    REQUIRE(run_until([&] { return closed; }));
    devices.at(index).reset();
  }

  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit = 5s) {
    return fault_target::run_until(io, done, limit);
  }

  boost::asio::io_context io;
  std::shared_ptr<iscsi_io::SessionPool> pool = iscsi_io::SessionPool::create(io);
  std::vector<std::unique_ptr<FaultTarget>> targets;
  std::vector<mpio::LunPath> paths;
  std::vector<std::shared_ptr<mpio::LunDevice>> devices;
};

}  // namespace

TEST_CASE("three devices over two paths hold two sessions; the last one out logs out",
          "[fault_target][shared]") {
  SharedFixture f({Script{}, Script{}});
  for (int i = 0; i < 3; ++i) REQUIRE(f.open(0).empty());
  for (auto& device : f.devices) REQUIRE(f.run_until([&] { return f.all_active(*device); }));
  for (auto& target : f.targets) CHECK(target->observed().logins_completed == 1);
  CHECK(f.pool->sessions_logged_in() == 2);
  std::string detail;
  for (auto& device : f.devices) {
    for (uint64_t offset = 0; offset < 64 * 1024; offset += 4096) {
      INFO(detail);
      REQUIRE_FALSE(f.read(*device, offset, detail));
    }
  }

  // The first two leave: the third keeps both sessions and reads on.
  f.close(0);
  f.close(1);
  for (auto& target : f.targets)
    CHECK(target->observed().count(iscsi::Opcode::logout_request) == 0);
  CHECK(f.pool->sessions_logged_in() == 2);
  CHECK_FALSE(f.read(*f.devices[2], 0, detail));

  f.close(2);
  for (auto& target : f.targets) {
    CHECK(target->observed().count(iscsi::Opcode::logout_request) == 1);
    CHECK(target->observed().logins_completed == 1);
  }
  CHECK(f.pool->sessions_logged_in() == 0);
}

TEST_CASE("a session the target ends is logged in again once for every device on it",
          "[fault_target][shared]") {
  SharedFixture f({Script{}});
  for (int i = 0; i < 3; ++i) REQUIRE(f.open(0).empty());
  for (auto& device : f.devices) REQUIRE(f.run_until([&] { return f.all_active(*device); }));
  REQUIRE(f.targets[0]->observed().logins_completed == 1);

  f.targets[0]->drop_connections();
  // Every device loses the path and comes back on one new session.
  REQUIRE(f.run_until([&] { return f.targets[0]->observed().logins_completed >= 2; }));
  for (auto& device : f.devices) REQUIRE(f.run_until([&] { return f.all_active(*device); }));
  std::string detail;
  for (auto& device : f.devices) {
    INFO(detail);
    CHECK_FALSE(f.read(*device, 0, detail));
  }
  CHECK(f.targets[0]->observed().logins_completed == 2);
  CHECK(f.pool->sessions_logged_in() == 1);
}

TEST_CASE("a device whose open fails leaves the sessions it shared with others",
          "[fault_target][shared]") {
  SharedFixture f({Script{.lun = 1}, Script{.lun = 1}});
  REQUIRE(f.open(1).empty());
  const std::string failure = f.open(7);
  CHECK_THAT(failure, Catch::StartsWith("LUN 7 "));
  std::string detail;
  INFO(detail);
  CHECK_FALSE(f.read(*f.devices[0], 0, detail));
  REQUIRE(f.run_until([&] { return f.all_active(*f.devices[0]); }));
  for (auto& target : f.targets) {
    CHECK(target->observed().logins_completed == 1);
    CHECK(target->observed().count(iscsi::Opcode::logout_request) == 0);
  }
  CHECK(f.pool->sessions_logged_in() == 2);
}

// iscsi-mpio reload on an attach of two LUNs: the path added joins both devices on one new
// session; the path removed drains, leaves both path lists, and its session logs out once
// the second device lets go of it, while the others read on.
TEST_CASE("a reload adds a path to every device on one session and removes one",
          "[fault_target][shared][reload]") {
  SharedFixture f({Script{}, Script{}, Script{}});
  const mpio::LunPath added = f.paths.back();
  f.paths.pop_back();
  for (int i = 0; i < 2; ++i) REQUIRE(f.open(0).empty());
  for (auto& device : f.devices) REQUIRE(f.run_until([&] { return f.all_active(*device); }));
  CHECK(f.targets[2]->observed().logins_completed == 0);

  for (auto& device : f.devices) device->add_path(added);
  for (auto& device : f.devices) {
    REQUIRE(device->path_status().size() == 3);
    REQUIRE(f.run_until([&] { return f.all_active(*device); }));
  }
  CHECK(f.targets[2]->observed().logins_completed == 1);
  CHECK(f.pool->sessions_logged_in() == 3);

  std::vector<size_t> drained;
  int released = 0;
  for (auto& device : f.devices) {
    std::string detail;
    REQUIRE_FALSE(device->remove_path(
        0, detail, [&](size_t index) { drained.push_back(index); },
        [&](std::error_code) { ++released; }));
  }
  REQUIRE(f.run_until([&] { return released == 2; }));
  CHECK(drained == std::vector<size_t>{0, 0});
  CHECK(f.targets[0]->observed().count(iscsi::Opcode::logout_request) == 1);
  CHECK(f.pool->sessions_logged_in() == 2);
  std::string detail;
  for (auto& device : f.devices) {
    const auto paths = device->path_status();
    REQUIRE(paths.size() == 2);
    CHECK(paths[1].name == iscsi_io::describe(added.login));
    CHECK(device->paths_draining() == 0);
    INFO(detail);
    CHECK_FALSE(f.read(*device, 0, detail));
    // A path index gone is an error, not a crash.
    CHECK(device->remove_path(
              5, detail, [](size_t) {}, [](std::error_code) {}) == std::errc::invalid_argument);
  }
  for (auto& target : f.targets) CHECK(target->observed().logins_completed == 1);
}

TEST_CASE("reconfigure takes a known path selector and refuses another",
          "[fault_target][shared][reload]") {
  SharedFixture f({Script{}, Script{}});
  REQUIRE(f.open(0).empty());
  auto& device = *f.devices[0];
  REQUIRE(f.run_until([&] { return f.all_active(device); }));
  mpio::LunConfig settings;
  settings.path_selector = "no-such-selector";
  std::string detail;
  CHECK(device.reconfigure(settings, detail) == std::errc::invalid_argument);
  CHECK_THAT(detail, Catch::Contains("no-such-selector"));
  settings.path_selector = "queue-length";
  settings.grouping = mpio::Grouping::failover;
  CHECK_FALSE(device.reconfigure(settings, detail));
  CHECK(device.grouping() == mpio::Grouping::failover);
  // Failover: one path group carries I/O once the paths are placed again.
  REQUIRE(f.run_until([&] {
    size_t in_use = 0;
    for (const auto& p : device.path_status()) in_use += p.group_in_use ? 1 : 0;
    return in_use == 1;
  }));
  CHECK_FALSE(f.read(device, 0, detail));
}
