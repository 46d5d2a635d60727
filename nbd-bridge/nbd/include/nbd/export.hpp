// What the bridge advertises for each export (one per LUN), derived from the LUN's
// blockdev::DeviceInfo: transmission flags (proto.md, "Transmission flags") and block size
// constraints (proto.md, "Block size constraints" and NBD_INFO_BLOCK_SIZE).
#pragma once

#include <cstdint>
#include <string>

#include <blockdev/block_device.hpp>

namespace nbd {

struct BlockSizes {
  uint32_t minimum = 1;       // power of 2, <= 64 KiB: alignment of offset and length
  uint32_t preferred = 4096;  // power of 2, >= max(minimum, 512)
  uint32_t maximum = 0;       // multiple of minimum: largest READ/WRITE we accept
  friend bool operator==(const BlockSizes&, const BlockSizes&) = default;
};

// The one function that turns DeviceInfo into transmission flags. NBD_FLAG_SEND_DF is only
// legal once structured replies are negotiated (proto.md: "MUST leave this flag clear if
// structured replies have not been negotiated"); we never fragment a read, so DF is free.
uint16_t transmission_flags(const blockdev::DeviceInfo& info, bool structured_replies) noexcept;

// minimum = logical block size; preferred = max(physical block size, optimal transfer length
// rounded down to a power of 2 and capped at 1 MiB, 4096), never above maximum; maximum =
// max_transfer_bytes (0 = unreported) capped at 32 MiB, a multiple of minimum.
BlockSizes block_sizes(const blockdev::DeviceInfo& info) noexcept;

// One export as a handshake advertises it. Which export the empty name selects is the
// catalog's business (nbd/export_catalog.hpp).
struct ExportDescription {
  std::string name;
  std::string description;  // NBD_INFO_DESCRIPTION and NBD_REP_SERVER detail
  blockdev::DeviceInfo device;
};

}  // namespace nbd
