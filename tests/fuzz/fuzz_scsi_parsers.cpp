// Every SCSI parameter-data parser (SPC-4, SBC-3, SBC-4 GET LBA STATUS) and the sense decoder on
// the same bytes, as a target may return any of them for any command. Also the sense-to-disposition
// mapping the path logic relies on, with the status byte taken from the input.
//
// Input: [status byte][parameter data...]
#include <string>
#include <vector>

#include <common/bytes.hpp>

#include <scsi/alua.hpp>
#include <scsi/capacity.hpp>
#include <scsi/error.hpp>
#include <scsi/inquiry.hpp>
#include <scsi/lba_status.hpp>
#include <scsi/mode_sense.hpp>
#include <scsi/report_luns.hpp>
#include <scsi/sense.hpp>
#include <scsi/status.hpp>

#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* raw, size_t size) {
  auto data = fuzz::as_bytes(raw, size);
  const fuzz::Prefix prefix(data, 1);
  const auto status = static_cast<scsi::Status>(prefix.u8(0));

  const auto sense = scsi::decode_sense(data);
  if (sense) {
    FUZZ_CHECK(sense->response_code >= 0x70 && sense->response_code <= 0x73);
    (void)scsi::sense_key_name(sense->key);
    (void)scsi::describe_asc(sense->asc, sense->ascq);
    // An ALUA state only from NOT READY 04/0A-0C (SPC-4 §5.16.2.4).
    if (const auto alua = scsi::alua_state_in_sense(*sense))
      FUZZ_CHECK(sense->key == scsi::SenseKey::not_ready && sense->asc == 0x04 &&
                 scsi::alua_state_name(*alua) != "reserved");
  }
  (void)scsi::status_name(status);
  (void)scsi::disposition_name(scsi::classify(status, sense));
  const std::error_code ec = scsi::make_error(status, sense);
  (void)ec.message();
  (void)scsi::status_of(ec);
  (void)scsi::sense_key_of(ec);
  (void)scsi::asc_of(ec);
  (void)scsi::ascq_of(ec);

  if (const auto inquiry = scsi::parse_standard_inquiry(data)) {
    FUZZ_CHECK(inquiry->vendor.size() <= 8);
    FUZZ_CHECK(inquiry->product.size() <= 16);
    FUZZ_CHECK(inquiry->revision.size() <= 4);
  }
  if (const auto total = scsi::vpd_page_total_length(data)) FUZZ_CHECK(*total >= 4);
  (void)scsi::parse_supported_vpd_pages(data);
  (void)scsi::parse_unit_serial_number(data);
  if (const auto designators = scsi::parse_device_identification(data))
    (void)scsi::wwid_from_designators(*designators);
  (void)scsi::parse_block_limits(data);
  (void)scsi::parse_logical_block_provisioning(data);

  (void)scsi::parse_read_capacity10(data);
  (void)scsi::parse_read_capacity16(data);
  (void)scsi::parse_mode_sense10_header(data);

  // GET LBA STATUS, asked for the first descriptor's LBA plus the status byte's low nibble
  // and an allocation length of the data's size plus its high nibble (often a cut list).
  if (data.size() >= 16) {
    const uint64_t lba = common::load_be64(data, 8) + (prefix.u8(0) & 0x0F);
    const auto allocation = static_cast<uint32_t>(data.size() + (prefix.u8(0) >> 4));
    std::vector<scsi::LbaStatusDescriptor> descriptors;
    std::string error;
    if (scsi::parse_lba_status(data, lba, allocation, descriptors, error)) {
      FUZZ_CHECK(!descriptors.empty());
      FUZZ_CHECK(descriptors.size() <= (allocation - 8) / 16);
      FUZZ_CHECK(descriptors[0].lba <= lba && lba - descriptors[0].lba < descriptors[0].blocks);
      for (size_t i = 0; i < descriptors.size(); ++i) {
        FUZZ_CHECK(descriptors[i].blocks > 0 && descriptors[i].provisioning_status < 16);
        if (i > 0)
          FUZZ_CHECK(descriptors[i].lba >= descriptors[i - 1].lba + descriptors[i - 1].blocks);
      }
    } else {
      FUZZ_CHECK(!error.empty());
    }
  }

  if (const auto total = scsi::report_luns_total_length(data)) FUZZ_CHECK(*total >= 8);
  if (const auto luns = scsi::parse_report_luns(data)) {
    for (uint64_t lun : *luns) {
      // Targets may use any of the three forms; ours decodes back to the same number.
      if (const auto n = scsi::decode_lun(lun))
        FUZZ_CHECK(scsi::decode_lun(scsi::encode_lun(*n)) == n);
    }
  }

  (void)scsi::report_target_port_groups_total_length(data);
  if (const auto groups = scsi::parse_report_target_port_groups(data)) {
    for (const auto& group : *groups) (void)scsi::alua_state_name(group.state);
  }
  return 0;
}
