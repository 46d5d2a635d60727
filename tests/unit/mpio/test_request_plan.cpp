#include <catch2/catch.hpp>

#include <common/bytes.hpp>
#include <common/hex.hpp>
#include <mpio/request_plan.hpp>
#include <scsi/error.hpp>
#include <scsi/sense.hpp>
#include <scsi/status.hpp>
#include <string>
#include <string_view>

// Expected CDBs and parameter lists are laid out field by field from the SBC-3 tables.

using blockdev::IoOp;
using blockdev::IoRequest;
using mpio::CommandLimits;
using mpio::CommandPlan;
using mpio::PlannedCommand;
using Data = mpio::PlannedCommand::Data;

namespace {

std::string expect(std::string_view spaced) {
  auto bytes = common::try_from_hex(spaced);
  REQUIRE(bytes.has_value());
  return common::to_hex(*bytes);
}

std::string hex_of(const PlannedCommand& c) {
  return common::to_hex(c.cdb.view());
}

IoRequest request(IoOp op, uint64_t offset, uint64_t length, bool fua = false) {
  IoRequest r;
  r.op = op;
  r.offset = offset;
  r.length = length;
  r.fua = fua;
  return r;
}

CommandLimits limits_512(uint32_t command_bytes) {
  CommandLimits l;
  l.block_size = 512;
  l.command_bytes = command_bytes;
  return l;
}

}  // namespace

// ---------------------------------------------------------------- READ(16) / WRITE(16)

TEST_CASE("a read of an exact multiple of command_bytes is one READ(16) per command_bytes",
          "[mpio][plan]") {
  CommandPlan plan;
  mpio::plan_request(request(IoOp::read, 4096, 256u << 10), limits_512(64u << 10), plan);
  REQUIRE(plan.size() == 4);
  for (size_t i = 0; i < 4; ++i) {
    const auto& c = plan.commands()[i];
    CHECK(c.data == Data::read_into_buffer);
    CHECK(c.buffer_offset == i * (64u << 10));
    CHECK(c.buffer_length == 64u << 10);
    CHECK(c.cdb.opcode() == scsi::opcode::read16);
  }
  // SBC-3 Table 97: 88h, flags, LBA 8 + 128 per piece, TRANSFER LENGTH 128 blocks.
  CHECK(hex_of(plan.commands()[0]) == expect("8800 0000000000000008 00000080 0000"));
  CHECK(hex_of(plan.commands()[3]) == expect("8800 0000000000000188 00000080 0000"));
}

TEST_CASE("a remainder becomes a last, shorter command", "[mpio][plan]") {
  CommandPlan plan;
  mpio::plan_request(request(IoOp::write, 0, (64u << 10) + 1536), limits_512(64u << 10), plan);
  REQUIRE(plan.size() == 2);
  CHECK(plan.commands()[0].buffer_length == 64u << 10);
  CHECK(plan.commands()[1].data == Data::write_from_buffer);
  CHECK(plan.commands()[1].buffer_offset == 64u << 10);
  CHECK(plan.commands()[1].buffer_length == 1536);
  CHECK(hex_of(plan.commands()[1]) == expect("8a00 0000000000000080 00000003 0000"));
}

TEST_CASE("a one-block request is one command of one block", "[mpio][plan]") {
  CommandPlan plan;
  auto limits = limits_512(1u << 20);
  limits.block_size = 4096;
  mpio::plan_request(request(IoOp::write, 0x123456789000ull, 4096, true), limits, plan);
  REQUIRE(plan.size() == 1);
  CHECK(plan.commands()[0].buffer_offset == 0);
  CHECK(plan.commands()[0].buffer_length == 4096);
  // LBA 0x123456789000 / 4096, one block, FUA (byte 1 bit 3).
  CHECK(hex_of(plan.commands()[0]) == expect("8a08 0000000123456789 00000001 0000"));
}

