#include "iscsi_io/lu_probe.hpp"

#include <common/hex.hpp>
#include <scsi/error.hpp>
#include <scsi/inquiry.hpp>
#include <scsi/report_luns.hpp>

namespace iscsi_io {

namespace {

// INQUIRY allocation length for a VPD page: the largest page we read (VPD 0x83 with several
// designators) fits with room to spare.
constexpr uint32_t vpd_allocation = 4096;

}  // namespace

boost::asio::awaitable<std::error_code> read_identity_pages(DataInCommand run,
                                                            scsi::IdentityPages& pages,
                                                            std::string& detail) {
  pages = {};
  std::vector<std::byte> data;
  // One page into `data`. SPC-4 §6.6.1: a target rejects a page it does not support with CHECK
  // CONDITION (ILLEGAL REQUEST); for us that page is missing, and its empty data parses as
  // nullopt. Only a command that did not complete is an error.
  const auto read_page = [&](uint8_t page) -> boost::asio::awaitable<std::error_code> {
    auto ec = co_await run(scsi::inquiry(true, page, vpd_allocation), vpd_allocation, data, detail);
    if (!ec) co_return ec;
    data.clear();
    if (ec.category() == scsi::category()) co_return std::error_code{};
    const std::byte code{page};
    detail = "INQUIRY VPD 0x" + common::to_hex({&code, 1}) + ": " + detail;
    co_return ec;
  };
  if (auto ec = co_await read_page(scsi::vpd::supported_pages)) co_return ec;
  pages.supported = scsi::parse_supported_vpd_pages(data);
  if (scsi::identity_page_wanted(pages.supported, scsi::vpd::device_identification)) {
    if (auto ec = co_await read_page(scsi::vpd::device_identification)) co_return ec;
    pages.designators = scsi::parse_device_identification(data);
  }
  if (scsi::identity_page_wanted(pages.supported, scsi::vpd::unit_serial_number)) {
    if (auto ec = co_await read_page(scsi::vpd::unit_serial_number)) co_return ec;
    pages.serial = scsi::parse_unit_serial_number(data);
  }
  detail.clear();
  co_return std::error_code{};
}

boost::asio::awaitable<std::string> luns_on_target(DataInCommand run_at_lun0) {
  std::vector<std::byte> data;
  std::string detail;
  if (co_await run_at_lun0(scsi::report_luns(4096), 4096, data, detail)) co_return std::string{};
  const auto luns = scsi::parse_report_luns(data);
  if (!luns || luns->empty()) co_return std::string{};
  std::string list;
  for (const uint64_t raw : *luns) {
    const auto n = scsi::decode_lun(raw);
    list += (list.empty() ? "" : ", ") + (n ? std::to_string(*n) : std::string("?"));
  }
  co_return " (the target has LUN" + std::string(luns->size() > 1 ? "s " : " ") + list + ")";
}

}  // namespace iscsi_io
