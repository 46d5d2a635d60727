#include <catch2/catch.hpp>

#include <common/bytes.hpp>
#include <common/hex.hpp>
#include <scsi/inquiry.hpp>

#include "scsi_test_support.hpp"

using scsi_test::for_each_truncation;
using scsi_test::hex;

namespace {

// tgt-like standard INQUIRY data (SPC-4 Table 142): direct-access LU, VERSION 05h (SPC-3),
// response data format 2 with HISUP, ADDITIONAL LENGTH 3Bh (64 bytes), MULTIP, CMDQUE,
// "IET     " / "VIRTUAL-DISK    " / "0001", then vendor-specific and version descriptors.
// clang-format off
const char* const tgt_inquiry =
    "00 00 05 12 3b 00 10 02"
    "49 45 54 20 20 20 20 20"                          // IET
    "56 49 52 54 55 41 4c 2d 44 49 53 4b 20 20 20 20"  // VIRTUAL-DISK
    "30 30 30 31"                                      // 0001
    "00000000000000000000000000000000 0000 0000"       // vendor specific, reserved
    "0320 0960 0300 0000";                             // SAM-3, iSCSI, SPC-3, -

// VPD 0x83: T10 vendor ID (ASCII, LU), NAA IEEE Registered Extended (binary, LU), relative
// target port (iSCSI, PIV, target port), target port group (iSCSI, PIV, target port), SCSI name
// string of the target device (UTF-8, PIV).
const char* const device_identification =
    "00 83 00 46"
    "02 01 00 0e  49 45 54 20 20 20 20 20 62 65 61 66 31 31"
    "01 03 00 10  60 01 40 5a bc de f0 12 34 56 78 9a bc de f0 12"
    "51 94 00 04  00 00 00 01"
    "51 95 00 04  00 00 00 01"
    "53 a8 00 0c  69 71 6e 2e 32 30 32 34 2e 61 00 00";
// clang-format on

scsi::Designator designator(uint8_t type, uint8_t association, std::vector<std::byte> value,
                            uint8_t code_set = 1) {
  scsi::Designator d;
  d.type = type;
  d.association = association;
  d.code_set = code_set;
  d.value = std::move(value);
  return d;
}

std::vector<std::byte> text(std::string_view s) {
  auto b = common::as_bytes(s);
  return {b.begin(), b.end()};
}

}  // namespace

TEST_CASE("standard INQUIRY from tgt", "[scsi]") {
  auto data = hex(tgt_inquiry);
  REQUIRE(data.size() == 64);
  auto inq = scsi::parse_standard_inquiry(data);
  REQUIRE(inq);
  CHECK(inq->peripheral_qualifier == 0);
  CHECK(inq->device_type == 0x00);
  CHECK(inq->version == 0x05);
  CHECK(inq->tpgs == 0);
  CHECK(inq->cmdque);
  CHECK(inq->vendor == "IET");
  CHECK(inq->product == "VIRTUAL-DISK");
  CHECK(inq->revision == "0001");
}

TEST_CASE("standard INQUIRY: qualifier, type and TPGS bits", "[scsi]") {
  // LIO-like: PQ 0, storage array controller 0Ch, TPGS 11b (implicit and explicit ALUA).
  auto inq =
      scsi::parse_standard_inquiry(hex("0c 00 06 02 1f 30 00 00  4c 49 4f 2d 4f 52 47 20   54 43 "
                                       "4d 55 20 64 65 76 69 63 65 20 20 20 20 20  34 2e 30 00"));
  REQUIRE(inq);
  CHECK(inq->device_type == 0x0C);
  CHECK(inq->tpgs == 3);
  CHECK_FALSE(inq->cmdque);
  CHECK(inq->vendor == "LIO-ORG");
  CHECK(inq->product == "TCMU device");
  CHECK(inq->revision == "4.0");

  // PQ 011b, type 1Fh: no logical unit at this LUN.
  inq = scsi::parse_standard_inquiry(hex("7f" + std::string(70, '0')));
  REQUIRE(inq);
  CHECK(inq->peripheral_qualifier == 3);
  CHECK(inq->device_type == 0x1F);
  CHECK(inq->vendor.empty());
}

