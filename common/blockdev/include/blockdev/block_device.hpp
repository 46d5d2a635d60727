// The boundary between the NBD bridge (a client of block I/O) and the iSCSI side (a provider).
// Pure C++: no Asio here, so the NBD protocol code and its tests never see the network stack,
// and neither side includes the other's headers (docs/architecture.md, "Layers").
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <system_error>
#include <vector>

namespace blockdev {

// What the bridge needs to know about the LUN to advertise an export (NBD spec: export size,
// transmission flags, NBD_INFO_BLOCK_SIZE). Filled from READ CAPACITY and the INQUIRY VPD pages.
struct DeviceInfo {
  std::string wwid;         // from VPD 0x83 (else 0x80): the device's identity
  std::string vendor;       // INQUIRY T10 vendor identification, trimmed
  std::string product;      // INQUIRY product identification, trimmed
  uint64_t size_bytes = 0;  // (RETURNED LOGICAL BLOCK ADDRESS + 1) * block length
  uint32_t logical_block_size = 512;
  uint32_t physical_block_size = 512;   // logical << LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT
  uint32_t optimal_transfer_bytes = 0;  // VPD 0xB0 OPTIMAL TRANSFER LENGTH, 0 = not reported
  uint32_t max_transfer_bytes =
      0;                     // largest request the bridge should accept (VPD 0xB0 and our own cap)
  bool read_only = false;    // MODE SENSE WP or a read-only target
  bool supports_fua = true;  // FUA bit on WRITE(16)
  bool supports_trim = false;  // UNMAP: VPD 0xB2 LBPU and VPD 0xB0 MAXIMUM UNMAP LBA COUNT > 0
  bool supports_write_zeroes =
      false;  // WRITE SAME(16): VPD 0xB0 MAXIMUM WRITE SAME LENGTH or LBPWS
  bool write_zeroes_may_unmap = false;  // WRITE SAME(16) with UNMAP=1 allowed (VPD 0xB2 LBPWS)
  // A write_zeroes with may_unmap deallocates rather than writes: WRITE SAME(16) with UNMAP=1
  // on a thin LU whose unmapped blocks read as zeros (LBPRZ). NBD_CMD_FLAG_FAST_ZERO is
  // honoured only then.
  bool fast_zero = false;
  // IoOp::cache reaches the LU (PRE-FETCH). Cleared once the LU refuses the command, for
  // clients that connect after.
  bool supports_cache = false;
  // IoOp::block_status tells holes from data (a thin LU: READ CAPACITY(16) LBPME and VPD 0xB2).
  // Without it every byte is data, and a client need not ask the device to learn that.
  bool supports_block_status = false;
};

enum class IoOp : uint8_t { read, write, flush, trim, write_zeroes, block_status, cache };

// One run of the device with a single provisioning state, for IoOp::block_status.
struct Extent {
  static constexpr uint32_t hole = 1u << 0;  // not allocated (deallocated or anchored)
  static constexpr uint32_t zero = 1u << 1;  // reads as zeros
  uint64_t length = 0;                       // bytes, a multiple of logical_block_size, > 0
  uint32_t flags = 0;                        // hole | zero; 0 = allocated data
  friend bool operator==(const Extent&, const Extent&) = default;
};

struct IoRequest {
  IoOp op = IoOp::read;
  uint64_t offset = 0;     // bytes; the bridge guarantees alignment to logical_block_size
  uint64_t length = 0;     // bytes
  bool fua = false;        // write: force unit access
  bool may_unmap = false;  // write_zeroes: the client allows a hole (NBD: no NBD_CMD_FLAG_NO_HOLE)
  // read: destination of `length` bytes; write: source of `length` bytes; empty otherwise.
  // Owned by the submitter and valid until `done` runs.
  std::span<std::byte> buffer;
  // block_status: the device replaces the contents with consecutive extents from `offset`,
  // at least one on success, covering at most `length` bytes (fewer when one query to the
  // device answered less). Kept with the request so its capacity is reused.
  std::vector<Extent> extents;
  // Invoked exactly once on the I/O thread, possibly before submit() returns. The error's
  // default_error_condition() is a std::errc the NBD side maps to an NBD error (one place:
  // nbd::error_for). `detail` is human-readable context for logs.
  std::function<void(std::error_code ec, const std::string& detail)> done;
};

class BlockDevice {
 public:
  virtual ~BlockDevice() = default;
  virtual const DeviceInfo& info() const = 0;
  // The request must stay alive until its `done` has run.
  virtual void submit(IoRequest& request) = 0;
};

}  // namespace blockdev
