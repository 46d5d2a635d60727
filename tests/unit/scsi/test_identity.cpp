// The LU identity rule (scsi/identity.hpp) from VPD pages as targets send them.
#include <catch2/catch.hpp>

#include <scsi/identity.hpp>
#include <scsi/inquiry.hpp>

#include "scsi_test_support.hpp"

using scsi_test::hex;

namespace {

// clang-format off
// VPD 0x83 with an NAA IEEE Registered designator of the LU (association 0).
const char* const naa_page = "00 83 00 0c  01 03 00 08  50 01 40 50 00 00 00 01";
// VPD 0x83 with only a relative target port designator (association 1): nothing of the LU.
const char* const port_only_page = "00 83 00 08  51 94 00 04  00 00 00 01";
// VPD 0x83 with no designator at all.
const char* const empty_page = "00 83 00 00";
// VPD 0x80 "SN-0001", as sent bare, right-aligned with leading spaces, and padded with NULs.
const char* const serial_page = "00 80 00 07  53 4e 2d 30 30 30 31";
const char* const right_aligned_serial_page = "00 80 00 0a  20 20 20 53 4e 2d 30 30 30 31";
const char* const nul_padded_serial_page = "00 80 00 09  53 4e 2d 30 30 30 31 00 00";
// VPD 0x80 of sixteen spaces: a blank serial number.
const char* const blank_serial_page = "00 80 00 10  20202020 20202020 20202020 20202020";
// VPD 0x00 listing 0x00, 0x80 and 0x83; and one listing 0x00 and 0xb0 only.
const char* const pages_80_83 = "00 00 00 03  00 80 83";
const char* const pages_b0 = "00 00 00 02  00 b0";
// clang-format on

std::optional<std::vector<scsi::Designator>> designators(const char* page) {
  auto parsed = scsi::parse_device_identification(hex(page));
  REQUIRE(parsed);
  return parsed;
}

std::optional<std::string> serial(const char* page) {
  auto parsed = scsi::parse_unit_serial_number(hex(page));
  REQUIRE(parsed);
  return parsed;
}

std::optional<std::vector<uint8_t>> supported(const char* page) {
  auto parsed = scsi::parse_supported_vpd_pages(hex(page));
  REQUIRE(parsed);
  return parsed;
}

}  // namespace

TEST_CASE("a LU designator in VPD 0x83 is the identity, whatever the serial says", "[scsi]") {
  CHECK(scsi::lu_identity({.designators = designators(naa_page)}) == "35001405000000001");
  CHECK(scsi::lu_identity({.designators = designators(naa_page), .serial = serial(serial_page)}) ==
        "35001405000000001");
}

TEST_CASE("without a LU designator the serial number, prefixed S, is the identity", "[scsi]") {
  SECTION("VPD 0x83 holds only a target port designator") {
    CHECK(scsi::lu_identity({.designators = designators(port_only_page),
                             .serial = serial(serial_page)}) == "SSN-0001");
  }
  SECTION("VPD 0x83 holds no designator") {
    CHECK(scsi::lu_identity({.designators = designators(empty_page),
                             .serial = serial(serial_page)}) == "SSN-0001");
  }
  SECTION("VPD 0x83 is not supported, or its INQUIRY was answered with an error") {
    CHECK(scsi::lu_identity({.designators = std::nullopt, .serial = serial(serial_page)}) ==
          "SSN-0001");
  }
}

TEST_CASE("a serial padded with spaces or NULs gives the identity of the bare serial", "[scsi]") {
  CHECK(scsi::lu_identity({.serial = serial(right_aligned_serial_page)}) == "SSN-0001");
  CHECK(scsi::lu_identity({.serial = serial(nul_padded_serial_page)}) == "SSN-0001");
  // Blanks around the text are dropped even when the serial did not come through the parser.
  CHECK(scsi::lu_identity({.serial = std::string("  SN-0001 \0", 11)}) == "SSN-0001");
  // Blanks inside it are part of the serial number.
  CHECK(scsi::lu_identity({.serial = std::string("SN 0001")}) == "SSN 0001");
}

TEST_CASE("a blank serial and no LU designator give no identity, not \"S\"", "[scsi]") {
  CHECK(scsi::lu_identity(
            {.designators = designators(port_only_page), .serial = serial(blank_serial_page)})
            .empty());
  CHECK(scsi::lu_identity({.designators = std::nullopt, .serial = serial(blank_serial_page)})
            .empty());
  CHECK(scsi::lu_identity({.serial = std::string()}).empty());
}

TEST_CASE("a LU that gives neither VPD 0x83 nor VPD 0x80 has no identity", "[scsi]") {
  CHECK(scsi::lu_identity({}).empty());
  CHECK(scsi::lu_identity({.supported = supported(pages_b0)}).empty());
}

TEST_CASE("an identity page is asked for when VPD 0x00 lists it or gives no list", "[scsi]") {
  const auto listed = supported(pages_80_83);
  CHECK(scsi::identity_page_wanted(listed, scsi::vpd::device_identification));
  CHECK(scsi::identity_page_wanted(listed, scsi::vpd::unit_serial_number));
  const auto unlisted = supported(pages_b0);
  CHECK_FALSE(scsi::identity_page_wanted(unlisted, scsi::vpd::device_identification));
  CHECK_FALSE(scsi::identity_page_wanted(unlisted, scsi::vpd::unit_serial_number));
  // VPD 0x00 rejected or malformed: nothing says the pages are missing, so they are asked.
  CHECK(scsi::identity_page_wanted(std::nullopt, scsi::vpd::device_identification));
  CHECK(scsi::identity_page_wanted(std::nullopt, scsi::vpd::unit_serial_number));
}