TEST_CASE("FUA is set on every piece of a write and on no read", "[mpio][plan]") {
  CommandPlan plan;
  mpio::plan_request(request(IoOp::write, 0, 5 * 512, true), limits_512(2 * 512), plan);
  REQUIRE(plan.size() == 3);
  for (const auto& c : plan.commands()) CHECK(std::to_integer<int>(c.cdb.bytes[1]) == 0x08);
  mpio::plan_request(request(IoOp::write, 0, 5 * 512, false), limits_512(2 * 512), plan);
  for (const auto& c : plan.commands()) CHECK(std::to_integer<int>(c.cdb.bytes[1]) == 0x00);
  mpio::plan_request(request(IoOp::read, 0, 5 * 512, true), limits_512(2 * 512), plan);
  for (const auto& c : plan.commands()) CHECK(std::to_integer<int>(c.cdb.bytes[1]) == 0x00);
}

TEST_CASE("an empty read or write plans no command", "[mpio][plan]") {
  CommandPlan plan;
  mpio::plan_request(request(IoOp::read, 0, 4096), limits_512(4096), plan);
  REQUIRE(plan.size() == 1);
  mpio::plan_request(request(IoOp::write, 0, 0), limits_512(4096), plan);
  CHECK(plan.size() == 0);
}

TEST_CASE("planning again into the same plan reuses its slots", "[mpio][plan]") {
  CommandPlan plan;
  mpio::plan_request(request(IoOp::read, 0, 8 * 512), limits_512(512), plan);
  REQUIRE(plan.size() == 8);
  const PlannedCommand* storage = plan.commands().data();
  auto zeroes = request(IoOp::write_zeroes, 0, 512);
  mpio::plan_request(zeroes, limits_512(512), plan);
  REQUIRE(plan.size() == 1);
  CHECK(plan.commands()[0].parameter_data.size() == 512);
  mpio::plan_request(request(IoOp::read, 512, 3 * 512), limits_512(512), plan);
  REQUIRE(plan.size() == 3);
  CHECK(plan.commands().data() == storage);
  // Nothing of the earlier WRITE SAME is left in the slot.
  CHECK(plan.commands()[0].data == Data::read_into_buffer);
  CHECK(plan.commands()[0].parameter_data.empty());
  CHECK(plan.commands()[0].parameter_data.capacity() >= 512);  // kept for the next one
  CHECK(hex_of(plan.commands()[0]) == expect("8800 0000000000000001 00000001 0000"));
}

// ---------------------------------------------------------------- SYNCHRONIZE CACHE

TEST_CASE("a flush is SYNCHRONIZE CACHE(16) of the whole medium, (10) once the LU refused (16)",
          "[mpio][plan]") {
  CommandPlan plan;
  auto limits = limits_512(1u << 20);
  mpio::plan_request(request(IoOp::flush, 0, 0), limits, plan);
  REQUIRE(plan.size() == 1);
  CHECK(plan.commands()[0].data == Data::none);
  // SBC-3 Table 121: LBA 0 and NUMBER OF BLOCKS 0: every block (§5.23).
  CHECK(hex_of(plan.commands()[0]) == expect("9100 0000000000000000 00000000 0000"));
  limits.synchronize_cache16 = false;
  mpio::plan_request(request(IoOp::flush, 0, 0), limits, plan);
  REQUIRE(plan.size() == 1);
  CHECK(hex_of(plan.commands()[0]) == expect("3500 00000000 00 0000 00"));
  CHECK(common::to_hex(mpio::synchronize_cache_cdb(limits).view()) ==
        expect("3500 00000000 00 0000 00"));
}

TEST_CASE("only INVALID COMMAND OPERATION CODE makes a flush fall back to (10)", "[mpio][plan]") {
  auto error = [](scsi::SenseKey key, uint8_t asc) {
    scsi::Sense sense;
    sense.response_code = 0x70;
    sense.key = key;
    sense.asc = asc;
    return scsi::make_error(scsi::Status::check_condition, sense);
  };
  CHECK(mpio::synchronize_cache16_unsupported(error(scsi::SenseKey::illegal_request, 0x20)));
  CHECK_FALSE(mpio::synchronize_cache16_unsupported(error(scsi::SenseKey::illegal_request, 0x24)));
  CHECK_FALSE(mpio::synchronize_cache16_unsupported(error(scsi::SenseKey::medium_error, 0x20)));
  CHECK_FALSE(mpio::synchronize_cache16_unsupported(std::make_error_code(std::errc::io_error)));
  CHECK_FALSE(mpio::synchronize_cache16_unsupported({}));
}

