#include "scsi/inquiry.hpp"

#include <algorithm>

#include <common/bytes.hpp>

namespace scsi {
namespace {

using common::load_u8;

std::string trimmed(common::ConstBytes bytes) {
  auto text = common::as_chars(bytes);
  auto padding = [](char c) { return c == ' ' || c == '\0'; };
  while (!text.empty() && padding(text.front())) text.remove_prefix(1);
  while (!text.empty() && padding(text.back())) text.remove_suffix(1);
  return std::string(text);
}

// SPC-4 §7.8.1, Table 470: the 4-byte VPD page header. Returns the page body (after the header,
// PAGE LENGTH bytes) if the page is `page` and complete.
std::optional<common::ConstBytes> vpd_body(common::ConstBytes data, uint8_t page) {
  if (data.size() < 4 || load_u8(data, 1) != page) return std::nullopt;
  const size_t length = common::load_be16(data, 2);
  if (data.size() < 4 + length) return std::nullopt;
  return data.subspan(4, length);
}

std::string lower_hex(common::ConstBytes bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s;
  for (auto b : bytes) {
    s += digits[std::to_integer<unsigned>(b) >> 4];
    s += digits[std::to_integer<unsigned>(b) & 0xF];
  }
  return s;
}

// Rank of a designator for the WWID (higher wins, 0 = not usable), after multipath-tools.
int wwid_rank(const Designator& d) {
  if (d.association != 0) return 0;
  switch (d.type) {
    case designator_type::naa: {
      if (d.value.empty()) return 0;
      // SPC-4 §7.8.6.6: the NAA field (top nibble) fixes the designator's length.
      switch (std::to_integer<unsigned>(d.value[0]) >> 4) {
        case 6:
          return d.value.size() == 16 ? 8 : 0;
        case 5:
          return d.value.size() == 8 ? 7 : 0;
        case 2:
          return d.value.size() == 8 ? 6 : 0;
        case 3:
          return d.value.size() == 8 ? 1 : 0;
        default:
          return 0;
      }
    }
    case designator_type::eui64:
      return (d.value.size() == 8 || d.value.size() == 12 || d.value.size() == 16) ? 4 : 0;
    case designator_type::scsi_name_string: {
      auto text = common::as_chars(d.value);
      const bool known =
          text.starts_with("naa.") || text.starts_with("eui.") || text.starts_with("iqn.");
      return known ? 3 : 0;
    }
    case designator_type::t10_vendor_id:
      return d.value.size() >= 8 ? 2 : 0;
    default:
      return 0;
  }
}

}  // namespace

std::optional<StandardInquiry> parse_standard_inquiry(std::span<const std::byte> data) {
  if (data.size() < 36) return std::nullopt;
  StandardInquiry inq;
  inq.peripheral_qualifier = load_u8(data, 0) >> 5;
  inq.device_type = load_u8(data, 0) & 0x1F;
  inq.version = load_u8(data, 2);
  inq.tpgs = (load_u8(data, 5) >> 4) & 0x03;
  inq.cmdque = (load_u8(data, 7) & 0x02) != 0;
  inq.vendor = trimmed(data.subspan(8, 8));
  inq.product = trimmed(data.subspan(16, 16));
  inq.revision = trimmed(data.subspan(32, 4));
  return inq;
}

std::optional<size_t> vpd_page_total_length(std::span<const std::byte> data) {
  if (data.size() < 4) return std::nullopt;
  return size_t{4} + common::load_be16(data, 2);
}

std::optional<std::vector<uint8_t>> parse_supported_vpd_pages(std::span<const std::byte> data) {
  auto body = vpd_body(data, vpd::supported_pages);
  if (!body) return std::nullopt;
  std::vector<uint8_t> pages;
  for (auto b : *body) pages.push_back(std::to_integer<uint8_t>(b));
  return pages;
}

std::optional<std::string> parse_unit_serial_number(std::span<const std::byte> data) {
  auto body = vpd_body(data, vpd::unit_serial_number);
  if (!body) return std::nullopt;
  return trimmed(*body);
}

std::optional<std::vector<Designator>> parse_device_identification(
    std::span<const std::byte> data) {
  auto body = vpd_body(data, vpd::device_identification);
  if (!body) return std::nullopt;
  std::vector<Designator> out;
  size_t off = 0;
  while (off < body->size()) {
    if (off + 4 > body->size()) return std::nullopt;
    const size_t length = load_u8(*body, off + 3);
    if (off + 4 + length > body->size()) return std::nullopt;
    Designator d;
    d.protocol_id = load_u8(*body, off) >> 4;
    d.code_set = load_u8(*body, off) & 0x0F;
    d.piv = (load_u8(*body, off + 1) & 0x80) != 0;
    d.association = (load_u8(*body, off + 1) >> 4) & 0x03;
    d.type = load_u8(*body, off + 1) & 0x0F;
    auto value = body->subspan(off + 4, length);
    d.value.assign(value.begin(), value.end());
    out.push_back(std::move(d));
    off += 4 + length;
  }
  return out;
}

std::string wwid_from_designators(const std::vector<Designator>& designators) {
  const Designator* best = nullptr;
  int best_rank = 0;
  for (const auto& d : designators) {
    const int rank = wwid_rank(d);
    if (rank > best_rank) {
      best = &d;
      best_rank = rank;
    }
  }
  if (!best) return {};

  auto value = std::span<const std::byte>(best->value);
  switch (best->type) {
    case designator_type::naa:
      return "3" + lower_hex(value);
    case designator_type::eui64:
      return "2" + lower_hex(value);
    case designator_type::scsi_name_string: {
      // SPC-4 §7.8.6.11: null-terminated and null-padded to a multiple of 4 bytes.
      // The "naa."/"eui."/"iqn." prefix becomes the type digit, as multipath-tools does.
      auto text = common::as_chars(value);
      text = text.substr(0, text.find('\0'));
      std::string rest(text.substr(4));
      if (text.starts_with("iqn.")) return "8" + rest;
      std::transform(rest.begin(), rest.end(), rest.begin(),
                     [](char c) { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; });
      return (text.starts_with("naa.") ? "3" : "2") + rest;
    }
    case designator_type::t10_vendor_id: {
      std::string out = "1";
      auto text = common::as_chars(value);
      text = text.substr(0, text.find('\0'));
      bool in_spaces = false;
      for (char c : text) {
        if (c == ' ') {
          in_spaces = true;
          continue;
        }
        if (in_spaces) out += '_';
        in_spaces = false;
        out += c;
      }
      return out;
    }
    default:
      return {};
  }
}

std::optional<BlockLimits> parse_block_limits(std::span<const std::byte> data) {
  auto body = vpd_body(data, vpd::block_limits);
  if (!body) return std::nullopt;
  // Offsets below are from the start of the page (SBC-3 Table 183); `page` holds what was
  // declared, so a field is read only if the declared page reaches its end.
  const auto page = data.first(4 + body->size());
  auto has = [&](size_t end) { return page.size() >= end; };
  BlockLimits limits;
  if (has(5)) limits.wsnz = (load_u8(page, 4) & 0x01) != 0;
  if (has(6)) limits.max_compare_and_write_length = load_u8(page, 5);
  if (has(8)) limits.optimal_transfer_length_granularity = common::load_be16(page, 6);
  if (has(12)) limits.max_transfer_length_blocks = common::load_be32(page, 8);
  if (has(16)) limits.optimal_transfer_length_blocks = common::load_be32(page, 12);
  if (has(24)) limits.max_unmap_lba_count = common::load_be32(page, 20);
  if (has(28)) limits.max_unmap_descriptor_count = common::load_be32(page, 24);
  if (has(32)) limits.optimal_unmap_granularity = common::load_be32(page, 28);
  if (has(36)) {
    const uint32_t word = common::load_be32(page, 32);
    limits.ugavalid = (word & 0x80000000u) != 0;
    limits.unmap_granularity_alignment = word & 0x7FFFFFFFu;
  }
  if (has(44)) limits.max_write_same_length = common::load_be64(page, 36);
  return limits;
}

std::optional<LogicalBlockProvisioning> parse_logical_block_provisioning(
    std::span<const std::byte> data) {
  auto body = vpd_body(data, vpd::logical_block_provisioning);
  if (!body || body->size() < 4) return std::nullopt;
  LogicalBlockProvisioning lbp;
  lbp.threshold_exponent = load_u8(data, 4);
  const uint8_t flags = load_u8(data, 5);
  lbp.lbpu = (flags & 0x80) != 0;
  lbp.lbpws = (flags & 0x40) != 0;
  lbp.lbpws10 = (flags & 0x20) != 0;
  // SBC-4 widened LBPRZ to bits 4-2; its low bit keeps the SBC-3 meaning (001b: zeros).
  lbp.lbprz = (flags & 0x04) != 0;
  lbp.anc_sup = (flags & 0x02) != 0;
  lbp.dp = (flags & 0x01) != 0;
  lbp.provisioning_type = load_u8(data, 6) & 0x07;
  return lbp;
}

}  // namespace scsi
