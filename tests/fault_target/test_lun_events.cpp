// mpio::LunDevice when the target asks, through an Asynchronous Message (RFC 7143 §11.9.1), for
// parameter negotiation (AsyncEvent 4), as a target does after an admin changed its settings:
// the path logs out and in again, and the client's reads never see an error.
#include <catch2/catch.hpp>

#include <chrono>
#include <string>

#include "lun_fixture.hpp"

namespace {
using namespace std::chrono_literals;
using fault_target::Fault;
using fault_target::Script;
}  // namespace

TEST_CASE("AsyncEvent 4: the path logs in again and reads go on without an error",
          "[fault_target][async]") {
  fault_target::LunFixture f(Script{.fault = Fault::async_renegotiate},
                             [](mpio::LunConfig& config) { config.polling_interval = 200ms; });
  std::string detail;
  const auto first = f.read(0, 8, detail);
  REQUIRE(first.has_value());
  CHECK_FALSE(*first);
  // The request came after the probe's first command: the path is on its way out and back.
  REQUIRE(f.run_until([&] { return f.target().observed().logins_completed == 2; }, 5s));
  REQUIRE(f.run_until([&] { return f.device().path_status()[0].state == mpio::PathState::active; },
                      5s));
  for (uint64_t lba = 0; lba < 64; lba += 8) {
    const auto ec = f.read(lba, 8, detail);
    INFO(detail);
    REQUIRE(ec.has_value());
    CHECK_FALSE(*ec);
  }
  CHECK(f.target().observed().count(iscsi::Opcode::logout_request) == 1);
}
