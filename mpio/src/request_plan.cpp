#include "mpio/request_plan.hpp"

#include <algorithm>
#include <array>

#include <scsi/error.hpp>
#include <scsi/lba_status.hpp>

namespace mpio {

PlannedCommand& CommandPlan::add() {
  if (size_ == slots_.size()) slots_.emplace_back();
  PlannedCommand& c = slots_[size_++];
  c.cdb = {};
  c.data = PlannedCommand::Data::none;
  c.buffer_offset = 0;
  c.buffer_length = 0;
  c.parameter_data.clear();
  return c;
}

bool get_lba_status_unsupported(const std::error_code& ec) {
  if (!ec || ec.category() != scsi::category() ||
      scsi::sense_key_of(ec) != scsi::SenseKey::illegal_request)
    return false;
  return scsi::asc_of(ec) == 0x20 || scsi::asc_of(ec) == 0x24;
}

bool pre_fetch_unsupported(const std::error_code& ec) {
  return ec && ec.category() == scsi::category() &&
         scsi::sense_key_of(ec) == scsi::SenseKey::illegal_request && scsi::asc_of(ec) == 0x20;
}

std::error_code block_status_extents(std::span<const std::byte> data,
                                     const blockdev::IoRequest& request,
                                     const CommandLimits& limits,
                                     std::vector<blockdev::Extent>& out, std::string& detail) {
  out.clear();
  if (!limits.block_status) {
    out.push_back({request.length, 0});
    return {};
  }
  const uint32_t bs = limits.block_size;
  const uint64_t first = request.offset / bs;
  const uint64_t end = first + request.length / bs;
  std::vector<scsi::LbaStatusDescriptor> descriptors;
  if (!scsi::parse_lba_status(data, first, kLbaStatusAllocationLength, descriptors, detail))
    return std::make_error_code(std::errc::protocol_error);
  uint64_t at = first;
  for (const scsi::LbaStatusDescriptor& d : descriptors) {
    if (at >= end || d.lba > at) break;  // done, or a gap: what follows is not known
    const uint64_t stop = std::min(end, d.lba + d.blocks);
    uint32_t flags = 0;
    // SBC-4 §4.7.1: deallocated and anchored blocks are both unmapped; LBPRZ says what
    // reading them returns.
    if (d.provisioning_status == static_cast<uint8_t>(scsi::ProvisioningStatus::deallocated) ||
        d.provisioning_status == static_cast<uint8_t>(scsi::ProvisioningStatus::anchored)) {
      flags = blockdev::Extent::hole | (limits.unmapped_reads_zero ? blockdev::Extent::zero : 0);
    }
    const uint64_t length = (stop - at) * bs;
    if (!out.empty() && out.back().flags == flags) {
      out.back().length += length;
    } else {
      out.push_back({length, flags});
    }
    at = stop;
  }
  return {};
}

scsi::Cdb synchronize_cache_cdb(const CommandLimits& limits) {
  // SBC-3 §5.22: LBA 0 with 0 blocks covers the whole medium.
  return limits.synchronize_cache16 ? scsi::synchronize_cache16(0, 0)
                                    : scsi::synchronize_cache10(0, 0);
}

bool synchronize_cache16_unsupported(const std::error_code& ec) {
  return ec && ec.category() == scsi::category() &&
         scsi::sense_key_of(ec) == scsi::SenseKey::illegal_request && scsi::asc_of(ec) == 0x20;
}

namespace {

void plan_transfer(const blockdev::IoRequest& request, const CommandLimits& limits,
                   CommandPlan& plan) {
  const bool write = request.op == blockdev::IoOp::write;
  const uint32_t bs = limits.block_size;
  const uint64_t first_lba = request.offset / bs;
  for (uint64_t done = 0; done < request.length;) {
    const uint32_t n =
        static_cast<uint32_t>(std::min<uint64_t>(limits.command_bytes, request.length - done));
    PlannedCommand& c = plan.add();
    const uint64_t lba = first_lba + done / bs;
    // SBC-3 §5.39: FUA on every piece, so each is durable when it completes, as the whole
    // request must be.
    c.cdb = write ? scsi::write16(lba, n / bs, request.fua) : scsi::read16(lba, n / bs, false);
    c.data =
        write ? PlannedCommand::Data::write_from_buffer : PlannedCommand::Data::read_into_buffer;
    c.buffer_offset = done;
    c.buffer_length = n;
    done += n;
  }
}

// SBC-3 §5.28: at most MAXIMUM UNMAP LBA COUNT blocks per descriptor and MAXIMUM UNMAP BLOCK
// DESCRIPTOR COUNT descriptors per command.
void plan_unmap(const blockdev::IoRequest& request, const CommandLimits& limits,
                CommandPlan& plan) {
  const uint32_t bs = limits.block_size;
  const uint64_t per_descriptor = std::max<uint32_t>(limits.max_unmap_lba_count, 1);
  const size_t per_command = std::clamp<uint32_t>(limits.max_unmap_descriptor_count, 1, 255);
  std::array<scsi::UnmapDescriptor, 255> descriptors;
  size_t count = 0;
  auto emit = [&] {
    PlannedCommand& c = plan.add();
    c.parameter_data = scsi::unmap_parameter_list(std::span(descriptors.data(), count));
    c.cdb = scsi::unmap(static_cast<uint16_t>(c.parameter_data.size()));
    c.data = PlannedCommand::Data::write_parameter_data;
    count = 0;
  };
  uint64_t blocks = request.length / bs;
  uint64_t lba = request.offset / bs;
  while (blocks > 0) {
    const uint32_t n = static_cast<uint32_t>(std::min(blocks, per_descriptor));
    descriptors[count++] = {lba, n};
    lba += n;
    blocks -= n;
    if (count == per_command) emit();
  }
  if (count > 0) emit();
}

// SBC-3 §5.50: WRITE SAME(16) with one block of zeros, split by MAXIMUM WRITE SAME LENGTH;
// UNMAP=1 lets a thin LU deallocate when the client allows holes.
void plan_write_zeroes(const blockdev::IoRequest& request, const CommandLimits& limits,
                       CommandPlan& plan) {
  const uint32_t bs = limits.block_size;
  const uint64_t per_command = limits.max_write_same_length > 0
                                   ? std::min<uint64_t>(limits.max_write_same_length, 0xffffffffu)
                                   : 65535;
  const bool unmap = request.may_unmap && limits.write_zeroes_may_unmap;
  uint64_t blocks = request.length / bs;
  uint64_t lba = request.offset / bs;
  while (blocks > 0) {
    const uint32_t n = static_cast<uint32_t>(std::min(blocks, per_command));
    PlannedCommand& c = plan.add();
    c.cdb = scsi::write_same16(lba, n, unmap);
    c.parameter_data.assign(bs, std::byte{0});
    c.data = PlannedCommand::Data::write_parameter_data;
    lba += n;
    blocks -= n;
  }
}

}  // namespace

void plan_request(const blockdev::IoRequest& request, const CommandLimits& limits,
                  CommandPlan& plan) {
  plan.clear();
  switch (request.op) {
    case blockdev::IoOp::read:
    case blockdev::IoOp::write:
      plan_transfer(request, limits, plan);
      break;
    case blockdev::IoOp::flush:
      plan.add().cdb = synchronize_cache_cdb(limits);
      break;
    case blockdev::IoOp::trim:
      plan_unmap(request, limits, plan);
      break;
    case blockdev::IoOp::write_zeroes:
      plan_write_zeroes(request, limits, plan);
      break;
    case blockdev::IoOp::cache:
      if (limits.pre_fetch) {
        const uint32_t bs = limits.block_size;
        uint64_t blocks = request.length / bs;
        uint64_t lba = request.offset / bs;
        while (blocks > 0) {
          const auto n = static_cast<uint32_t>(std::min<uint64_t>(blocks, 0xffffffffu));
          plan.add().cdb = scsi::pre_fetch16(lba, n);
          lba += n;
          blocks -= n;
        }
      }
      break;
    case blockdev::IoOp::block_status:
      if (limits.block_status) {
        PlannedCommand& c = plan.add();
        c.cdb =
            scsi::get_lba_status(request.offset / limits.block_size, kLbaStatusAllocationLength);
        c.data = PlannedCommand::Data::read_parameter_data;
        c.buffer_length = kLbaStatusAllocationLength;
      }
      break;
  }
}

LuMapping map_lu(const ProbedLu& lu, const CommandSizeSources& sizes) {
  LuMapping m;
  blockdev::DeviceInfo& info = m.info;
  const uint32_t block_length = lu.block_length;
  const scsi::BlockLimits l = lu.block_limits.value_or(scsi::BlockLimits{});
  info.logical_block_size = block_length;
  info.physical_block_size = block_length << std::min<uint8_t>(lu.logical_per_physical_exponent, 7);
  info.size_bytes = lu.blocks * block_length;
  info.read_only = lu.write_protected;
  info.supports_fua = lu.dpofua;
  // One command carries at most the LU's MAXIMUM TRANSFER LENGTH (VPD 0xB0) and our cap;
  // larger requests are split into commands issued together. Without a configured cap, one
  // command is one burst: a READ of several MaxBurstLength is several Data-In sequences that
  // the target serves one after another inside one task, and a WRITE waits for an R2T per
  // burst (MaxOutstandingR2T is often 1), while commands of one burst each run side by side.
  // A target with an entry in the built-in table (target_quirks.cpp) gets that entry's size.
  uint64_t limit = std::clamp<uint64_t>(sizes.max_burst_length, 64u << 10, 8u << 20);
  m.command_bytes_source = "one MaxBurstLength";
  if (sizes.configured_bytes > 0) {
    limit = sizes.configured_bytes;
    m.command_bytes_source = "multipath.max_sectors_kb";
  } else if (sizes.quirk && sizes.quirk->max_command_bytes > 0) {
    limit = sizes.quirk->max_command_bytes;
    m.command_bytes_source =
        std::string("built-in default for ") + std::string(sizes.quirk->target);
  }
  if (lu.block_limits && l.max_transfer_length_blocks > 0 &&
      uint64_t{l.max_transfer_length_blocks} * block_length < limit) {
    limit = uint64_t{l.max_transfer_length_blocks} * block_length;
    m.command_bytes_source = "the LU's MAXIMUM TRANSFER LENGTH";
  }
  const auto command_bytes =
      static_cast<uint32_t>(std::max<uint64_t>(limit / block_length, 1) * block_length);
  info.max_transfer_bytes = std::max<uint32_t>(command_bytes, 32u << 20);
  if (lu.block_limits && l.optimal_transfer_length_blocks > 0)
    info.optimal_transfer_bytes = static_cast<uint32_t>(std::min<uint64_t>(
        uint64_t{l.optimal_transfer_length_blocks} * block_length, command_bytes));
  // SBC-3 §5.28/§5.50: UNMAP needs LBPU in VPD 0xB2 (and a thin LU, LBPME); WRITE SAME(16)
  // is used for zeroing whenever the LU reports a WRITE SAME limit or LBPWS.
  const bool lbpu = lu.provisioning && lu.provisioning->lbpu;
  const bool lbpws = lu.provisioning && lu.provisioning->lbpws;
  info.supports_trim = !lu.write_protected && lbpu && lu.lbpme && lu.block_limits &&
                       l.max_unmap_lba_count > 0 && l.max_unmap_descriptor_count > 0;
  info.write_zeroes_may_unmap = lbpws && lu.lbpme;
  info.supports_write_zeroes =
      !lu.write_protected &&
      ((lu.block_limits && l.max_write_same_length > 0) || info.write_zeroes_may_unmap);
  // SBC-4 §5.8: GET LBA STATUS reports provisioning of a thin LU (LBPME), whose Logical Block
  // Provisioning VPD page (0xB2) says what its unmapped blocks read as (LBPRZ, as READ
  // CAPACITY(16) does).
  info.supports_block_status = lu.lbpme && lu.provisioning.has_value();
  m.limits.block_status = info.supports_block_status;
  m.limits.unmapped_reads_zero = lu.lbprz || (lu.provisioning && lu.provisioning->lbprz);
  // proto.md NBD_CMD_FLAG_FAST_ZERO: fast only when no data is written, i.e. WRITE SAME(16)
  // with UNMAP=1 deallocates (SBC-4 §5.50) and deallocated blocks read as zeros (LBPRZ).
  // Anywhere else WRITE SAME may write every block, no faster than NBD_CMD_WRITE.
  info.fast_zero =
      info.supports_write_zeroes && info.write_zeroes_may_unmap && m.limits.unmapped_reads_zero;

  // SBC-4 makes PRE-FETCH optional and REPORT SUPPORTED OPERATION CODES too: CACHE is
  // advertised, and the first refusal (pre_fetch_unsupported) withdraws it.
  info.supports_cache = true;
  m.limits.block_size = block_length;
  m.limits.command_bytes = command_bytes;
  m.limits.max_unmap_lba_count = l.max_unmap_lba_count;
  m.limits.max_unmap_descriptor_count = l.max_unmap_descriptor_count;
  m.limits.max_write_same_length = l.max_write_same_length;
  m.limits.write_zeroes_may_unmap = info.write_zeroes_may_unmap;
  return m;
}

}  // namespace mpio
