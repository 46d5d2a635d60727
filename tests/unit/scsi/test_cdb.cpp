#include <catch2/catch.hpp>

#include <common/hex.hpp>
#include <scsi/cdb.hpp>

#include "scsi_test_support.hpp"

// Expected CDBs are written out by hand from the SPC-4 / SBC-3 tables, field by field.

namespace {

std::string hex_of(const scsi::Cdb& cdb) {
  return common::to_hex(cdb.view());
}

// Expected bytes are laid out field by field with spaces; compare them without.
std::string expect(std::string_view spaced) {
  return common::to_hex(scsi_test::hex(spaced));
}

}  // namespace

TEST_CASE("TEST UNIT READY is six zero bytes", "[scsi]") {
  // SPC-4 Table 272: OPERATION CODE 00h, reserved, CONTROL.
  auto cdb = scsi::test_unit_ready();
  CHECK(cdb.size == 6);
  CHECK(hex_of(cdb) == expect("000000000000"));
}

TEST_CASE("INQUIRY standard and VPD", "[scsi]") {
  // SPC-4 Table 139: 12h, EVPD in byte 1 bit 0, PAGE CODE byte 2, ALLOCATION LENGTH bytes 3-4.
  CHECK(hex_of(scsi::inquiry(false, 0, 36)) == expect("120000002400"));
  // Without EVPD the page code must be 0 (SPC-4 §6.6.1), whatever the caller passed.
  CHECK(hex_of(scsi::inquiry(false, 0x83, 36)) == expect("120000002400"));
  CHECK(hex_of(scsi::inquiry(true, 0x83, 0x1000)) == expect("120183100000"));
  CHECK(hex_of(scsi::inquiry(true, 0xB0, 0xFFFF)) == expect("1201b0ffff00"));
}

TEST_CASE("READ CAPACITY (10) and (16)", "[scsi]") {
  // SBC-3 Table 63: 25h and nine zero bytes (LBA 0, PMI 0).
  auto rc10 = scsi::read_capacity10();
  CHECK(rc10.size == 10);
  CHECK(hex_of(rc10) == expect("25000000000000000000"));
  // SBC-3 Table 65: 9Eh, SERVICE ACTION 10h, LBA bytes 2-9, ALLOCATION LENGTH bytes 10-13.
  auto rc16 = scsi::read_capacity16(32);
  CHECK(rc16.size == 16);
  CHECK(hex_of(rc16) == expect("9e10 0000000000000000 00000020 0000"));
}

TEST_CASE("GET LBA STATUS is SERVICE ACTION IN(16) 0x12 with LBA and allocation length", "[scsi]") {
  // SBC-4 §5.8.1: opcode, service action, STARTING LBA (8), ALLOCATION LENGTH (4), REPORT TYPE,
  // CONTROL.
  auto cdb = scsi::get_lba_status(0x0102030405060708, 0x10008);
  CHECK(cdb.size == 16);
  CHECK(hex_of(cdb) == expect("9e12 0102030405060708 00010008 0000"));
}

TEST_CASE("READ(16) and WRITE(16) carry LBA, length and FUA", "[scsi]") {
  // SBC-3 Table 97 / 135: opcode, flags (FUA = bit 3), LBA (8), TRANSFER LENGTH (4), group,
  // control.
  CHECK(hex_of(scsi::read16(0x0102030405060708ull, 0x11223344, false)) ==
        expect("8800 0102030405060708 11223344 0000"));
  CHECK(hex_of(scsi::read16(5, 8, true)) == expect("8808 0000000000000005 00000008 0000"));
  CHECK(hex_of(scsi::write16(0xFFFFFFFFFFFFFFFEull, 1, true)) ==
        expect("8a08 fffffffffffffffe 00000001 0000"));
  CHECK(hex_of(scsi::write16(0x10, 0x80, false)) == expect("8a00 0000000000000010 00000080 0000"));
  CHECK(scsi::write16(0, 1, false).size == 16);
}

TEST_CASE("SYNCHRONIZE CACHE (10) and (16)", "[scsi]") {
  // SBC-3 Table 119: 35h, flags, LBA bytes 2-5, group byte 6, NUMBER OF BLOCKS bytes 7-8.
  CHECK(hex_of(scsi::synchronize_cache10(0x12345678, 0xABCD)) ==
        expect("3500 12345678 00 abcd 00"));
  CHECK(hex_of(scsi::synchronize_cache10(0, 0)) == expect("35000000000000000000"));
  // SBC-3 Table 121: 91h, flags, LBA bytes 2-9, NUMBER OF BLOCKS bytes 10-13.
  CHECK(hex_of(scsi::synchronize_cache16(0x100000000ull, 0x10)) ==
        expect("9100 0000000100000000 00000010 0000"));
}

