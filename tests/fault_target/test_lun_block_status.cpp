// mpio::LunDevice's block status (IoOp::block_status) against the scripted fault target's thin
// LU: GET LBA STATUS (SBC-4 §5.8) through a real session, short parameter data, and a thin LU
// that refuses the command. tgtd's answers are checked by the integration suite; the fake
// gives the cases tgtd does not (a refusal, a list cut short).
#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "lun_fixture.hpp"

namespace {

using blockdev::Extent;
using fault_target::Script;

constexpr uint32_t kBlockSize = 512;
constexpr uint32_t kHoleZero = Extent::hole | Extent::zero;

Script thin_script() {
  Script s;
  s.blocks = 2048;  // 1 MiB
  s.block_size = kBlockSize;
  s.thin = true;
  return s;
}

struct Answer {
  std::optional<std::error_code> ec;
  std::string detail;
  std::vector<Extent> extents;
};

Answer block_status(fault_target::LunFixture& f, uint64_t lba, uint64_t blocks) {
  Answer a;
  blockdev::IoRequest request;
  request.op = blockdev::IoOp::block_status;
  request.offset = lba * kBlockSize;
  request.length = blocks * kBlockSize;
  request.done = [&](std::error_code ec, const std::string& detail) {
    a.ec = ec;
    a.detail = detail;
  };
  f.device().submit(request);
  REQUIRE(f.run_until([&] { return a.ec.has_value(); }));
  a.extents = request.extents;
  return a;
}

size_t lba_status_commands(fault_target::LunFixture& f) {
  const auto& received = f.target().observed().received;
  return static_cast<size_t>(std::count_if(received.begin(), received.end(), [](const auto& p) {
    return p.opcode == iscsi::Opcode::scsi_command && p.cdb_opcode == 0x9e;
  }));
}

void fill(fault_target::LunFixture& f, uint64_t lba, uint64_t blocks) {
  auto& lun = f.target().lun();
  std::fill_n(lun.begin() + static_cast<ptrdiff_t>(lba * kBlockSize), blocks * kBlockSize,
              std::byte{0x5a});
}

}  // namespace

TEST_CASE("a thin LU's holes and data come from one GET LBA STATUS", "[fault_target][lbp]") {
  fault_target::LunFixture f(thin_script());
  REQUIRE(f.device().info().supports_block_status);
  fill(f, 16, 8);
  fill(f, 100, 4);
  const size_t before = lba_status_commands(f);
  auto a = block_status(f, 8, 200);
  INFO(a.detail);
  REQUIRE(*a.ec == std::error_code{});
  CHECK(a.extents == std::vector<Extent>{{8 * kBlockSize, kHoleZero},
                                         {8 * kBlockSize, 0},
                                         {76 * kBlockSize, kHoleZero},
                                         {4 * kBlockSize, 0},
                                         {104 * kBlockSize, kHoleZero}});
  CHECK(lba_status_commands(f) == before + 1);
}

TEST_CASE("a GET LBA STATUS list shorter than the range answers that much", "[fault_target][lbp]") {
  auto script = thin_script();
  script.lba_status_descriptors = 2;
  fault_target::LunFixture f(script);
  fill(f, 10, 10);
  fill(f, 30, 10);
  auto a = block_status(f, 0, 2048);
  INFO(a.detail);
  REQUIRE(*a.ec == std::error_code{});
  CHECK(a.extents == std::vector<Extent>{{10 * kBlockSize, kHoleZero}, {10 * kBlockSize, 0}});
}

TEST_CASE("a thin LU refusing GET LBA STATUS is all data, and is asked only once",
          "[fault_target][lbp]") {
  auto script = thin_script();
  script.get_lba_status_refused = true;
  fault_target::LunFixture f(script);
  REQUIRE(f.device().info().supports_block_status);
  const size_t before = lba_status_commands(f);
  for (int i = 0; i < 2; ++i) {
    auto a = block_status(f, 0, 64);
    INFO(a.detail);
    REQUIRE(*a.ec == std::error_code{});
    CHECK(a.extents == std::vector<Extent>{{64 * kBlockSize, 0}});
  }
  CHECK(lba_status_commands(f) == before + 1);
}

TEST_CASE("a LU without provisioning answers all data without a command", "[fault_target][lbp]") {
  auto script = thin_script();
  script.thin = false;
  fault_target::LunFixture f(script);
  CHECK_FALSE(f.device().info().supports_block_status);
  const size_t before = lba_status_commands(f);
  auto a = block_status(f, 0, 2048);
  REQUIRE(*a.ec == std::error_code{});
  CHECK(a.extents == std::vector<Extent>{{2048 * kBlockSize, 0}});
  CHECK(lba_status_commands(f) == before);
}
