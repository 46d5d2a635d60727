// Block requests as SBC commands, and the limits that shape them. Pure policy: the device
// builds the limits once from what the probe found (map_lu), then turns each request into
// command descriptions (plan_request) that it sends; nothing here does I/O, keeps time or logs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include <scsi/cdb.hpp>
#include <scsi/inquiry.hpp>

#include <blockdev/block_device.hpp>
#include "mpio/target_quirks.hpp"

namespace mpio {

// What request planning needs to know about the LU.
struct CommandLimits {
  uint32_t block_size = 512;
  // The largest READ(16)/WRITE(16) data, a multiple of block_size.
  uint32_t command_bytes = 1u << 20;
  // VPD 0xB0 (SBC-3 §6.5.3); 0 = not reported.
  uint32_t max_unmap_lba_count = 0;
  uint32_t max_unmap_descriptor_count = 0;
  uint64_t max_write_same_length = 0;
  // WRITE SAME(16) may carry UNMAP=1 (VPD 0xB2 LBPWS on a thin LU).
  bool write_zeroes_may_unmap = false;
  // Cleared once the LU refuses SYNCHRONIZE CACHE(16) (synchronize_cache16_unsupported):
  // flushes use SYNCHRONIZE CACHE(10) from then on.
  bool synchronize_cache16 = true;
  // Block status comes from GET LBA STATUS (a thin LU: DeviceInfo::supports_block_status);
  // cleared once the LU refuses the command (get_lba_status_unsupported). Without it every
  // block is reported as data, with no command.
  bool block_status = false;
  // NBD_CMD_CACHE becomes PRE-FETCH(16); cleared once the LU refuses it (pre_fetch_unsupported),
  // after which a cache request is answered at once, with no command.
  bool pre_fetch = true;
  // Unmapped (deallocated or anchored) blocks read as zeros: LBPRZ in READ CAPACITY(16) or
  // VPD 0xB2 (SBC-4 §4.7.4.5). Such blocks are holes that read as zeros, else holes only.
  bool unmapped_reads_zero = false;
};

// One GET LBA STATUS per block status request, its allocation length bounded: the header and
// up to 4096 descriptors (64 KiB + 8). A range with more changes of state than that is
// answered in part, which the NBD client continues from where the answer ends.
inline constexpr uint32_t kLbaStatusAllocationLength = 8 + 16 * 4096;

// One SCSI command of a request: its CDB and where its data is.
struct PlannedCommand {
  enum class Data : uint8_t {
    none,                  // SYNCHRONIZE CACHE
    read_into_buffer,      // Data-In into the request's buffer slice
    write_from_buffer,     // Data-Out from the request's buffer slice
    write_parameter_data,  // Data-Out from parameter_data (UNMAP list, WRITE SAME block)
    read_parameter_data,   // Data-In into parameter_data, buffer_length bytes (GET LBA STATUS)
  };
  scsi::Cdb cdb;
  Data data = Data::none;
  // The slice of IoRequest::buffer, in bytes (read_into_buffer, write_from_buffer); for
  // read_parameter_data, the allocation length.
  uint64_t buffer_offset = 0;
  uint32_t buffer_length = 0;
  // Built by the planner; the caller may take it (swap) since the slot is refilled on reuse.
  std::vector<std::byte> parameter_data;
};

// The commands of one request, in a container the caller keeps and reuses: clear() keeps every
// slot and the capacity of its parameter data, so planning a READ or WRITE allocates nothing
// once the container has held as many commands.
class CommandPlan {
 public:
  void clear() { size_ = 0; }
  // The next slot, every field as new except parameter_data's capacity.
  PlannedCommand& add();
  std::span<PlannedCommand> commands() { return {slots_.data(), size_}; }
  std::span<const PlannedCommand> commands() const { return {slots_.data(), size_}; }
  size_t size() const { return size_; }

 private:
  std::vector<PlannedCommand> slots_;
  size_t size_ = 0;
};

// Replaces `plan`'s contents with the commands that carry `request` (its buffer is not read;
// offsets into it are). The request is aligned to the block size (the bridge guarantees it).
void plan_request(const blockdev::IoRequest& request, const CommandLimits& limits,
                  CommandPlan& plan);

// The extents answering a block status request (IoOp::block_status) from the Data-In of its
// GET LBA STATUS (`data`, the bytes received), or, when the plan sent no command (the LU has
// no block status), one extent of data covering the request. Descriptors map to extents
// clamped to the request: mapped (and states SBC-4 leaves open) is data; deallocated and
// anchored are holes, which read as zeros when `limits.unmapped_reads_zero`. The answer stops
// at a gap between descriptors. Malformed data is std::errc::protocol_error with `detail`.
std::error_code block_status_extents(std::span<const std::byte> data,
                                     const blockdev::IoRequest& request,
                                     const CommandLimits& limits,
                                     std::vector<blockdev::Extent>& out, std::string& detail);

// ILLEGAL REQUEST with INVALID COMMAND OPERATION CODE (20/00) or INVALID FIELD IN CDB (24/00)
// in answer to GET LBA STATUS: the LU does not implement the service action, and every block
// is data from then on.
bool get_lba_status_unsupported(const std::error_code& ec);

// ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE (20/00) in answer to PRE-FETCH(16): SBC-4
// makes the command optional.
bool pre_fetch_unsupported(const std::error_code& ec);

// The CDB of a flush (SBC-3 §5.22/§5.23): the whole medium, (16) unless the LU refused it.
scsi::Cdb synchronize_cache_cdb(const CommandLimits& limits);

// ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE (20/00) in answer to SYNCHRONIZE CACHE(16):
// the LU has no (16), and the flush goes again as (10).
bool synchronize_cache16_unsupported(const std::error_code& ec);

// What the probe found out about the LU that decides how requests become commands.
struct ProbedLu {
  uint64_t blocks = 0;
  uint32_t block_length = 512;
  uint8_t logical_per_physical_exponent = 0;      // READ CAPACITY(16)
  bool lbpme = false;                             // READ CAPACITY(16): logical block provisioning
  bool lbprz = false;                             // READ CAPACITY(16): unmapped blocks read zeros
  bool write_protected = false;                   // MODE SENSE(10) header WP
  bool dpofua = true;                             // MODE SENSE(10) header DPOFUA
  std::optional<scsi::BlockLimits> block_limits;  // VPD 0xB0, if the LU has it
  std::optional<scsi::LogicalBlockProvisioning> provisioning;  // VPD 0xB2, if the LU has it
};

// Where the largest command's size comes from, first match wins: the configuration, the
// built-in table, one MaxBurstLength. The LU's MAXIMUM TRANSFER LENGTH caps any of them.
struct CommandSizeSources {
  uint32_t configured_bytes = 0;     // multipath.max_sectors_kb; 0 = not set
  std::optional<TargetQuirk> quirk;  // find_target_quirk(vendor, product)
  uint32_t max_burst_length = 0;     // the probed session's MaxBurstLength (RFC 7143 §13.13)
};

struct LuMapping {
  // Everything but the identity strings (wwid, vendor, product), which the caller fills.
  blockdev::DeviceInfo info;
  CommandLimits limits;
  std::string command_bytes_source;  // "one MaxBurstLength", "multipath.max_sectors_kb", ...
};

// The FUA / flush / UNMAP / WRITE SAME / block status mapping of the LU, and the size of its
// commands.
LuMapping map_lu(const ProbedLu& lu, const CommandSizeSources& sizes);

}  // namespace mpio