// ---------------------------------------------------------------- UNMAP

TEST_CASE(
    "a trim splits into descriptors of MAXIMUM UNMAP LBA COUNT and commands of MAXIMUM "
    "UNMAP BLOCK DESCRIPTOR COUNT",
    "[mpio][plan]") {
  auto limits = limits_512(1u << 20);
  limits.max_unmap_lba_count = 100;
  limits.max_unmap_descriptor_count = 2;
  CommandPlan plan;
  // 450 blocks from LBA 10: [10,100] [110,100] | [210,100] [310,100] | [410,50].
  mpio::plan_request(request(IoOp::trim, 10 * 512, 450 * 512), limits, plan);
  REQUIRE(plan.size() == 3);
  for (const auto& c : plan.commands()) CHECK(c.data == Data::write_parameter_data);
  // SBC-3 Tables 137/138: UNMAP DATA LENGTH, BLOCK DESCRIPTOR DATA LENGTH, 4 reserved, then
  // LBA(8) count(4) reserved(4) per descriptor.
  CHECK(common::to_hex(plan.commands()[0].parameter_data) ==
        expect("0026 0020 00000000 000000000000000a 00000064 00000000 "
               "000000000000006e 00000064 00000000"));
  CHECK(hex_of(plan.commands()[0]) == expect("4200 00000000 00 0028 00"));
  CHECK(common::to_hex(plan.commands()[1].parameter_data) ==
        expect("0026 0020 00000000 00000000000000d2 00000064 00000000 "
               "0000000000000136 00000064 00000000"));
  CHECK(common::to_hex(plan.commands()[2].parameter_data) ==
        expect("0016 0010 00000000 000000000000019a 00000032 00000000"));
  CHECK(hex_of(plan.commands()[2]) == expect("4200 00000000 00 0018 00"));
}

TEST_CASE("a trim puts at most 255 descriptors in one UNMAP", "[mpio][plan]") {
  auto limits = limits_512(1u << 20);
  limits.max_unmap_lba_count = 1;
  limits.max_unmap_descriptor_count = 0xffffffffu;
  CommandPlan plan;
  mpio::plan_request(request(IoOp::trim, 0, 300 * 512), limits, plan);
  REQUIRE(plan.size() == 2);
  CHECK(plan.commands()[0].parameter_data.size() == 8 + 255 * 16);
  CHECK(plan.commands()[1].parameter_data.size() == 8 + 45 * 16);
}

TEST_CASE("a trim of a single range fits one descriptor", "[mpio][plan]") {
  auto limits = limits_512(1u << 20);
  limits.block_size = 4096;
  limits.max_unmap_lba_count = 0x10000;
  limits.max_unmap_descriptor_count = 16;
  CommandPlan plan;
  mpio::plan_request(request(IoOp::trim, 1u << 20, 8u << 20), limits, plan);
  REQUIRE(plan.size() == 1);
  CHECK(common::to_hex(plan.commands()[0].parameter_data) ==
        expect("0016 0010 00000000 0000000000000100 00000800 00000000"));
}

// ---------------------------------------------------------------- WRITE SAME(16)

TEST_CASE("write zeroes is WRITE SAME(16) of one zero block, split at MAXIMUM WRITE SAME LENGTH",
          "[mpio][plan]") {
  auto limits = limits_512(1u << 20);
  limits.max_write_same_length = 1000;
  CommandPlan plan;
  mpio::plan_request(request(IoOp::write_zeroes, 512, 2500 * 512), limits, plan);
  REQUIRE(plan.size() == 3);
  for (const auto& c : plan.commands()) {
    CHECK(c.data == Data::write_parameter_data);
    CHECK(c.parameter_data == std::vector<std::byte>(512, std::byte{0}));
  }
  // SBC-3 Table 160: 93h, UNMAP clear, LBA, NUMBER OF LOGICAL BLOCKS.
  CHECK(hex_of(plan.commands()[0]) == expect("9300 0000000000000001 000003e8 0000"));
  CHECK(hex_of(plan.commands()[1]) == expect("9300 00000000000003e9 000003e8 0000"));
  CHECK(hex_of(plan.commands()[2]) == expect("9300 00000000000007d1 000001f4 0000"));
}