TEST_CASE("standard INQUIRY at every truncation", "[scsi]") {
  for_each_truncation(hex(tgt_inquiry), [](auto part, size_t n) {
    auto inq = scsi::parse_standard_inquiry(part);
    if (n < 36) {
      CHECK_FALSE(inq);
    } else {
      REQUIRE(inq);
      CHECK(inq->vendor == "IET");
      CHECK(inq->revision == "0001");
    }
  });
}

TEST_CASE("VPD supported pages", "[scsi]") {
  auto data = hex("00 00 00 06  00 80 83 86 b0 b2");
  CHECK(scsi::vpd_page_total_length(data) == size_t{10});
  auto pages = scsi::parse_supported_vpd_pages(data);
  REQUIRE(pages);
  CHECK(*pages == std::vector<uint8_t>{0x00, 0x80, 0x83, 0x86, 0xB0, 0xB2});

  // Another page's data is refused.
  CHECK_FALSE(scsi::parse_supported_vpd_pages(hex("00 80 00 02 41 42")));

  for_each_truncation(data, [](auto part, size_t n) {
    auto p = scsi::parse_supported_vpd_pages(part);
    CHECK(p.has_value() == (n == 10));
    CHECK(scsi::vpd_page_total_length(part).has_value() == (n >= 4));
  });
}

TEST_CASE("VPD unit serial number", "[scsi]") {
  auto data = hex("00 80 00 10  62 65 61 66 31 31 20 20 20 20 20 20 20 20 20 20");
  auto serial = scsi::parse_unit_serial_number(data);
  REQUIRE(serial);
  CHECK(*serial == "beaf11");

  // Empty serial number: valid page, empty string.
  auto empty = scsi::parse_unit_serial_number(hex("00 80 00 00"));
  REQUIRE(empty);
  CHECK(empty->empty());

  for_each_truncation(data, [&](auto part, size_t n) {
    CHECK(scsi::parse_unit_serial_number(part).has_value() == (n == data.size()));
  });
}

TEST_CASE("VPD device identification", "[scsi]") {
  auto data = hex(device_identification);
  REQUIRE(data.size() == 4 + 0x46);
  auto ids = scsi::parse_device_identification(data);
  REQUIRE(ids);
  REQUIRE(ids->size() == 5);

  const auto& t10 = (*ids)[0];
  CHECK(t10.type == scsi::designator_type::t10_vendor_id);
  CHECK(t10.code_set == 2);
  CHECK(t10.association == 0);
  CHECK_FALSE(t10.piv);
  CHECK(common::as_chars(t10.value) == "IET     beaf11");

  const auto& naa = (*ids)[1];
  CHECK(naa.type == scsi::designator_type::naa);
  CHECK(naa.code_set == 1);
  CHECK(common::to_hex(naa.value) == "6001405abcdef0123456789abcdef012");

  const auto& port = (*ids)[2];
  CHECK(port.type == scsi::designator_type::relative_target_port);
  CHECK(port.association == 1);
  CHECK(port.piv);
  CHECK(port.protocol_id == 5);
  CHECK(common::to_hex(port.value) == "00000001");

  CHECK((*ids)[3].type == scsi::designator_type::target_port_group);
  const auto& name = (*ids)[4];
  CHECK(name.type == scsi::designator_type::scsi_name_string);
  CHECK(name.association == 2);
  CHECK(name.code_set == 3);

  CHECK(scsi::wwid_from_designators(*ids) == "36001405abcdef0123456789abcdef012");
}

TEST_CASE("VPD device identification at every truncation", "[scsi]") {
  auto data = hex(device_identification);
  for_each_truncation(data, [&](auto part, size_t n) {
    CHECK(scsi::parse_device_identification(part).has_value() == (n == data.size()));
  });
}

