#include "scsi/cdb.hpp"

#include <algorithm>

#include <common/bytes.hpp>

namespace scsi {
namespace {

Cdb make(uint8_t op, uint8_t size) {
  Cdb cdb;
  cdb.size = size;
  cdb.bytes[0] = static_cast<std::byte>(op);
  return cdb;
}

common::MutableBytes body(Cdb& cdb) {
  return {cdb.bytes.data(), cdb.size};
}

// SBC-3 Table 97 (READ(16)) / Table 135 (WRITE(16)): FUA is bit 3 of byte 1.
constexpr uint8_t fua_bit = 0x08;

// Layout shared by READ(16), WRITE(16), SYNCHRONIZE CACHE(16) and WRITE SAME(16): byte 1 flags,
// bytes 2-9 LBA, bytes 10-13 length, byte 14 group number, byte 15 control.
Cdb lba16(uint8_t op, uint8_t flags, uint64_t lba, uint32_t blocks) {
  Cdb cdb = make(op, 16);
  auto b = body(cdb);
  common::store_u8(b, 1, flags);
  common::store_be64(b, 2, lba);
  common::store_be32(b, 10, blocks);
  return cdb;
}

}  // namespace

Cdb test_unit_ready() {
  return make(opcode::test_unit_ready, 6);
}

Cdb inquiry(bool evpd, uint8_t page, uint16_t allocation_length) {
  Cdb cdb = make(opcode::inquiry, 6);
  auto b = body(cdb);
  common::store_u8(b, 1, evpd ? 0x01 : 0x00);
  common::store_u8(b, 2, evpd ? page : 0);
  // SPC-4 widened ALLOCATION LENGTH to bytes 3-4 (SPC-2 had only byte 4).
  common::store_be16(b, 3, allocation_length);
  return cdb;
}

Cdb read_capacity10() {
  return make(opcode::read_capacity10, 10);
}

Cdb read_capacity16(uint32_t allocation_length) {
  Cdb cdb = make(opcode::service_action_in16, 16);
  auto b = body(cdb);
  common::store_u8(b, 1, 0x10);  // SERVICE ACTION = READ CAPACITY(16)
  common::store_be32(b, 10, allocation_length);
  return cdb;
}

Cdb get_lba_status(uint64_t starting_lba, uint32_t allocation_length) {
  Cdb cdb = make(opcode::service_action_in16, 16);
  auto b = body(cdb);
  common::store_u8(b, 1, 0x12);  // SERVICE ACTION = GET LBA STATUS
  common::store_be64(b, 2, starting_lba);
  common::store_be32(b, 10, allocation_length);
  return cdb;
}

Cdb read16(uint64_t lba, uint32_t blocks, bool fua) {
  return lba16(opcode::read16, fua ? fua_bit : 0, lba, blocks);
}

Cdb write16(uint64_t lba, uint32_t blocks, bool fua) {
  return lba16(opcode::write16, fua ? fua_bit : 0, lba, blocks);
}

Cdb synchronize_cache10(uint32_t lba, uint16_t blocks) {
  Cdb cdb = make(opcode::synchronize_cache10, 10);
  auto b = body(cdb);
  common::store_be32(b, 2, lba);
  common::store_be16(b, 7, blocks);
  return cdb;
}

Cdb synchronize_cache16(uint64_t lba, uint32_t blocks) {
  return lba16(opcode::synchronize_cache16, 0, lba, blocks);
}

Cdb write_same16(uint64_t lba, uint32_t blocks, bool unmap, bool ndob) {
  // SBC-3 Table 160: UNMAP is bit 3 of byte 1; SBC-4 adds NDOB as bit 0.
  uint8_t flags = (unmap ? 0x08 : 0x00) | (ndob ? 0x01 : 0x00);
  return lba16(opcode::write_same16, flags, lba, blocks);
}

Cdb pre_fetch16(uint64_t lba, uint32_t blocks) {
  // SBC-4 Table 60: IMMED is bit 1 of byte 1; PREFETCH LENGTH where (16) commands put the count.
  return lba16(opcode::pre_fetch16, 0x02, lba, blocks);
}

Cdb unmap(uint16_t parameter_list_length) {
  Cdb cdb = make(opcode::unmap, 10);
  common::store_be16(body(cdb), 7, parameter_list_length);
  return cdb;
}

std::vector<std::byte> unmap_parameter_list(std::span<const UnmapDescriptor> descriptors) {
  constexpr size_t header = 8;
  constexpr size_t descriptor_size = 16;
  // UNMAP DATA LENGTH (16 bits) counts everything after itself: 6 + 16n <= 65535.
  constexpr size_t max_descriptors = (0xFFFF - 6) / descriptor_size;
  const size_t n = std::min(descriptors.size(), max_descriptors);
  std::vector<std::byte> out(header + n * descriptor_size);
  common::store_be16(out, 0, static_cast<uint16_t>(out.size() - 2));
  common::store_be16(out, 2, static_cast<uint16_t>(n * descriptor_size));
  for (size_t i = 0; i < n; ++i) {
    const size_t off = header + i * descriptor_size;
    common::store_be64(out, off, descriptors[i].lba);
    common::store_be32(out, off + 8, descriptors[i].count);
  }
  return out;
}

Cdb report_luns(uint32_t allocation_length) {
  Cdb cdb = make(opcode::report_luns, 12);
  common::store_be32(body(cdb), 6, allocation_length);
  return cdb;
}

Cdb mode_sense10(uint8_t page, uint8_t subpage, uint16_t allocation_length,
                 bool disable_block_descriptors) {
  Cdb cdb = make(opcode::mode_sense10, 10);
  auto b = body(cdb);
  common::store_u8(b, 1, disable_block_descriptors ? 0x08 : 0x00);
  common::store_u8(b, 2, page & 0x3F);  // PC (bits 7-6) = 00b: current values
  common::store_u8(b, 3, subpage);
  common::store_be16(b, 7, allocation_length);
  return cdb;
}

Cdb report_target_port_groups(uint32_t allocation_length) {
  Cdb cdb = make(opcode::maintenance_in, 12);
  auto b = body(cdb);
  common::store_u8(b, 1, 0x0A);  // PARAMETER DATA FORMAT 000b, SERVICE ACTION 0Ah
  common::store_be32(b, 6, allocation_length);
  return cdb;
}

Cdb set_target_port_groups(uint32_t parameter_list_length) {
  Cdb cdb = make(opcode::maintenance_out, 12);
  auto b = body(cdb);
  common::store_u8(b, 1, 0x0A);  // SERVICE ACTION 0Ah (SPC-4 Table 222)
  common::store_be32(b, 6, parameter_list_length);
  return cdb;
}

}  // namespace scsi