TEST_CASE("write zeroes without a reported limit sends 65535 blocks per command", "[mpio][plan]") {
  auto limits = limits_512(1u << 20);
  CommandPlan plan;
  mpio::plan_request(request(IoOp::write_zeroes, 0, 65536ull * 512), limits, plan);
  REQUIRE(plan.size() == 2);
  CHECK(hex_of(plan.commands()[0]) == expect("9300 0000000000000000 0000ffff 0000"));
  CHECK(hex_of(plan.commands()[1]) == expect("9300 000000000000ffff 00000001 0000"));
}

TEST_CASE("write zeroes sets UNMAP only when the client allows holes and the LU LBPWS",
          "[mpio][plan]") {
  auto limits = limits_512(1u << 20);
  limits.max_write_same_length = 8;
  auto zeroes = request(IoOp::write_zeroes, 0, 8 * 512);
  CommandPlan plan;
  auto unmap_bit = [&] {
    mpio::plan_request(zeroes, limits, plan);
    REQUIRE(plan.size() == 1);
    return std::to_integer<int>(plan.commands()[0].cdb.bytes[1]) == 0x08;
  };
  CHECK_FALSE(unmap_bit());
  zeroes.may_unmap = true;
  CHECK_FALSE(unmap_bit());
  limits.write_zeroes_may_unmap = true;
  CHECK(unmap_bit());
  CHECK(hex_of(plan.commands()[0]) == expect("9308 0000000000000000 00000008 0000"));
  zeroes.may_unmap = false;
  CHECK_FALSE(unmap_bit());
}

// ---------------------------------------------------------------- the LU's mapping

namespace {

mpio::ProbedLu plain_lu() {
  mpio::ProbedLu lu;
  lu.blocks = 1u << 21;
  lu.block_length = 512;
  return lu;
}

scsi::BlockLimits unmap_limits() {
  scsi::BlockLimits l;
  l.max_unmap_lba_count = 0x4000;
  l.max_unmap_descriptor_count = 8;
  return l;
}

scsi::LogicalBlockProvisioning thin(bool lbpu, bool lbpws) {
  scsi::LogicalBlockProvisioning p;
  p.lbpu = lbpu;
  p.lbpws = lbpws;
  p.provisioning_type = 2;
  return p;
}

}  // namespace

TEST_CASE("without a configured size or a table entry a command is one MaxBurstLength",
          "[mpio][lu]") {
  mpio::CommandSizeSources sizes;
  sizes.max_burst_length = 256u << 10;
  auto m = mpio::map_lu(plain_lu(), sizes);
  CHECK(m.limits.command_bytes == 256u << 10);
  CHECK(m.command_bytes_source == "one MaxBurstLength");
  // Clamped to 64 KiB .. 8 MiB.
  sizes.max_burst_length = 16u << 10;
  CHECK(mpio::map_lu(plain_lu(), sizes).limits.command_bytes == 64u << 10);
  sizes.max_burst_length = 16u << 20;
  CHECK(mpio::map_lu(plain_lu(), sizes).limits.command_bytes == 8u << 20);
}

TEST_CASE("tgt's LU gets the built-in table's command size", "[mpio][lu]") {
  mpio::CommandSizeSources sizes;
  sizes.max_burst_length = 256u << 10;
  sizes.quirk = mpio::find_target_quirk("IET", "VIRTUAL-DISK");
  REQUIRE(sizes.quirk);
  auto m = mpio::map_lu(plain_lu(), sizes);
  CHECK(m.limits.command_bytes == sizes.quirk->max_command_bytes);
  CHECK(m.command_bytes_source == "built-in default for tgt");
  // An entry without a size leaves the MaxBurstLength rule.
  sizes.quirk->max_command_bytes = 0;
  CHECK(mpio::map_lu(plain_lu(), sizes).command_bytes_source == "one MaxBurstLength");
}