TEST_CASE("VPD device identification: descriptor running past the page", "[scsi]") {
  // Page length 8 but the descriptor claims 16 bytes of designator.
  CHECK_FALSE(scsi::parse_device_identification(hex("00 83 00 08  01 03 00 10 60 01 40 5a")));
  // Page length 2: not even a descriptor header.
  CHECK_FALSE(scsi::parse_device_identification(hex("00 83 00 02  01 03")));
  // An empty page is valid and names nothing.
  auto none = scsi::parse_device_identification(hex("00 83 00 00"));
  REQUIRE(none);
  CHECK(none->empty());
  CHECK(scsi::wwid_from_designators(*none).empty());
}

TEST_CASE("WWID choice follows multipath-tools", "[scsi]") {
  using namespace scsi::designator_type;
  const auto naa6 = hex("6001405abcdef0123456789abcdef012");
  const auto naa5 = hex("5000c50012345678");
  const auto eui = hex("0123456789abcdef");

  SECTION("NAA 6 beats NAA 5 whatever the order") {
    CHECK(scsi::wwid_from_designators({designator(naa, 0, naa5), designator(naa, 0, naa6)}) ==
          "36001405abcdef0123456789abcdef012");
    CHECK(scsi::wwid_from_designators({designator(naa, 0, naa5)}) == "35000c50012345678");
  }
  SECTION("NAA beats EUI-64, EUI-64 beats T10 vendor ID") {
    auto t10 = designator(t10_vendor_id, 0, text("IET     VIRTUAL-DISK    beaf11"), 2);
    CHECK(scsi::wwid_from_designators({t10, designator(eui64, 0, eui), designator(naa, 0, naa5)}) ==
          "35000c50012345678");
    CHECK(scsi::wwid_from_designators({t10, designator(eui64, 0, eui)}) == "20123456789abcdef");
  }
  SECTION("T10 vendor ID: runs of spaces become one underscore") {
    CHECK(scsi::wwid_from_designators(
              {designator(t10_vendor_id, 0, text("IET     VIRTUAL-DISK    beaf11   "), 2)}) ==
          "1IET_VIRTUAL-DISK_beaf11");
    // Shorter than the 8-byte T10 VENDOR IDENTIFICATION: not usable.
    CHECK(scsi::wwid_from_designators({designator(t10_vendor_id, 0, text("IET"), 2)}).empty());
  }
  SECTION("SCSI name strings") {
    auto name = [&](std::string_view s) { return designator(scsi_name_string, 0, text(s), 3); };
    CHECK(scsi::wwid_from_designators({name(std::string("naa.6001405ABCDEF012\0\0\0\0", 24))}) ==
          "36001405abcdef012");
    CHECK(scsi::wwid_from_designators({name("eui.0123456789ABCDEF")}) == "20123456789abcdef");
    CHECK(scsi::wwid_from_designators({name("iqn.2003-01.org.Example:disk1")}) ==
          "82003-01.org.Example:disk1");
    CHECK(scsi::wwid_from_designators({name("foo.bar")}).empty());
    // A SCSI name string ranks above a T10 vendor ID but below EUI-64.
    auto t10 = designator(t10_vendor_id, 0, text("IET     x"), 2);
    CHECK(scsi::wwid_from_designators({t10, name("iqn.2003-01.a:b")}) == "82003-01.a:b");
    CHECK(scsi::wwid_from_designators({name("iqn.2003-01.a:b"), designator(eui64, 0, eui)}) ==
          "20123456789abcdef");
  }
  SECTION("only logical-unit designators count") {
    CHECK(
        scsi::wwid_from_designators({designator(naa, 1, naa6), designator(naa, 2, naa5)}).empty());
    CHECK(scsi::wwid_from_designators({designator(naa, 1, naa6), designator(eui64, 0, eui)}) ==
          "20123456789abcdef");
  }
  SECTION("designators of the wrong length are skipped") {
    CHECK(scsi::wwid_from_designators({designator(naa, 0, hex("6001405abcdef012"))}).empty());
    CHECK(scsi::wwid_from_designators({designator(eui64, 0, hex("01234567"))}).empty());
    CHECK(scsi::wwid_from_designators({designator(naa, 0, {})}).empty());
  }
}

