// INQUIRY data (SPC-4 §6.6) and the VPD pages we use (SPC-4 §7.8, SBC-3 §6.5). Every parser
// returns nullopt when the data is shorter than its own header declares or is not the page asked
// for; bytes beyond the declared length are ignored.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace scsi {

namespace vpd {
inline constexpr uint8_t supported_pages = 0x00;
inline constexpr uint8_t unit_serial_number = 0x80;
inline constexpr uint8_t device_identification = 0x83;
inline constexpr uint8_t block_limits = 0xB0;
inline constexpr uint8_t logical_block_provisioning = 0xB2;
}  // namespace vpd

// SPC-4 §6.6.2, Table 142.
struct StandardInquiry {
  uint8_t peripheral_qualifier = 0;  // 0: LU connected; 1: not connected now; 3: no LU
  uint8_t device_type = 0;           // 0x00 direct access block, 0x0C storage array controller
  uint8_t version = 0;
  uint8_t tpgs = 0;  // bit 0 implicit ALUA, bit 1 explicit ALUA
  bool cmdque = false;
  std::string vendor, product, revision;  // trimmed of padding spaces and NULs
};

// Needs the 36 bytes that hold the revision (SPC-4 requires at least that much).
std::optional<StandardInquiry> parse_standard_inquiry(std::span<const std::byte> data);

// Total length of a VPD page as its header declares (PAGE LENGTH + 4), to re-issue INQUIRY with
// a large enough allocation length; nullopt if fewer than 4 bytes.
std::optional<size_t> vpd_page_total_length(std::span<const std::byte> data);

// VPD 0x00 (SPC-4 §7.8.14): the page codes the LU supports.
std::optional<std::vector<uint8_t>> parse_supported_vpd_pages(std::span<const std::byte> data);

// VPD 0x80 (SPC-4 §7.8.15): PRODUCT SERIAL NUMBER, trimmed.
std::optional<std::string> parse_unit_serial_number(std::span<const std::byte> data);

// SPC-4 §7.8.6.1, Table 474: one designation descriptor of VPD 0x83.
struct Designator {
  uint8_t code_set = 0;     // 1 binary, 2 ASCII, 3 UTF-8
  uint8_t association = 0;  // 0 logical unit, 1 target port, 2 SCSI target device
  uint8_t type = 0;         // 1 T10 vendor ID, 2 EUI-64, 3 NAA, 4 relative target port,
                            // 5 target port group, 6 LU group, 7 MD5, 8 SCSI name string
  bool piv = false;         // PROTOCOL IDENTIFIER is valid
  uint8_t protocol_id = 0;  // 5 = iSCSI (SPC-4 Table 362)
  std::vector<std::byte> value;
};

namespace designator_type {
inline constexpr uint8_t t10_vendor_id = 1;
inline constexpr uint8_t eui64 = 2;
inline constexpr uint8_t naa = 3;
inline constexpr uint8_t relative_target_port = 4;
inline constexpr uint8_t target_port_group = 5;
inline constexpr uint8_t scsi_name_string = 8;
}  // namespace designator_type

// VPD 0x83 (SPC-4 §7.8.6). A descriptor running past the page makes the whole page invalid.
std::optional<std::vector<Designator>> parse_device_identification(std::span<const std::byte> data);

// The LU's world-wide identifier as multipath-tools' parse_vpd_pg83() spells it (the same
// "3..." string udev's scsi_id gives for NAA), so a LUN keeps the name admins know from
// dm-multipath. Only designators associated with the logical unit count; among those the first
// of the best kind wins:
//   1. NAA: "3" + lower-case hex; IEEE Registered Extended (6) over IEEE Registered (5) over
//      IEEE Extended (2) over Locally Assigned (3), each only at its proper length;
//   2. EUI-64 (8, 12 or 16 bytes): "2" + lower-case hex;
//   3. SCSI name string starting "naa.", "eui." or "iqn.": the prefix becomes "3", "2" or "8"
//      and the rest follows (lower-cased for naa./eui.; cut at the first NUL);
//   4. T10 vendor ID (at least 8 bytes): "1" + the text, each run of spaces inside it turned
//      into one '_' and a trailing run dropped.
// Empty if none qualifies.
std::string wwid_from_designators(const std::vector<Designator>& designators);

// VPD 0xB0 (SBC-3 §6.5.3, Table 183). Old targets send the 0x0C-byte SBC-2 page; fields past the
// declared page length read 0 (0 means "no limit reported").
struct BlockLimits {
  uint32_t max_transfer_length_blocks = 0;
  uint32_t optimal_transfer_length_blocks = 0;
  uint32_t max_unmap_lba_count = 0;
  uint32_t max_unmap_descriptor_count = 0;
  uint32_t optimal_unmap_granularity = 0;
  uint32_t unmap_granularity_alignment = 0;  // meaningful only when ugavalid
  bool ugavalid = false;
  uint64_t max_write_same_length = 0;
  uint16_t optimal_transfer_length_granularity = 0;
  uint8_t max_compare_and_write_length = 0;
  bool wsnz = false;  // WRITE SAME with NUMBER OF LOGICAL BLOCKS 0 is refused
};

std::optional<BlockLimits> parse_block_limits(std::span<const std::byte> data);

// VPD 0xB2 (SBC-3 §6.5.4, Table 186).
struct LogicalBlockProvisioning {
  uint8_t threshold_exponent = 0;
  bool lbpu = false;              // UNMAP supported
  bool lbpws = false;             // WRITE SAME(16) with UNMAP supported
  bool lbpws10 = false;           // WRITE SAME(10) with UNMAP supported
  bool lbprz = false;             // unmapped blocks read back as zeros
  bool anc_sup = false;           // ANCHOR supported
  bool dp = false;                // a provisioning group descriptor follows
  uint8_t provisioning_type = 0;  // 0 full, 1 resource (thick), 2 thin
};

std::optional<LogicalBlockProvisioning> parse_logical_block_provisioning(
    std::span<const std::byte> data);

}  // namespace scsi