TEST_CASE("WRITE SAME(16) with UNMAP and NDOB", "[scsi]") {
  // SBC-3 Table 160: 93h, byte 1 UNMAP = bit 3 (SBC-4 NDOB = bit 0).
  CHECK(hex_of(scsi::write_same16(0x2000, 0x800, true)) ==
        expect("9308 0000000000002000 00000800 0000"));
  CHECK(hex_of(scsi::write_same16(0x2000, 0x800, true, true)) ==
        expect("9309 0000000000002000 00000800 0000"));
  CHECK(hex_of(scsi::write_same16(1, 1, false)) == expect("9300 0000000000000001 00000001 0000"));
}

TEST_CASE("PRE-FETCH(16) with IMMED", "[scsi]") {
  // SBC-4 Table 60: 90h, byte 1 IMMED = bit 1, LBA bytes 2-9, PREFETCH LENGTH bytes 10-13.
  CHECK(hex_of(scsi::pre_fetch16(0x2000, 0x800)) == expect("9002 0000000000002000 00000800 0000"));
}

TEST_CASE("UNMAP CDB and parameter list", "[scsi]") {
  // SBC-3 Table 136: 42h, ANCHOR, reserved, group byte 6, PARAMETER LIST LENGTH bytes 7-8.
  CHECK(hex_of(scsi::unmap(24)) == expect("4200 00000000 00 0018 00"));

  // SBC-3 Tables 137/138: UNMAP DATA LENGTH = n - 1 (bytes after the field), BLOCK DESCRIPTOR
  // DATA LENGTH = 16 per descriptor, 4 reserved; each descriptor LBA(8) count(4) reserved(4).
  const scsi::UnmapDescriptor ranges[] = {{0x1000, 0x800}, {0xFFFFFFFFFFull, 1}};
  CHECK(common::to_hex(scsi::unmap_parameter_list(ranges)) ==
        expect("0026 0020 00000000 0000000000001000 00000800 00000000 000000ffffffffff 00000001 "
               "00000000"));
  CHECK(common::to_hex(scsi::unmap_parameter_list({})) == expect("0006000000000000"));
}

TEST_CASE("UNMAP parameter list stops at what the 16-bit lengths can describe", "[scsi]") {
  std::vector<scsi::UnmapDescriptor> many(5000, {1, 1});
  auto list = scsi::unmap_parameter_list(many);
  const size_t n = (list.size() - 8) / 16;
  CHECK(n == 4095);
  CHECK(list.size() == 8 + 16 * 4095);
  CHECK(common::to_hex(std::span(list).first(4)) == expect("fff6fff0"));
}

TEST_CASE("REPORT LUNS", "[scsi]") {
  // SPC-4 Table 284: A0h, reserved, SELECT REPORT byte 2, ALLOCATION LENGTH bytes 6-9.
  auto cdb = scsi::report_luns(0x1000);
  CHECK(cdb.size == 12);
  CHECK(hex_of(cdb) == expect("a0 0000000000 00001000 0000"));
}

TEST_CASE("MODE SENSE(10)", "[scsi]") {
  // SPC-4 Table 166: 5Ah, byte 1 DBD = bit 3, byte 2 PC|PAGE CODE, byte 3 SUBPAGE, ALLOCATION
  // LENGTH bytes 7-8.
  CHECK(hex_of(scsi::mode_sense10(0x3F, 0x00, 0xFC)) == expect("5a083f00000000 00fc 00"));
  CHECK(hex_of(scsi::mode_sense10(0x08, 0x00, 0x14, false)) == expect("5a000800000000 0014 00"));
  CHECK(hex_of(scsi::mode_sense10(0x3F, 0xFF, 0xFFFF)) == expect("5a083fff000000 ffff 00"));
}

TEST_CASE("REPORT TARGET PORT GROUPS", "[scsi]") {
  // SPC-4 Table 205: A3h, byte 1 PARAMETER DATA FORMAT (000b) | SERVICE ACTION 0Ah,
  // ALLOCATION LENGTH bytes 6-9.
  auto cdb = scsi::report_target_port_groups(0x200);
  CHECK(cdb.size == 12);
  CHECK(cdb.opcode() == 0xA3);
  CHECK(hex_of(cdb) == expect("a30a00000000 00000200 0000"));
}

TEST_CASE("SET TARGET PORT GROUPS", "[scsi]") {
  // SPC-4 Table 221: A4h, byte 1 SERVICE ACTION 0Ah, PARAMETER LIST LENGTH bytes 6-9.
  auto cdb = scsi::set_target_port_groups(8);
  CHECK(cdb.size == 12);
  CHECK(cdb.opcode() == 0xA4);
  CHECK(hex_of(cdb) == expect("a40a00000000 00000008 0000"));
}
