#include <catch2/catch.hpp>

#include <scsi/capacity.hpp>
#include <scsi/mode_sense.hpp>

#include "scsi_test_support.hpp"

using scsi_test::for_each_truncation;
using scsi_test::hex;

TEST_CASE("READ CAPACITY(10) data", "[scsi]") {
  // SBC-3 Table 64: RETURNED LOGICAL BLOCK ADDRESS, LOGICAL BLOCK LENGTH IN BYTES.
  auto data = hex("001fffff 00000200");
  auto rc = scsi::parse_read_capacity10(data);
  REQUIRE(rc);
  CHECK(rc->last_lba == 0x1FFFFF);
  CHECK(rc->block_length == 512);

  rc = scsi::parse_read_capacity10(hex("ffffffff 00001000"));
  REQUIRE(rc);
  CHECK(rc->last_lba == 0xFFFFFFFF);  // "use READ CAPACITY(16)"

  for_each_truncation(data, [&](auto part, size_t n) {
    CHECK(scsi::parse_read_capacity10(part).has_value() == (n == 8));
  });
}

TEST_CASE("READ CAPACITY(16) data", "[scsi]") {
  // SBC-3 Table 66: LBA (8), block length (4), P_TYPE|PROT_EN, P_I_EXPONENT|LBPPBE,
  // LBPME|LBPRZ|LOWEST ALIGNED LBA (14 bits), 16 reserved bytes.
  auto data = hex("000000003fffffff 00001000 00 03 c007 00000000000000000000000000000000");
  REQUIRE(data.size() == 32);
  auto rc = scsi::parse_read_capacity16(data);
  REQUIRE(rc);
  CHECK(rc->last_lba == 0x3FFFFFFF);
  CHECK(rc->block_length == 4096);
  CHECK(rc->logical_per_physical_exponent == 3);
  CHECK(rc->lbpme);
  CHECK(rc->lbprz);
  CHECK(rc->lowest_aligned_lba == 7);
  CHECK_FALSE(rc->prot_en);

  // Type 2 protection, LBPME without LBPRZ, the largest lowest aligned LBA.
  rc = scsi::parse_read_capacity16(hex("ffffffffffffffff 00000200 05 40 bfff"));
  REQUIRE(rc);
  CHECK(rc->last_lba == 0xFFFFFFFFFFFFFFFFull);
  CHECK(rc->prot_en);
  CHECK(rc->p_type == 2);
  CHECK(rc->logical_per_physical_exponent == 0);
  CHECK(rc->lbpme);
  CHECK_FALSE(rc->lbprz);
  CHECK(rc->lowest_aligned_lba == 0x3FFF);

  for_each_truncation(data, [&](auto part, size_t n) {
    auto r = scsi::parse_read_capacity16(part);
    CHECK(r.has_value() == (n >= 16));
    if (r) CHECK(r->block_length == 4096);
  });
}

TEST_CASE("MODE SENSE(10) header", "[scsi]") {
  // SPC-4 Table 454: MODE DATA LENGTH, MEDIUM TYPE, DEVICE-SPECIFIC PARAMETER (WP bit 7,
  // DPOFUA bit 4), LONGLBA, reserved, BLOCK DESCRIPTOR LENGTH.
  auto data = hex("0026 00 80 00 00 0000  08 12 14 00 ff ff 00 00 ff ff 00 00 00 00 00 00 00 00");
  auto h = scsi::parse_mode_sense10_header(data);
  REQUIRE(h);
  CHECK(h->mode_data_length == 0x26);
  CHECK(h->write_protected);
  CHECK_FALSE(h->dpofua);
  CHECK(h->block_descriptor_length == 0);

  h = scsi::parse_mode_sense10_header(hex("000e 00 10 01 00 0010"));
  REQUIRE(h);
  CHECK_FALSE(h->write_protected);
  CHECK(h->dpofua);
  CHECK(h->longlba);
  CHECK(h->block_descriptor_length == 16);

  for_each_truncation(data, [&](auto part, size_t n) {
    auto r = scsi::parse_mode_sense10_header(part);
    CHECK(r.has_value() == (n >= 8));
    if (r) CHECK(r->write_protected);
  });
}
