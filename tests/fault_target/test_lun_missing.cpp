// mpio::LunDevice opened on a LUN the target does not have, as a typo in `lun:` does: the open
// fails, and the error names the LUNs the target has (REPORT LUNS to LUN 0, SPC-4 §6.33), so the
// configuration is easy to fix.
#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "lun_fixture.hpp"

TEST_CASE("a LUN the target does not have: the open fails and names the LUNs it has",
          "[fault_target][lun]") {
  using namespace std::chrono_literals;
  boost::asio::io_context io;
  fault_target::FaultTarget target(io, fault_target::Script{.lun = 1});
  mpio::LunConfig config;
  config.lun = 7;
  config.paths.push_back(fault_target::path_to(target));
  std::optional<std::error_code> result;
  std::string detail;
  std::shared_ptr<mpio::LunDevice> device;
  mpio::LunDevice::open(
      io, config,
      [&](std::error_code ec, const std::string& d, std::shared_ptr<mpio::LunDevice> opened) {
        result = ec;
        detail = d;
        device = std::move(opened);
      });
  REQUIRE(fault_target::run_until(
      io, [&] { return result.has_value(); }, 5s));
  CHECK(*result);
  CHECK(device == nullptr);
  CHECK_THAT(detail, Catch::StartsWith("LUN 7 ") && Catch::EndsWith(" (the target has LUN 1)"));
}