TEST_CASE("multipath.max_sectors_kb wins over the table and MaxBurstLength", "[mpio][lu]") {
  mpio::CommandSizeSources sizes;
  sizes.max_burst_length = 256u << 10;
  sizes.quirk = mpio::find_target_quirk("IET", "VIRTUAL-DISK");
  sizes.configured_bytes = 32u << 20;  // beyond the MaxBurstLength clamp: taken as it is
  auto m = mpio::map_lu(plain_lu(), sizes);
  CHECK(m.limits.command_bytes == 32u << 20);
  CHECK(m.command_bytes_source == "multipath.max_sectors_kb");
  CHECK(m.info.max_transfer_bytes == 32u << 20);
}

TEST_CASE("a MAXIMUM TRANSFER LENGTH below the cap lowers it; one above changes nothing",
          "[mpio][lu]") {
  mpio::CommandSizeSources sizes;
  sizes.configured_bytes = 1u << 20;
  auto lu = plain_lu();
  lu.block_limits = scsi::BlockLimits{};
  lu.block_limits->max_transfer_length_blocks = 64;  // 32 KiB
  auto m = mpio::map_lu(lu, sizes);
  CHECK(m.limits.command_bytes == 32u << 10);
  CHECK(m.command_bytes_source == "the LU's MAXIMUM TRANSFER LENGTH");
  lu.block_limits->max_transfer_length_blocks = 4096;  // 2 MiB
  m = mpio::map_lu(lu, sizes);
  CHECK(m.limits.command_bytes == 1u << 20);
  CHECK(m.command_bytes_source == "multipath.max_sectors_kb");
  lu.block_limits->max_transfer_length_blocks = 0;  // not reported
  CHECK(mpio::map_lu(lu, sizes).limits.command_bytes == 1u << 20);
}

TEST_CASE("the command size is whole blocks, at least one", "[mpio][lu]") {
  mpio::CommandSizeSources sizes;
  auto lu = plain_lu();
  lu.block_length = 4096;
  sizes.configured_bytes = 10000;
  CHECK(mpio::map_lu(lu, sizes).limits.command_bytes == 8192);
  sizes.configured_bytes = 1000;
  CHECK(mpio::map_lu(lu, sizes).limits.command_bytes == 4096);
  CHECK(mpio::map_lu(lu, sizes).limits.block_size == 4096);
}

TEST_CASE(
    "the bridge accepts 32 MiB requests at least, and is told an optimal size no larger "
    "than a command",
    "[mpio][lu]") {
  mpio::CommandSizeSources sizes;
  sizes.max_burst_length = 256u << 10;
  auto lu = plain_lu();
  CHECK(mpio::map_lu(lu, sizes).info.max_transfer_bytes == 32u << 20);
  CHECK(mpio::map_lu(lu, sizes).info.optimal_transfer_bytes == 0);
  lu.block_limits = scsi::BlockLimits{};
  lu.block_limits->optimal_transfer_length_blocks = 2048;  // 1 MiB
  CHECK(mpio::map_lu(lu, sizes).info.optimal_transfer_bytes == 256u << 10);
  lu.block_limits->optimal_transfer_length_blocks = 128;  // 64 KiB
  CHECK(mpio::map_lu(lu, sizes).info.optimal_transfer_bytes == 64u << 10);
}

TEST_CASE("size, physical block, FUA and write protection come from the probe", "[mpio][lu]") {
  auto lu = plain_lu();
  lu.logical_per_physical_exponent = 3;
  lu.dpofua = false;
  lu.write_protected = true;
  const auto info = mpio::map_lu(lu, {}).info;
  CHECK(info.logical_block_size == 512);
  CHECK(info.physical_block_size == 4096);
  CHECK(info.size_bytes == (1ull << 21) * 512);
  CHECK_FALSE(info.supports_fua);
  CHECK(info.read_only);
  // A silly exponent is held at 2^7 blocks per physical block.
  lu.logical_per_physical_exponent = 15;
  CHECK(mpio::map_lu(lu, {}).info.physical_block_size == 512u << 7);
}

