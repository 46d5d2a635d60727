#include "nbd/export.hpp"

#include <algorithm>
#include <bit>

#include "nbd/wire.hpp"

namespace nbd {

uint16_t transmission_flags(const blockdev::DeviceInfo& info, bool structured_replies) noexcept {
  uint16_t flags = kFlagHasFlags;
  if (info.read_only) flags |= kFlagReadOnly;
  // SYNCHRONIZE CACHE always exists on the target, and a FLUSH reaches the LUN's cache that
  // every connection shares, hence CAN_MULTI_CONN (proto.md: flush effects "MUST be visible
  // across all connections").
  flags |= kFlagSendFlush | kFlagCanMultiConn;
  if (info.supports_fua) flags |= kFlagSendFua;
  if (info.supports_trim && !info.read_only) flags |= kFlagSendTrim;
  if (info.supports_write_zeroes && !info.read_only) {
    // FAST_ZERO is advertised with WRITE_ZEROES: on a LU without DeviceInfo::fast_zero such
    // requests get NBD_ENOTSUP at once, which is a valid answer (proto.md
    // NBD_CMD_FLAG_FAST_ZERO) and tells the client to write the zeros itself.
    flags |= kFlagSendWriteZeroes | kFlagSendFastZero;
  }
  if (info.supports_cache) flags |= kFlagSendCache;
  if (structured_replies) flags |= kFlagSendDf;
  return flags;
}

BlockSizes block_sizes(const blockdev::DeviceInfo& info) noexcept {
  BlockSizes sizes;
  const uint32_t lbs = info.logical_block_size;
  sizes.minimum = (std::has_single_bit(lbs) && lbs <= kMaxMinimumBlockSize) ? lbs : 512;

  uint32_t maximum = info.max_transfer_bytes == 0
                         ? kMaxPayloadBytes
                         : std::min(info.max_transfer_bytes, kMaxPayloadBytes);
  maximum -= maximum % sizes.minimum;
  sizes.maximum = std::max(maximum, sizes.minimum);

  constexpr uint32_t kPreferredCap = 1u << 20;
  uint32_t preferred = std::max<uint32_t>(sizes.minimum, 4096);
  if (std::has_single_bit(info.physical_block_size) && info.physical_block_size <= kPreferredCap) {
    preferred = std::max(preferred, info.physical_block_size);
  }
  if (info.optimal_transfer_bytes != 0) {
    preferred =
        std::max(preferred, std::bit_floor(std::min(info.optimal_transfer_bytes, kPreferredCap)));
  }
  // "maximum ... MUST be at least as large as the smaller of the preferred block size or export
  // size": shrink preferred (not below max(minimum, 512)) rather than promise more than the
  // device takes.
  const uint32_t preferred_floor = std::max<uint32_t>(sizes.minimum, 512);
  while (preferred > sizes.maximum && preferred > preferred_floor) preferred /= 2;
  sizes.preferred = preferred;
  if (sizes.maximum < sizes.preferred) sizes.maximum = sizes.preferred;
  return sizes;
}

}  // namespace nbd
