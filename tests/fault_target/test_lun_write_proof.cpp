// mpio::LunDevice holding a write whose path died with it in flight, until the write is proven
// dead (RFC 7143 §6.3.5 / SAM-5 §5.8.2). The faults: the portal group behind the write's path
// goes away with the write unanswered and refuses every login after (LIO with its TPG
// disabled), so the path's own session reinstatement never comes; and the other portal group
// rejects the first LOGICAL UNIT RESET, the only other proof, which a target under a task
// management storm may do. The write must neither be re-issued unproven nor be held for good.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "lun_fixture.hpp"

namespace {

using namespace std::chrono_literals;
using fault_target::Fault;
using fault_target::Script;

constexpr uint8_t kLogicalUnitReset = 5;  // RFC 7143 §11.5.1 function 5

}  // namespace

TEST_CASE("a write held for proof: a rejected LU reset is tried again until it proves the write",
          "[fault_target][write_proof]") {
  Script survivor;  // portal group 1: carries the write once it is proven dead
  survivor.portal_group_tag = 1;
  survivor.reject_lu_resets = 1;
  Script doomed;  // portal group 2: preferred, dies with the write in flight
  doomed.portal_group_tag = 2;
  doomed.fault = Fault::portal_group_gone_on_write;
  fault_target::LunFixture f(std::vector<Script>{survivor, doomed}, [](mpio::LunConfig& config) {
    config.grouping = mpio::Grouping::failover;
    config.paths[0].priority = 1;
    config.paths[1].priority = 10;
    config.polling_interval = 200ms;
  });
  std::vector<std::string> events;
  f.device().on_path_event([&](const std::string& path, mpio::PathState, const std::string& why) {
    events.push_back(path + ": " + why);
  });
  REQUIRE(f.run_until([&] {
    const auto paths = f.device().path_status();
    return paths[0].state == mpio::PathState::active && paths[1].state == mpio::PathState::active;
  }));

  std::vector<std::byte> data(8 * 512);
  for (size_t i = 0; i < data.size(); ++i) data[i] = std::byte(i * 7 + 1);
  std::string detail;
  const auto result = f.write(16, data, detail, 10s);
  std::string all_events;
  for (const auto& e : events) all_events += e + "\n";
  INFO(all_events);
  REQUIRE(result.has_value());  // without a second proof attempt it waits for good
  CHECK_FALSE(*result);

  const auto& seen = f.target(0).observed().received;
  const auto resets = std::count_if(seen.begin(), seen.end(), [](const auto& pdu) {
    return pdu.opcode == iscsi::Opcode::task_management_request &&
           pdu.tmf_function == kLogicalUnitReset;
  });
  CHECK(resets == 2);  // the rejected one and the one that proved the write dead
  // The write reached the medium through the surviving portal group, after the proof.
  CHECK(std::equal(data.begin(), data.end(), f.target(0).lun().begin() + 16 * 512));
  CHECK(f.target(1).observed().logins_completed == 1);  // every later login was refused
  CHECK(std::any_of(events.begin(), events.end(), [](const std::string& e) {
    return e.find("1 write(s) still held: LOGICAL UNIT RESET through") != std::string::npos &&
           e.find("function rejected") != std::string::npos;
  }));
  CHECK(std::any_of(events.begin(), events.end(), [](const std::string& e) {
    return e.find("1 write(s) re-issued: LOGICAL UNIT RESET through") != std::string::npos;
  }));
}
