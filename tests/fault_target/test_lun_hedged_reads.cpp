// mpio::LunDevice's hedged reads (multipath.hedged_reads) against a path that is slow but
// alive: target 0 answers every READ 1.5 s late (its pings and other commands at once), target
// 1 at once. The two targets show one device but hold different bytes, so the reply says which
// attempt it came from. The fault stands for a congested link or a busy port; a black hole
// (tests/integration/multipath-suite.sh hedged-blackhole) differs only in never answering.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <functional>
#include <optional>
#include <vector>

#include "lun_fixture.hpp"

namespace {

using namespace std::chrono_literals;
using fault_target::Script;

constexpr auto kSlowRead = 1500ms;
constexpr std::byte kSlowByte{0xaa};  // target 0's LUN
constexpr std::byte kFastByte{0xbb};  // target 1's LUN

struct Read {
  std::vector<std::byte> buffer = std::vector<std::byte>(16 * 512);
  blockdev::IoRequest request;
  std::optional<std::error_code> result;
};

bool all(const std::vector<std::byte>& bytes, std::byte value) {
  return std::all_of(bytes.begin(), bytes.end(), [&](std::byte b) { return b == value; });
}

// Two reads at once: round-robin puts one on each path, so one of them waits on the slow path.
void read_two(fault_target::LunFixture& f, std::array<Read, 2>& reads) {
  uint64_t lba = 0;
  for (Read& r : reads) {
    r.request.op = blockdev::IoOp::read;
    r.request.offset = lba * 512;
    r.request.length = r.buffer.size();
    r.request.buffer = r.buffer;
    r.request.done = [&r](std::error_code ec, const std::string&) { r.result = ec; };
    lba += 64;
  }
  for (Read& r : reads) f.device().submit(r.request);
}

// Target 0 slow, target 1 fast, each LUN filled with its target's byte, both paths active.
struct SlowAndFast {
  explicit SlowAndFast(const std::function<void(mpio::LunConfig&)>& adjust = {})
      : f(scripts(), adjust) {
    REQUIRE(f.run_until([&] {
      const auto paths = f.device().path_status();
      return paths[0].state == mpio::PathState::active && paths[1].state == mpio::PathState::active;
    }));
    std::fill(f.target(0).lun().begin(), f.target(0).lun().end(), kSlowByte);
    std::fill(f.target(1).lun().begin(), f.target(1).lun().end(), kFastByte);
  }

  static std::vector<Script> scripts() {
    Script slow;
    slow.read_delay = kSlowRead;
    return {slow, Script{}};
  }

  // read_two(), run until both reads are answered; false when they were not within 5 s.
  bool read_two_answered(std::array<Read, 2>& reads) {
    read_two(f, reads);
    return f.run_until([&] { return reads[0].result && reads[1].result; }, 5s);
  }

  fault_target::LunFixture f;
};

}  // namespace

TEST_CASE("a read stuck on a slow path is answered through the other; the late data is dropped",
          "[fault_target][hedge]") {
  SlowAndFast s;
  auto& f = s.f;
  std::array<Read, 2> reads;
  REQUIRE(s.read_two_answered(reads));
  // Both replies came while the slow path's read was still out there (a capacity poll may be
  // out with it): the read sent there did not wait for it. How soon a hedge answers is a
  // figure for tools/bench.d/hedge.sh, not a test.
  auto paths = f.device().path_status();
  CHECK(paths[0].in_flight >= 1);
  for (const Read& r : reads) {
    CHECK_FALSE(*r.result);
    CHECK(all(r.buffer, kFastByte));  // both replies came from target 1
  }
  CHECK(paths[1].hedges_sent == 1);
  CHECK(paths[1].hedges_won == 1);
  CHECK(paths[0].hedges_sent == 0);

  // The first attempt's Data-In arrives later: it must not land in the reply's buffer, and
  // the slow path is not failed for being slow.
  REQUIRE(f.run_until([&] { return f.device().path_status()[0].in_flight == 0; }, 3s));
  for (const Read& r : reads) CHECK(all(r.buffer, kFastByte));
  paths = f.device().path_status();
  CHECK(paths[0].state == mpio::PathState::active);
  CHECK(paths[0].errors == 0);
  CHECK(f.device().requests_in_flight() == 0);
}

TEST_CASE("with hedged reads off a read waits for its slow path", "[fault_target][hedge]") {
  SlowAndFast s([](mpio::LunConfig& config) { config.hedged_reads.enabled = false; });
  std::array<Read, 2> reads;
  REQUIRE(s.read_two_answered(reads));
  // One reply from each target: the one sent to the slow path was answered from there.
  CHECK((all(reads[0].buffer, kSlowByte) != all(reads[1].buffer, kSlowByte)));
  for (const auto& p : s.f.device().path_status()) CHECK(p.hedges_sent == 0);
}
