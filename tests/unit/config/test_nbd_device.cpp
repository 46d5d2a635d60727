// nbd.device: none | auto | /dev/nbdN.
#include <catch2/catch.hpp>

#include <string>

#include "config/config.hpp"
#include "config_test_support.hpp"
#include "loaded_config.hpp"

using config::NbdDevice;
using config_test::error_at;
using config_test::load;

namespace {

config::Result with_device(const std::string& value) {
  return load(
      "target: {iqn: 'iqn.2023-01.com.example:s', lun: 1}\n"
      "paths: [{portal: 127.0.0.1}]\n"
      "nbd: {device: '" +
      value + "'}\n");
}

}  // namespace

TEST_CASE("nbd.device defaults to none", "[config]") {
  const auto result = load(
      "target: {iqn: 'iqn.2023-01.com.example:s'}\n"
      "paths: [{portal: 127.0.0.1}]\n");
  REQUIRE(result.ok());
  CHECK(result.config().nbd.device == NbdDevice{});
  CHECK(result.config().nbd.device.mode == NbdDevice::Mode::none);
}

TEST_CASE("nbd.device takes none, auto and /dev/nbdN", "[config]") {
  CHECK(with_device("none").config().nbd.device == NbdDevice{NbdDevice::Mode::none, 0});
  CHECK(with_device("auto").config().nbd.device == NbdDevice{NbdDevice::Mode::any, 0});
  CHECK(with_device("/dev/nbd0").config().nbd.device == NbdDevice{NbdDevice::Mode::index, 0});
  CHECK(with_device("/dev/nbd12").config().nbd.device == NbdDevice{NbdDevice::Mode::index, 12});
}

TEST_CASE("nbd.device refuses anything else and says what it takes", "[config]") {
  for (const char* bad : {"/dev/nbd", "/dev/nbd01", "/dev/nbd1p1", "/dev/sda", "nbd0", "yes",
                          "/dev/nbd-1", "/dev/nbd1048576", "AUTO"}) {
    INFO(bad);
    const auto result = with_device(bad);
    const auto error = error_at(result, "nbd.device");
    CHECK(error.code == config::config_errc::invalid_value);
    CHECK_THAT(error.message, Catch::Contains("none, auto or /dev/nbdN"));
  }
}

TEST_CASE("redacted() prints nbd.device so that it reads back the same", "[config]") {
  for (const char* value : {"none", "auto", "/dev/nbd3"}) {
    INFO(value);
    const auto result = with_device(value);
    REQUIRE(result.ok());
    const std::string printed = config::redacted(result.config());
    CHECK_THAT(printed, Catch::Contains(std::string("device: ") + value));
    const config::Config again = test_support::loaded_config(printed);
    CHECK(again.nbd.device == result.config().nbd.device);
  }
}
