// mpio::LunDevice against the scripted fault target: the LU is resized while in service. The
// fault stands for a storage admin growing a LUN on the array: with UNIT ATTENTION 2A/09 (SPC-4
// Annex D, CAPACITY DATA HAS CHANGED), or without any notice, which the polling interval's
// READ CAPACITY(16) must catch. tgtd cannot resize a LUN in service, hence the fake.
#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

#include "lun_fixture.hpp"

namespace {

using namespace std::chrono_literals;
using fault_target::Script;

constexpr uint32_t kBlockSize = 512;
constexpr uint64_t kBlocks = 2048;  // 1 MiB
constexpr uint64_t kGrownBlocks = 8192;

// A one-path device whose capacity is re-read every `polling_interval`.
class LunFixture : public fault_target::LunFixture {
 public:
  explicit LunFixture(std::chrono::milliseconds polling_interval)
      : fault_target::LunFixture(script(), [polling_interval](mpio::LunConfig& config) {
          config.polling_interval = polling_interval;
        }) {}

 private:
  static Script script() {
    Script s;
    s.blocks = kBlocks;
    s.block_size = kBlockSize;
    return s;
  }
};

}  // namespace

TEST_CASE("resize with UNIT ATTENTION 2A/09: the READ that meets it succeeds, the size follows",
          "[fault_target][capacity]") {
  LunFixture f(1h);  // no polling re-read during the test: only the unit attention can tell
  REQUIRE(f.device().info().size_bytes == kBlocks * kBlockSize);
  f.target().resize(kGrownBlocks, true);
  std::string detail;
  const auto ec = f.read(0, 8, detail);
  INFO(detail);
  REQUIRE(ec.has_value());
  CHECK_FALSE(*ec);  // a unit attention reports a condition, the command is retried
  REQUIRE(f.run_until([&] { return !f.sizes_seen.empty(); }));
  CHECK(f.sizes_seen == std::vector<uint64_t>{kGrownBlocks * kBlockSize});
  CHECK(f.device().info().size_bytes == kGrownBlocks * kBlockSize);
  // The grown part is readable through the device.
  CHECK(f.read(kGrownBlocks - 8, 8, detail) == std::error_code{});
}

TEST_CASE("resize without notice: the polling interval's READ CAPACITY finds the new size",
          "[fault_target][capacity]") {
  LunFixture f(1s);
  f.target().resize(kGrownBlocks, false);
  REQUIRE(f.run_until([&] { return !f.sizes_seen.empty(); }, 4s));
  CHECK(f.sizes_seen == std::vector<uint64_t>{kGrownBlocks * kBlockSize});
  CHECK(f.device().info().size_bytes == kGrownBlocks * kBlockSize);
  // Shrunk back: the device follows down too.
  f.target().resize(kBlocks, false);
  REQUIRE(f.run_until([&] { return f.sizes_seen.size() == 2; }, 4s));
  CHECK(f.sizes_seen.back() == kBlocks * kBlockSize);
}

TEST_CASE("check_capacity (the operator's rescan): one READ CAPACITY now, not at the next poll",
          "[fault_target][capacity][rescan]") {
  LunFixture f(1h);  // the poll would not come during the test
  auto read_capacities = [&] {
    size_t n = 0;
    for (const auto& pdu : f.target().observed().received)
      n += pdu.opcode == iscsi::Opcode::scsi_command && pdu.cdb_opcode == 0x9e ? 1 : 0;
    return n;
  };
  const size_t at_open = read_capacities();
  f.target().resize(kGrownBlocks, false);
  f.device().check_capacity();
  REQUIRE(f.run_until([&] { return !f.sizes_seen.empty(); }, 2s));
  CHECK(f.sizes_seen == std::vector<uint64_t>{kGrownBlocks * kBlockSize});
  CHECK(read_capacities() == at_open + 1);
  // Unchanged: asked once more, no event.
  f.device().check_capacity();
  REQUIRE(f.run_until([&] { return read_capacities() == at_open + 2; }, 2s));
  f.run_until([] { return false; }, 100ms);
  CHECK(f.sizes_seen.size() == 1);
}