TEST_CASE("trim needs LBPU, LBPME, both UNMAP limits and a writable LU", "[mpio][lu]") {
  auto lu = plain_lu();
  lu.lbpme = true;
  lu.provisioning = thin(true, false);
  lu.block_limits = unmap_limits();
  auto m = mpio::map_lu(lu, {});
  CHECK(m.info.supports_trim);
  CHECK(m.limits.max_unmap_lba_count == 0x4000);
  CHECK(m.limits.max_unmap_descriptor_count == 8);

  auto without = lu;
  without.lbpme = false;
  CHECK_FALSE(mpio::map_lu(without, {}).info.supports_trim);
  without = lu;
  without.provisioning->lbpu = false;
  CHECK_FALSE(mpio::map_lu(without, {}).info.supports_trim);
  without = lu;
  without.provisioning.reset();
  CHECK_FALSE(mpio::map_lu(without, {}).info.supports_trim);
  without = lu;
  without.block_limits.reset();
  CHECK_FALSE(mpio::map_lu(without, {}).info.supports_trim);
  without = lu;
  without.block_limits->max_unmap_lba_count = 0;
  CHECK_FALSE(mpio::map_lu(without, {}).info.supports_trim);
  without = lu;
  without.block_limits->max_unmap_descriptor_count = 0;
  CHECK_FALSE(mpio::map_lu(without, {}).info.supports_trim);
  without = lu;
  without.write_protected = true;
  CHECK_FALSE(mpio::map_lu(without, {}).info.supports_trim);
}

TEST_CASE("write zeroes needs a WRITE SAME limit or LBPWS on a thin LU; UNMAP needs LBPWS",
          "[mpio][lu]") {
  auto lu = plain_lu();
  auto m = mpio::map_lu(lu, {});
  CHECK_FALSE(m.info.supports_write_zeroes);
  CHECK_FALSE(m.info.write_zeroes_may_unmap);

  lu.block_limits = scsi::BlockLimits{};
  lu.block_limits->max_write_same_length = 0x10000;
  m = mpio::map_lu(lu, {});
  CHECK(m.info.supports_write_zeroes);
  CHECK_FALSE(m.info.write_zeroes_may_unmap);
  CHECK_FALSE(m.limits.write_zeroes_may_unmap);
  CHECK(m.limits.max_write_same_length == 0x10000);

  lu.block_limits.reset();
  lu.provisioning = thin(false, true);
  CHECK_FALSE(mpio::map_lu(lu, {}).info.supports_write_zeroes);  // LBPWS without LBPME
  lu.lbpme = true;
  m = mpio::map_lu(lu, {});
  CHECK(m.info.supports_write_zeroes);
  CHECK(m.info.write_zeroes_may_unmap);
  CHECK(m.limits.write_zeroes_may_unmap);
  CHECK_FALSE(m.info.supports_trim);  // LBPWS is not LBPU

  lu.write_protected = true;
  m = mpio::map_lu(lu, {});
  CHECK_FALSE(m.info.supports_write_zeroes);
}

TEST_CASE("fast zero only where WRITE SAME with UNMAP deallocates blocks that read zeros",
          "[mpio][lu]") {
  auto lu = plain_lu();
  lu.block_limits = scsi::BlockLimits{};
  lu.block_limits->max_write_same_length = 0x10000;
  lu.lbprz = true;
  CHECK_FALSE(mpio::map_lu(lu, {}).info.fast_zero);  // thick: WRITE SAME writes every block
  lu.provisioning = thin(false, true);
  lu.lbpme = true;
  lu.lbprz = false;
  CHECK_FALSE(mpio::map_lu(lu, {}).info.fast_zero);  // unmapped blocks may read non-zero
  lu.provisioning->lbprz = true;
  CHECK(mpio::map_lu(lu, {}).info.fast_zero);
  lu.provisioning->lbprz = false;
  lu.lbprz = true;  // READ CAPACITY(16) says it as well
  CHECK(mpio::map_lu(lu, {}).info.fast_zero);
  lu.provisioning = thin(false, false);  // no LBPWS: no UNMAP bit on WRITE SAME
  CHECK_FALSE(mpio::map_lu(lu, {}).info.fast_zero);
  lu.provisioning = thin(false, true);
  lu.write_protected = true;
  CHECK_FALSE(mpio::map_lu(lu, {}).info.fast_zero);
}

// ---------------------------------------------------------------- block status

