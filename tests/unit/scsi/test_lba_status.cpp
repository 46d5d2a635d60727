// GET LBA STATUS parameter data (SBC-4 §5.8.2).
#include <catch2/catch.hpp>

#include <scsi/lba_status.hpp>

#include "scsi_test_support.hpp"

using scsi::LbaStatusDescriptor;
using scsi_test::for_each_truncation;
using scsi_test::hex;

namespace {

// Header (PARAMETER DATA LENGTH, reserved) and three descriptors from LBA 0x100: 0x10 mapped,
// 0x20 deallocated, 0x8 anchored.
const char* const kThree =
    "00000034 00000000"
    "0000000000000100 00000010 00 000000"
    "0000000000000110 00000020 01 000000"
    "0000000000000130 00000008 f2 000000";  // high nibble of byte 12 is not the status

struct Parsed {
  bool ok = false;
  std::vector<LbaStatusDescriptor> descriptors;
  std::string error;
};

Parsed parse(std::span<const std::byte> data, uint64_t lba = 0x100, uint32_t allocation = 4096) {
  Parsed p;
  p.ok = scsi::parse_lba_status(data, lba, allocation, p.descriptors, p.error);
  if (p.ok) CHECK(p.error.empty());
  if (!p.ok) CHECK_FALSE(p.error.empty());
  return p;
}

}  // namespace

TEST_CASE("GET LBA STATUS descriptors decode in order", "[scsi]") {
  const auto p = parse(hex(kThree));
  REQUIRE(p.ok);
  CHECK(p.descriptors ==
        std::vector<LbaStatusDescriptor>{{0x100, 0x10, 0}, {0x110, 0x20, 1}, {0x130, 0x8, 2}});
}

TEST_CASE("GET LBA STATUS: the first descriptor contains the starting LBA", "[scsi]") {
  CHECK(parse(hex(kThree), 0x100).ok);
  CHECK(parse(hex(kThree), 0x10f).ok);  // a descriptor may begin below the starting LBA
  CHECK_FALSE(parse(hex(kThree), 0x110).ok);
  CHECK_FALSE(parse(hex(kThree), 0xff).ok);
}

TEST_CASE("GET LBA STATUS data cut by the allocation length keeps whole descriptors", "[scsi]") {
  const auto data = hex(kThree);
  // 8 + 16 + 10: the allocation length stopped it inside the second descriptor.
  const std::span<const std::byte> cut(data.data(), 34);
  const auto p = parse(cut, 0x100, 34);
  REQUIRE(p.ok);
  CHECK(p.descriptors == std::vector<LbaStatusDescriptor>{{0x100, 0x10, 0}});
  // Less data than declared without the allocation length to explain it is malformed.
  CHECK_FALSE(parse(cut, 0x100, 4096).ok);
  // An allocation length without room for one descriptor gives nothing usable.
  CHECK_FALSE(parse(std::span(data.data(), 20), 0x100, 20).ok);
  // More data than the allocation length is a target bug.
  CHECK_FALSE(parse(data, 0x100, 40).ok);
}

TEST_CASE("GET LBA STATUS every truncation is refused unless the allocation explains it",
          "[scsi]") {
  const auto data = hex(kThree);
  for_each_truncation(data, [&](auto part, size_t n) {
    std::vector<LbaStatusDescriptor> out;
    std::string error;
    CHECK(scsi::parse_lba_status(part, 0x100, 4096, out, error) == (n == data.size()));
    const bool whole = n >= 24;
    CHECK(scsi::parse_lba_status(part, 0x100, static_cast<uint32_t>(n), out, error) == whole);
  });
}

TEST_CASE("GET LBA STATUS malformed lengths and descriptors are refused", "[scsi]") {
  // PARAMETER DATA LENGTH not 4 + 16n, or no descriptor at all.
  CHECK_FALSE(parse(hex("00000004 00000000")).ok);
  CHECK_FALSE(parse(hex("00000015 00000000 0000000000000100 00000010 00 000000 00")).ok);
  // Data longer than declared.
  CHECK_FALSE(parse(hex("00000014 00000000 0000000000000100 00000010 00 000000"
                        "0000000000000110 00000010 00 000000"))
                  .ok);
  // A descriptor of no blocks.
  CHECK_FALSE(parse(hex("00000014 00000000 0000000000000100 00000000 00 000000")).ok);
  // Overlapping or out of order.
  CHECK_FALSE(parse(hex("00000024 00000000 0000000000000100 00000010 00 000000"
                        "000000000000010f 00000010 01 000000"))
                  .ok);
  // Past 2^64.
  CHECK_FALSE(parse(hex("00000024 00000000 0000000000000100 00000010 00 000000"
                        "fffffffffffffff0 00000020 01 000000"))
                  .ok);
  // A gap is not malformed (the caller decides what to do with it).
  const auto gap =
      parse(hex("00000024 00000000 0000000000000100 00000010 00 000000"
                "0000000000000200 00000010 01 000000"));
  REQUIRE(gap.ok);
  CHECK(gap.descriptors.size() == 2);
}
