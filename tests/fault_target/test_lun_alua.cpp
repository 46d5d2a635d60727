// mpio::LunDevice under path_grouping_policy group_by_prio against the scripted fault target
// with ALUA, whose REPORT TARGET PORT GROUPS answers come late: a busy array takes its time over
// them (the fault) while READ and WRITE are served at once. Every polling interval the device
// re-reads each path's ALUA state; I/O submitted while that re-read is outstanding must still
// find the path (found against LIO: a read waited for good behind an unchanged ALUA state).
#include <catch2/catch.hpp>

#include <algorithm>
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

namespace {

// The first data commands answered NOT READY with an ALUA state (SPC-4 §5.16.2.4) while REPORT
// TARGET PORT GROUPS says active/optimized: a port group in the middle of a transition, or one
// that was in standby a moment ago, as LIO answers when its states are changed under I/O.
Script alua_answers(uint8_t ascq, size_t count) {
  Script s;
  s.alua = true;
  s.data_command_answers.assign(count,
                                {.status = 0x02, .sense_key = 0x02, .asc = 0x04, .ascq = ascq});
  return s;
}

void adjust_group_by_prio(mpio::LunConfig& config) {
  config.grouping = mpio::Grouping::group_by_prio;
  config.polling_interval = 1000ms;
}

// One READ through the device completes GOOD, and the one path is active, with no error
// counted or recorded, on its first and only login.
void read_on_path_never_failed(fault_target::LunFixture& f, std::chrono::milliseconds limit) {
  std::string detail;
  const auto ec = f.read(0, 8, detail, limit);
  REQUIRE(ec);
  INFO(detail);
  CHECK_FALSE(*ec);
  const auto path = f.device().path_status()[0];
  CHECK(path.state == mpio::PathState::active);
  CHECK(path.alua_state == "active/optimized");
  CHECK(path.errors == 0);
  CHECK(path.last_error.empty());
  CHECK(f.target().observed().logins_completed == 1);
}

}  // namespace

TEST_CASE("group_by_prio: ALUA transitioning (04/0A) is retried, not failed",
          "[fault_target][alua]") {
  // Nine answers: one past max_retries (8), about 3.3 s of backoff in all.
  fault_target::LunFixture f(alua_answers(0x0a, 9), adjust_group_by_prio);
  read_on_path_never_failed(f, 15s);
  const auto reads =
      std::count_if(f.target().observed().received.begin(), f.target().observed().received.end(),
                    [](const auto& pdu) { return pdu.cdb_opcode == 0x88; });
  CHECK(reads == 10);
}

TEST_CASE("group_by_prio: a command answered standby (04/0B) makes a ghost, not a failed path",
          "[fault_target][alua]") {
  // The answer says standby, the port groups' report says active/optimized again: the path
  // waits as a ghost for that report, then carries the read; it is never failed or logged in
  // again (no_path_retry queue holds the read meanwhile).
  fault_target::LunFixture f(alua_answers(0x0b, 1), adjust_group_by_prio);
  read_on_path_never_failed(f, 5s);
}