TEST_CASE("block status needs LBPME and VPD 0xB2; LBPRZ from either says holes read zeros",
          "[mpio][lu]") {
  auto lu = plain_lu();
  auto m = mpio::map_lu(lu, {});
  CHECK_FALSE(m.info.supports_block_status);
  CHECK_FALSE(m.limits.block_status);

  lu.lbpme = true;
  CHECK_FALSE(mpio::map_lu(lu, {}).info.supports_block_status);  // no VPD 0xB2
  lu.lbpme = false;
  lu.provisioning = thin(true, true);
  CHECK_FALSE(mpio::map_lu(lu, {}).info.supports_block_status);  // VPD 0xB2, not thin
  lu.lbpme = true;
  m = mpio::map_lu(lu, {});
  CHECK(m.info.supports_block_status);
  CHECK(m.limits.block_status);
  CHECK_FALSE(m.limits.unmapped_reads_zero);

  lu.lbprz = true;
  CHECK(mpio::map_lu(lu, {}).limits.unmapped_reads_zero);
  lu.lbprz = false;
  lu.provisioning->lbprz = true;
  CHECK(mpio::map_lu(lu, {}).limits.unmapped_reads_zero);
  // Read-only thin LUs still say where their data is.
  lu.write_protected = true;
  CHECK(mpio::map_lu(lu, {}).info.supports_block_status);
}

namespace {

CommandLimits thin_limits(bool lbprz) {
  CommandLimits l = limits_512(1u << 20);
  l.block_status = true;
  l.unmapped_reads_zero = lbprz;
  return l;
}

std::vector<std::byte> lba_status(std::string_view descriptors_hex) {
  auto descriptors = common::from_hex(descriptors_hex);
  std::vector<std::byte> out(8 + descriptors.size());
  common::store_be32(out, 0, static_cast<uint32_t>(descriptors.size() + 4));
  std::copy(descriptors.begin(), descriptors.end(), out.begin() + 8);
  return out;
}

using blockdev::Extent;
constexpr uint32_t kHoleZero = Extent::hole | Extent::zero;

}  // namespace

TEST_CASE("block status is one GET LBA STATUS of a bounded allocation length", "[mpio][plan]") {
  CommandPlan plan;
  mpio::plan_request(request(IoOp::block_status, 0x2000, 1u << 30), thin_limits(true), plan);
  REQUIRE(plan.size() == 1);
  const auto& c = plan.commands()[0];
  CHECK(hex_of(c) == expect("9e12 0000000000000010 00010008 0000"));
  CHECK(c.data == Data::read_parameter_data);
  CHECK(c.buffer_length == mpio::kLbaStatusAllocationLength);
  CHECK(mpio::kLbaStatusAllocationLength == 65544);

  // A LU without block status: no command.
  mpio::plan_request(request(IoOp::block_status, 0, 4096), limits_512(1u << 20), plan);
  CHECK(plan.size() == 0);
}

