// mpio::LunDevice under path_grouping_policy group_by_prio against the scripted fault target
// with ALUA, whose REPORT TARGET PORT GROUPS answers come late: a busy array takes its time over
// them (the fault) while READ and WRITE are served at once. Every polling interval the device
// re-reads each path's ALUA state; I/O submitted while that re-read is outstanding must still
// find the path (found against LIO: a read waited for good behind an unchanged ALUA state).
#include <catch2/catch.hpp>

#include <chrono>
#include <string>

#include "lun_fixture.hpp"

namespace {

using namespace std::chrono_literals;
using fault_target::Script;

Script slow_alua_target() {
  Script s;
  s.alua = true;
  s.rtpg_delay = 300ms;
  return s;
}

}  // namespace

TEST_CASE("group_by_prio: I/O goes on while the ALUA state is re-read", "[fault_target][alua]") {
  fault_target::LunFixture f(slow_alua_target(), [](mpio::LunConfig& config) {
    config.grouping = mpio::Grouping::group_by_prio;
    config.polling_interval = 200ms;  // the sampler ticks once a second: a re-read every tick
  });
  const auto paths = f.device().path_status();
  REQUIRE(paths.size() == 1);
  CHECK(paths[0].alua_state == "active/optimized");
  CHECK(paths[0].priority == 50);
  // Reads back to back for over three seconds: two or more re-reads, each outstanding 300 ms,
  // fall among them. Each read must complete in far less than a polling interval's worth of
  // re-reads; one left waiting for the path would time out here.
  const auto started = std::chrono::steady_clock::now();
  int reads = 0;
  while (std::chrono::steady_clock::now() - started < 3500ms) {
    std::string detail;
    const auto ec = f.read(static_cast<uint64_t>(reads % 64) * 8, 8, detail, 2s);
    if (!ec) FAIL("read " << reads << " did not complete within 2 s");
    if (*ec) FAIL("read " << reads << " failed: " << detail);
    ++reads;
  }
  const auto rtpg =
      std::count_if(f.target().observed().received.begin(), f.target().observed().received.end(),
                    [](const auto& pdu) { return pdu.cdb_opcode == 0xa3; });
  INFO(reads << " reads, " << rtpg << " REPORT TARGET PORT GROUPS");
  CHECK(rtpg >= 3);  // the probe's own, then the re-reads the reads overlapped
  CHECK(f.device().path_status()[0].state == mpio::PathState::active);
}
