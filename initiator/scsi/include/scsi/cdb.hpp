// SCSI command descriptor blocks (SPC-4, SBC-3). Builders only fill bytes; they know nothing of
// the transport that carries them. Every multi-byte field is big-endian (SPC-4 §4.3.1).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace scsi {

// A CDB of 6, 10, 12 or 16 bytes, stored in a fixed 16-byte array so it can travel by value
// (the iSCSI SCSI Command PDU carries up to 16 CDB bytes in its BHS).
struct Cdb {
  std::array<std::byte, 16> bytes{};
  uint8_t size = 0;

  std::span<const std::byte> view() const { return {bytes.data(), size}; }
  uint8_t opcode() const { return static_cast<uint8_t>(bytes[0]); }
};

namespace opcode {
inline constexpr uint8_t test_unit_ready = 0x00;
inline constexpr uint8_t inquiry = 0x12;
inline constexpr uint8_t read_capacity10 = 0x25;
inline constexpr uint8_t synchronize_cache10 = 0x35;
inline constexpr uint8_t unmap = 0x42;
inline constexpr uint8_t mode_sense10 = 0x5A;
inline constexpr uint8_t read16 = 0x88;
inline constexpr uint8_t pre_fetch16 = 0x90;
inline constexpr uint8_t write16 = 0x8A;
inline constexpr uint8_t synchronize_cache16 = 0x91;
inline constexpr uint8_t write_same16 = 0x93;
inline constexpr uint8_t service_action_in16 = 0x9E;
inline constexpr uint8_t report_luns = 0xA0;
inline constexpr uint8_t maintenance_in = 0xA3;
inline constexpr uint8_t maintenance_out = 0xA4;
}  // namespace opcode

// SPC-4 §6.33 TEST UNIT READY (6 bytes).
Cdb test_unit_ready();

// SPC-4 §6.6 INQUIRY (6 bytes). `page` is only meaningful with `evpd`; the standard requires
// PAGE CODE 0 when EVPD is 0, so it is ignored then.
Cdb inquiry(bool evpd, uint8_t page, uint16_t allocation_length);

// SBC-3 §5.15 READ CAPACITY(10) (10 bytes, PMI 0).
Cdb read_capacity10();

// SBC-3 §5.16 READ CAPACITY(16): SERVICE ACTION IN(16) 0x9E, service action 0x10.
Cdb read_capacity16(uint32_t allocation_length);

// SBC-4 §5.8 GET LBA STATUS: SERVICE ACTION IN(16) 0x9E, service action 0x12; STARTING
// LOGICAL BLOCK ADDRESS, ALLOCATION LENGTH, REPORT TYPE 0 (every LBA status descriptor).
Cdb get_lba_status(uint64_t starting_lba, uint32_t allocation_length);

// SBC-3 §5.8 READ(16) / §5.39 WRITE(16). No protection information, DPO 0, group 0.
Cdb read16(uint64_t lba, uint32_t blocks, bool fua);
Cdb write16(uint64_t lba, uint32_t blocks, bool fua);

// SBC-3 §5.22/§5.23 SYNCHRONIZE CACHE(10/16), IMMED 0 (status only once the data is durable).
// lba 0 with blocks 0 means "the whole medium".
Cdb synchronize_cache10(uint32_t lba, uint16_t blocks);
Cdb synchronize_cache16(uint64_t lba, uint32_t blocks);

// SBC-3 §5.44 WRITE SAME(16). With `unmap` the target may deallocate the range (thin
// provisioning); with `ndob` (SBC-4 "no data-out buffer") no block of data is sent and zeros are
// written, so the data-out length must be 0.
Cdb write_same16(uint64_t lba, uint32_t blocks, bool unmap, bool ndob = false);

// SBC-4 §5.9 PRE-FETCH(16) with IMMED 1: the LU is asked to read the range into its cache and
// answers before it has, so an advisory NBD_CMD_CACHE costs one round trip.
Cdb pre_fetch16(uint64_t lba, uint32_t blocks);

// SBC-3 §5.28 UNMAP (10 bytes). The parameter list comes from unmap_parameter_list().
Cdb unmap(uint16_t parameter_list_length);

struct UnmapDescriptor {
  uint64_t lba = 0;
  uint32_t count = 0;
};

// SBC-3 §5.28.2: an 8-byte header (UNMAP DATA LENGTH, UNMAP BLOCK DESCRIPTOR DATA LENGTH) followed
// by one 16-byte descriptor per range. The caller keeps the count within the target's MAXIMUM
// UNMAP BLOCK DESCRIPTOR COUNT (VPD 0xB0); the 16-bit length fields cap it at 4095 anyway, and
// further descriptors are dropped.
std::vector<std::byte> unmap_parameter_list(std::span<const UnmapDescriptor> descriptors);

// SPC-4 §6.27 REPORT LUNS (12 bytes), SELECT REPORT 0 (all logical units).
Cdb report_luns(uint32_t allocation_length);

// SPC-4 §6.14 MODE SENSE(10), current values (PC 0). DBD set by default: we only read the header
// (WP and DPOFUA in the DEVICE-SPECIFIC PARAMETER) and mode pages, never block descriptors.
Cdb mode_sense10(uint8_t page, uint8_t subpage, uint16_t allocation_length,
                 bool disable_block_descriptors = true);

// SPC-4 §6.36 REPORT TARGET PORT GROUPS: MAINTENANCE IN 0xA3, service action 0x0A, PARAMETER
// DATA FORMAT 000b (length only; parse_report_target_port_groups() expects that format).
Cdb report_target_port_groups(uint32_t allocation_length);

// SPC-4 §6.39 SET TARGET PORT GROUPS: MAINTENANCE OUT 0xA4, service action 0x0A, with
// `parameter_list_length` bytes of Data-Out (scsi::encode_set_target_port_groups()).
Cdb set_target_port_groups(uint32_t parameter_list_length);

}  // namespace scsi
