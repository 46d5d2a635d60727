#include <catch2/catch.hpp>

#include <scsi/report_luns.hpp>

#include "scsi_test_support.hpp"

using scsi_test::for_each_truncation;
using scsi_test::hex;

TEST_CASE("REPORT LUNS data", "[scsi]") {
  // SPC-4 Table 286: LUN LIST LENGTH (3 LUNs = 24), reserved, then 8-byte LUNs: peripheral 0,
  // peripheral 1, flat space 261.
  auto data = hex("00000018 00000000  0000000000000000 0001000000000000 4105000000000000");
  CHECK(scsi::report_luns_total_length(data) == size_t{32});
  auto luns = scsi::parse_report_luns(data);
  REQUIRE(luns);
  REQUIRE(luns->size() == 3);
  CHECK((*luns)[0] == 0);
  CHECK((*luns)[1] == 0x0001000000000000ull);
  CHECK((*luns)[2] == 0x4105000000000000ull);
  CHECK(scsi::decode_lun((*luns)[1]) == uint16_t{1});
  CHECK(scsi::decode_lun((*luns)[2]) == uint16_t{261});

  for_each_truncation(data, [&](auto part, size_t n) {
    CHECK(scsi::parse_report_luns(part).has_value() == (n == data.size()));
  });
}

TEST_CASE("REPORT LUNS: empty list, bad length, allocation too small", "[scsi]") {
  auto empty = scsi::parse_report_luns(hex("00000000 00000000"));
  REQUIRE(empty);
  CHECK(empty->empty());

  CHECK_FALSE(scsi::parse_report_luns(hex("00000007 00000000 00000000000000")));

  // The target had 2 LUNs but we asked for 16 bytes: the header says how much to ask for.
  auto cut = hex("00000010 00000000 0000000000000000");
  CHECK_FALSE(scsi::parse_report_luns(cut));
  CHECK(scsi::report_luns_total_length(cut) == size_t{24});

  // A huge declared length must not overflow or allocate.
  auto huge = hex("ffffffff 00000000");
  CHECK_FALSE(scsi::parse_report_luns(huge));
  CHECK(scsi::report_luns_total_length(huge) == size_t{0xFFFFFFFFull} + 8);
}

TEST_CASE("LUN encoding (SAM-5 single level)", "[scsi]") {
  CHECK(scsi::encode_lun(0) == 0);
  CHECK(scsi::encode_lun(1) == 0x0001000000000000ull);
  CHECK(scsi::encode_lun(255) == 0x00FF000000000000ull);
  CHECK(scsi::encode_lun(256) == 0x4100000000000000ull);
  CHECK(scsi::encode_lun(16383) == 0x7FFF000000000000ull);
  CHECK(scsi::encode_lun(16384) == 0xD200400000000000ull);
  CHECK(scsi::encode_lun(65535) == 0xD200FFFF00000000ull);

  for (uint32_t lun = 0; lun <= 0xFFFF; ++lun) {
    auto back = scsi::decode_lun(scsi::encode_lun(static_cast<uint16_t>(lun)));
    REQUIRE(back);
    REQUIRE(*back == lun);
  }
}

TEST_CASE("LUN decoding refuses what it cannot represent", "[scsi]") {
  CHECK_FALSE(scsi::decode_lun(0x0101000000000000ull));  // peripheral, BUS IDENTIFIER 1
  CHECK_FALSE(scsi::decode_lun(0x0001000100000000ull));  // second level present
  CHECK_FALSE(scsi::decode_lun(0x4001000000000001ull));  // junk in the fourth level
  CHECK_FALSE(scsi::decode_lun(0x8001000000000000ull));  // logical unit addressing
  CHECK_FALSE(scsi::decode_lun(0xE200000100000000ull));  // extended, other length
  CHECK_FALSE(scsi::decode_lun(0xD201000000000000ull));  // extended flat space above 65535
  CHECK_FALSE(scsi::decode_lun(0xD200000100000001ull));
  CHECK(scsi::decode_lun(0x4000000000000000ull) == uint16_t{0});  // flat space 0 is fine
}