TEST_CASE("VPD block limits, SBC-3 page", "[scsi]") {
  // clang-format off
  auto data = hex(
      "00 b0 00 3c"
      "00 01 0008 00004000 00000400 00000000"  // WSNZ 0, C&W 1, OTLG 8, MTL 16384, OTL 1024
      "ffffffff 00000010 00000008 80000000"    // unmap: LBA count, descriptors, granularity, UGA
      "0000000000010000"                       // MAXIMUM WRITE SAME LENGTH
      "0000000000000000000000000000000000000000");
  // clang-format on
  REQUIRE(data.size() == 64);
  auto limits = scsi::parse_block_limits(data);
  REQUIRE(limits);
  CHECK_FALSE(limits->wsnz);
  CHECK(limits->max_compare_and_write_length == 1);
  CHECK(limits->optimal_transfer_length_granularity == 8);
  CHECK(limits->max_transfer_length_blocks == 16384);
  CHECK(limits->optimal_transfer_length_blocks == 1024);
  CHECK(limits->max_unmap_lba_count == 0xFFFFFFFF);
  CHECK(limits->max_unmap_descriptor_count == 16);
  CHECK(limits->optimal_unmap_granularity == 8);
  CHECK(limits->ugavalid);
  CHECK(limits->unmap_granularity_alignment == 0);
  CHECK(limits->max_write_same_length == 0x10000);

  for_each_truncation(data, [&](auto part, size_t n) {
    auto l = scsi::parse_block_limits(part);
    CHECK(l.has_value() == (n == data.size()));
  });
}

TEST_CASE("VPD block limits, old 0x0C-byte page", "[scsi]") {
  // SBC-2 page: only through OPTIMAL TRANSFER LENGTH. Trailing bytes past the declared length
  // (a target padding to the allocation length) must not be read as unmap limits.
  auto data = hex("00 b0 00 0c  00 00 0000 00000800 00000080  ffffffff ffffffff ffffffff");
  auto limits = scsi::parse_block_limits(data);
  REQUIRE(limits);
  CHECK(limits->max_transfer_length_blocks == 0x800);
  CHECK(limits->optimal_transfer_length_blocks == 0x80);
  CHECK(limits->max_unmap_lba_count == 0);
  CHECK(limits->max_unmap_descriptor_count == 0);
  CHECK(limits->optimal_unmap_granularity == 0);
  CHECK(limits->max_write_same_length == 0);

  CHECK_FALSE(scsi::parse_block_limits(hex("00 b2 00 04 00 00 00 00")));
}

TEST_CASE("VPD logical block provisioning", "[scsi]") {
  // THRESHOLD EXPONENT 0; LBPU LBPWS LBPWS10 LBPRZ ANC_SUP; PROVISIONING TYPE 010b (thin).
  auto data = hex("00 b2 00 04  00 e6 02 00");
  auto lbp = scsi::parse_logical_block_provisioning(data);
  REQUIRE(lbp);
  CHECK(lbp->lbpu);
  CHECK(lbp->lbpws);
  CHECK(lbp->lbpws10);
  CHECK(lbp->lbprz);
  CHECK(lbp->anc_sup);
  CHECK_FALSE(lbp->dp);
  CHECK(lbp->provisioning_type == 2);

  lbp = scsi::parse_logical_block_provisioning(hex("00 b2 00 04  0c 81 00 00"));
  REQUIRE(lbp);
  CHECK(lbp->threshold_exponent == 0x0c);
  CHECK(lbp->lbpu);
  CHECK_FALSE(lbp->lbpws);
  CHECK_FALSE(lbp->lbprz);
  CHECK(lbp->dp);
  CHECK(lbp->provisioning_type == 0);

  // A page declaring less than the 4 defined bytes is invalid.
  CHECK_FALSE(scsi::parse_logical_block_provisioning(hex("00 b2 00 02  00 e6")));

  for_each_truncation(data, [&](auto part, size_t n) {
    CHECK(scsi::parse_logical_block_provisioning(part).has_value() == (n == data.size()));
  });
}