TEST_CASE("block status extents from GET LBA STATUS descriptors", "[mpio][plan]") {
  std::vector<Extent> out;
  std::string detail;
  // LBA 0x10..0x20 mapped, 0x20..0x40 deallocated, 0x40..0x48 anchored, 0x48..0x1000 mapped.
  const auto data = lba_status(
      "0000000000000010 00000010 00 000000 0000000000000020 00000020 01 000000"
      "0000000000000040 00000008 02 000000 0000000000000048 00000fb8 00 000000");
  SECTION("deallocated and anchored are holes that read zeros under LBPRZ, clamped") {
    const auto r = request(IoOp::block_status, 0x18 * 512, 0x38 * 512);
    REQUIRE_FALSE(mpio::block_status_extents(data, r, thin_limits(true), out, detail));
    CHECK(out == std::vector<Extent>{{8 * 512, 0}, {0x28 * 512, kHoleZero}, {8 * 512, 0}});
  }
  SECTION("without LBPRZ they are holes only") {
    const auto r = request(IoOp::block_status, 0x10 * 512, 0x40 * 512);
    REQUIRE_FALSE(mpio::block_status_extents(data, r, thin_limits(false), out, detail));
    CHECK(out == std::vector<Extent>{{0x10 * 512, 0}, {0x28 * 512, Extent::hole}, {8 * 512, 0}});
  }
  SECTION("a reply covering less than asked answers that much") {
    const auto r = request(IoOp::block_status, 0x10 * 512, 0x10000 * 512);
    REQUIRE_FALSE(mpio::block_status_extents(data, r, thin_limits(true), out, detail));
    CHECK(out == std::vector<Extent>{{0x10 * 512, 0}, {0x28 * 512, kHoleZero}, {0xfb8 * 512, 0}});
  }
  SECTION("the answer stops at a gap; unknown states are data") {
    const auto gapped =
        lba_status("0000000000000010 00000010 0f 000000 0000000000000030 00000020 01 000000");
    const auto r = request(IoOp::block_status, 0x10 * 512, 0x40 * 512);
    REQUIRE_FALSE(mpio::block_status_extents(gapped, r, thin_limits(true), out, detail));
    CHECK(out == std::vector<Extent>{{0x10 * 512, 0}});
  }
  SECTION("malformed data is a protocol error with its reason") {
    const auto r = request(IoOp::block_status, 0, 512);  // LBA 0 is in no descriptor
    const auto ec = mpio::block_status_extents(data, r, thin_limits(true), out, detail);
    CHECK(ec == std::errc::protocol_error);
    CHECK_FALSE(detail.empty());
  }
  SECTION("a LU without block status is all data, whatever the data") {
    const auto r = request(IoOp::block_status, 4096, 1u << 20);
    REQUIRE_FALSE(mpio::block_status_extents({}, r, limits_512(1u << 20), out, detail));
    CHECK(out == std::vector<Extent>{{1u << 20, 0}});
  }
}

TEST_CASE("cache is PRE-FETCH(16) until the LU refuses it as an unknown command", "[mpio][plan]") {
  CommandPlan plan;
  auto limits = limits_512(1u << 20);
  mpio::plan_request(request(IoOp::cache, 4096, 1u << 20), limits, plan);
  REQUIRE(plan.size() == 1);
  CHECK(hex_of(plan.commands()[0]) == expect("9002 0000000000000008 00000800 0000"));
  limits.pre_fetch = false;
  mpio::plan_request(request(IoOp::cache, 4096, 1u << 20), limits, plan);
  CHECK(plan.size() == 0);

  auto error = [](scsi::SenseKey key, uint8_t asc) {
    scsi::Sense sense;
    sense.response_code = 0x70;
    sense.key = key;
    sense.asc = asc;
    return scsi::make_error(scsi::Status::check_condition, sense);
  };
  CHECK(mpio::pre_fetch_unsupported(error(scsi::SenseKey::illegal_request, 0x20)));
  CHECK_FALSE(mpio::pre_fetch_unsupported(error(scsi::SenseKey::illegal_request, 0x21)));
  CHECK_FALSE(mpio::pre_fetch_unsupported(error(scsi::SenseKey::medium_error, 0x20)));
  CHECK_FALSE(mpio::pre_fetch_unsupported(std::make_error_code(std::errc::io_error)));
  CHECK_FALSE(mpio::pre_fetch_unsupported({}));
  CHECK(mpio::map_lu(plain_lu(), {}).info.supports_cache);
}

TEST_CASE("GET LBA STATUS refused as an unknown command or field means no block status",
          "[mpio][plan]") {
  auto error = [](scsi::SenseKey key, uint8_t asc) {
    scsi::Sense sense;
    sense.response_code = 0x70;
    sense.key = key;
    sense.asc = asc;
    return scsi::make_error(scsi::Status::check_condition, sense);
  };
  CHECK(mpio::get_lba_status_unsupported(error(scsi::SenseKey::illegal_request, 0x20)));
  CHECK(mpio::get_lba_status_unsupported(error(scsi::SenseKey::illegal_request, 0x24)));
  CHECK_FALSE(mpio::get_lba_status_unsupported(error(scsi::SenseKey::illegal_request, 0x21)));
  CHECK_FALSE(mpio::get_lba_status_unsupported(error(scsi::SenseKey::medium_error, 0x20)));
  CHECK_FALSE(mpio::get_lba_status_unsupported(std::make_error_code(std::errc::io_error)));
  CHECK_FALSE(mpio::get_lba_status_unsupported({}));
}
