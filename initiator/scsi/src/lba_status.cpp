#include "scsi/lba_status.hpp"

#include <common/bytes.hpp>

namespace scsi {

bool parse_lba_status(std::span<const std::byte> data, uint64_t starting_lba,
                      uint32_t allocation_length, std::vector<LbaStatusDescriptor>& out,
                      std::string& error) {
  out.clear();
  if (data.size() > allocation_length) {
    error = "GET LBA STATUS returned more data than the allocation length";
    return false;
  }
  if (data.size() < kLbaStatusHeaderSize) {
    error = "GET LBA STATUS data shorter than its 8-byte header";
    return false;
  }
  // PARAMETER DATA LENGTH counts the bytes after itself: 4 more header bytes, then descriptors.
  const uint64_t declared = uint64_t{common::load_be32(data, 0)} + 4;
  if (declared < kLbaStatusHeaderSize + kLbaStatusDescriptorSize ||
      (declared - kLbaStatusHeaderSize) % kLbaStatusDescriptorSize != 0) {
    error = "GET LBA STATUS PARAMETER DATA LENGTH " + std::to_string(declared - 4) +
            " is not 4 + 16n with n >= 1";
    return false;
  }
  // Shorter than declared only when the allocation length cut it (SPC-4 §4.2.5.6).
  const bool truncated = declared > data.size();
  if (truncated && data.size() != allocation_length) {
    error = "GET LBA STATUS data shorter than its PARAMETER DATA LENGTH";
    return false;
  }
  if (!truncated && declared != data.size()) {
    error = "GET LBA STATUS data longer than its PARAMETER DATA LENGTH";
    return false;
  }
  const size_t count = (data.size() - kLbaStatusHeaderSize) / kLbaStatusDescriptorSize;
  if (count == 0) {
    error = "GET LBA STATUS allocation length holds no descriptor";
    return false;
  }
  out.reserve(count);
  uint64_t next = 0;
  for (size_t i = 0; i < count; ++i) {
    const size_t at = kLbaStatusHeaderSize + i * kLbaStatusDescriptorSize;
    LbaStatusDescriptor d;
    d.lba = common::load_be64(data, at);
    d.blocks = common::load_be32(data, at + 8);
    d.provisioning_status = common::load_u8(data, at + 12) & 0x0F;
    const std::string which = "LBA status descriptor " + std::to_string(i);
    if (d.blocks == 0) {
      error = which + " covers no blocks";
      return false;
    }
    if (d.lba > UINT64_MAX - d.blocks) {
      error = which + " runs past the last possible LBA";
      return false;
    }
    if (i == 0 && (starting_lba < d.lba || starting_lba - d.lba >= d.blocks)) {
      error = "the first LBA status descriptor does not contain the starting LBA " +
              std::to_string(starting_lba);
      return false;
    }
    if (i > 0 && d.lba < next) {
      error = which + " overlaps or precedes the one before it";
      return false;
    }
    next = d.lba + d.blocks;
    out.push_back(d);
  }
  return true;
}

}  // namespace scsi
