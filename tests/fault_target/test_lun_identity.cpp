// mpio::LunDevice over two paths, and which of them it accepts as the same logical unit. The
// fault: a LU without a device identification designator (VPD 0x83 holds none for the LU, or the
// page is not supported at all) and with a blank unit serial number (VPD 0x80 of spaces), as some
// simple targets report. Such a LU has no identity: nothing tells it apart from another, so every
// path that also shows none is accepted, while a path that shows an identity where the first
// showed none (or the reverse) reaches another device and is refused.
#include <catch2/catch.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "lun_fixture.hpp"

namespace {

using namespace std::chrono_literals;
using fault_target::Script;
using DeviceIdentification = Script::DeviceIdentification;

Script nameless(DeviceIdentification kind) {
  Script s;
  s.device_identification = kind;
  s.unit_serial = std::string(16, ' ');
  return s;
}

Script serial_only(std::string serial) {
  Script s;
  s.device_identification = DeviceIdentification::no_lu_designator;
  s.unit_serial = std::move(serial);
  return s;
}

Script naa(uint32_t lu_id) {
  Script s;
  s.lu_id = lu_id;
  return s;
}

// Each path's state once every path has been accepted or refused (or after 5 s), by name so a
// failure shows them.
std::vector<std::string> settled_states(fault_target::LunFixture& f) {
  const auto settled = [&] {
    for (const auto& p : f.device().path_status())
      if (p.state == mpio::PathState::connecting || p.state == mpio::PathState::failed)
        return false;
    return true;
  };
  f.run_until(settled, 5s);
  std::vector<std::string> states;
  for (const auto& p : f.device().path_status()) {
    UNSCOPED_INFO(p.name << ": " << mpio::path_state_name(p.state) << " " << p.last_error);
    states.emplace_back(mpio::path_state_name(p.state));
  }
  return states;
}

const std::vector<std::string> both_active{"active", "active"};
const std::vector<std::string> second_refused{"active", "refused"};

}  // namespace

TEST_CASE("a LU with no designator and a blank serial: both paths to it are accepted",
          "[fault_target][identity]") {
  const auto kind =
      GENERATE(DeviceIdentification::no_lu_designator, DeviceIdentification::unsupported);
  INFO((kind == DeviceIdentification::unsupported ? "VPD 0x83 not supported"
                                                  : "VPD 0x83 without a LU designator"));
  fault_target::LunFixture f(std::vector<Script>{nameless(kind), nameless(kind)});
  CHECK(f.device().identity().wwid.empty());
  CHECK(settled_states(f) == both_active);
  std::string detail;
  const auto ec = f.read(0, 8, detail);
  REQUIRE(ec.has_value());
  CHECK_FALSE(*ec);
}

TEST_CASE("a serial padded with blanks names the same LU as the serial without them",
          "[fault_target][identity]") {
  fault_target::LunFixture f(
      std::vector<Script>{serial_only("    SN-0001"), serial_only("SN-0001   ")});
  CHECK(f.device().identity().wwid == "SSN-0001");
  CHECK(settled_states(f) == both_active);
}

TEST_CASE("a path to another device is refused", "[fault_target][identity]") {
  fault_target::LunFixture f(std::vector<Script>{naa(1), naa(2)});
  CHECK(settled_states(f) == second_refused);
  const auto refused = f.device().path_status().at(1);
  CHECK_THAT(refused.last_error, Catch::Contains("not " + f.device().identity().wwid) &&
                                     Catch::Contains("presents device 3"));
}

TEST_CASE("a path showing an identity where the first showed none is refused, and the reverse",
          "[fault_target][identity]") {
  SECTION("the first path shows none") {
    fault_target::LunFixture f(
        std::vector<Script>{nameless(DeviceIdentification::no_lu_designator), naa(1)});
    CHECK(settled_states(f) == second_refused);
    CHECK_THAT(f.device().path_status().at(1).last_error, Catch::EndsWith("not (no WWID)"));
  }
  SECTION("the second path shows none") {
    const auto kind =
        GENERATE(DeviceIdentification::no_lu_designator, DeviceIdentification::unsupported);
    fault_target::LunFixture f(std::vector<Script>{naa(1), nameless(kind)});
    CHECK(settled_states(f) == second_refused);
    CHECK_THAT(f.device().path_status().at(1).last_error,
               Catch::StartsWith("presents device (no WWID)"));
  }
}

TEST_CASE("add_path: a path found after open joins once its identity matches; another is refused",
          "[fault_target][identity][add_path]") {
  // Three targets, the device opened on the first only: the others are the portals a later
  // discovery reports, one presenting the same LU and one another.
  std::vector<mpio::LunPath> later;
  fault_target::LunFixture f({naa(7), naa(7), naa(8)}, [&](mpio::LunConfig& config) {
    later.assign(config.paths.begin() + 1, config.paths.end());
    config.paths.resize(1);
  });
  REQUIRE(f.device().path_status().size() == 1);
  REQUIRE(later.size() == 2);
  CHECK(f.device().add_path(later[0]) == std::optional<size_t>(1));
  CHECK(f.device().add_path(later[1]) == std::optional<size_t>(2));
  CHECK(settled_states(f) == std::vector<std::string>{"active", "active", "refused"});
  // The added path carries I/O: with the first failed by the operator, a READ goes to it.
  std::string detail;
  REQUIRE_FALSE(f.device().fail_path(0, detail));
  const auto reads_at_second = [&] {
    size_t n = 0;
    for (const auto& pdu : f.target(1).observed().received)
      n += pdu.opcode == iscsi::Opcode::scsi_command && pdu.cdb_opcode == 0x88 ? 1 : 0;
    return n;
  };
  const size_t before = reads_at_second();
  const auto read = f.read(0, 8, detail);
  INFO(detail);
  REQUIRE(read.has_value());
  CHECK_FALSE(*read);
  CHECK(reads_at_second() == before + 1);
}

TEST_CASE("add_path after stop_queueing is refused", "[fault_target][add_path]") {
  std::vector<mpio::LunPath> later;
  fault_target::LunFixture f({naa(7), naa(7)}, [&](mpio::LunConfig& config) {
    later.assign(config.paths.begin() + 1, config.paths.end());
    config.paths.resize(1);
  });
  f.device().stop_queueing();
  CHECK_FALSE(f.device().add_path(later.at(0)).has_value());
  CHECK(f.device().path_status().size() == 1);
}
