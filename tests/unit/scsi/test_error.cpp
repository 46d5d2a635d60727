#include <catch2/catch.hpp>

#include <scsi/error.hpp>

#include "scsi_test_support.hpp"

using scsi::Disposition;
using scsi::SenseKey;
using scsi::Status;

namespace {

std::optional<scsi::Sense> sense(SenseKey key, uint8_t asc, uint8_t ascq, bool deferred = false) {
  scsi::Sense s;
  s.response_code = deferred ? 0x71 : 0x70;
  s.key = key;
  s.asc = asc;
  s.ascq = ascq;
  s.deferred = deferred;
  return s;
}

std::error_code check_condition(SenseKey key, uint8_t asc, uint8_t ascq) {
  return scsi::make_error(Status::check_condition, sense(key, asc, ascq));
}

}  // namespace

TEST_CASE("error_code packs status, key, ASC and ASCQ", "[scsi]") {
  auto ec = check_condition(SenseKey::medium_error, 0x11, 0x00);
  REQUIRE(ec);
  CHECK(ec.category().name() == std::string("scsi"));
  CHECK(ec.category() == scsi::category());
  CHECK(ec.value() == 0x02031100);
  CHECK(scsi::status_of(ec) == Status::check_condition);
  CHECK(scsi::sense_key_of(ec) == SenseKey::medium_error);
  CHECK(scsi::asc_of(ec) == 0x11);
  CHECK(scsi::ascq_of(ec) == 0x00);

  auto ua = check_condition(SenseKey::unit_attention, 0x2A, 0x09);
  CHECK(ua.value() == 0x02062A09);
  CHECK(scsi::ascq_of(ua) == 0x09);

  // TASK ABORTED (40h) is the largest status byte we name: the value stays positive.
  auto aborted = scsi::make_error(Status::task_aborted, std::nullopt);
  CHECK(aborted.value() == 0x40000000);
  CHECK(scsi::status_of(aborted) == Status::task_aborted);
}

TEST_CASE("GOOD and CONDITION MET are not errors", "[scsi]") {
  CHECK_FALSE(scsi::make_error(Status::good, std::nullopt));
  CHECK_FALSE(scsi::make_error(Status::condition_met, std::nullopt));
  CHECK_FALSE(scsi::make_error(Status::good, sense(SenseKey::recovered_error, 0x17, 0x01)));
}

TEST_CASE("accessors on a foreign error_code", "[scsi]") {
  auto ec = std::make_error_code(std::errc::io_error);
  CHECK(scsi::status_of(ec) == Status::good);
  CHECK(scsi::sense_key_of(ec) == SenseKey::no_sense);
  CHECK(scsi::asc_of(ec) == 0);
  CHECK(scsi::ascq_of(ec) == 0);
}

TEST_CASE("error messages", "[scsi]") {
  CHECK(check_condition(SenseKey::medium_error, 0x11, 0x00).message() ==
        "CHECK CONDITION: MEDIUM ERROR, unrecovered read error (11/00)");
  CHECK(check_condition(SenseKey::not_ready, 0x04, 0x0B).message() ==
        "CHECK CONDITION: NOT READY, logical unit not accessible, target port in standby "
        "state (04/0B)");
  CHECK(check_condition(SenseKey::illegal_request, 0x5E, 0x01).message() ==
        "CHECK CONDITION: ILLEGAL REQUEST, ASC 5E ASCQ 01 (5E/01)");
  CHECK(scsi::make_error(Status::reservation_conflict, std::nullopt).message() ==
        "RESERVATION CONFLICT");
  CHECK(scsi::make_error(Status::busy, std::nullopt).message() == "BUSY");
  CHECK(scsi::make_error(Status::task_set_full, std::nullopt).message() == "TASK SET FULL");
  CHECK(scsi::make_error(Status::check_condition, std::nullopt).message() ==
        "CHECK CONDITION: NO SENSE, no additional sense information (00/00)");
  CHECK(scsi::make_error(static_cast<Status>(0x22), std::nullopt).message() == "STATUS 0x22");
}

TEST_CASE("error conditions for the NBD side", "[scsi]") {
  CHECK(check_condition(SenseKey::medium_error, 0x11, 0x00) == std::errc::io_error);
  CHECK(check_condition(SenseKey::hardware_error, 0x44, 0x00) == std::errc::io_error);
  CHECK(check_condition(SenseKey::not_ready, 0x3A, 0x00) == std::errc::io_error);
  CHECK(check_condition(SenseKey::aborted_command, 0x47, 0x05) == std::errc::io_error);
  CHECK(check_condition(SenseKey::unit_attention, 0x29, 0x00) == std::errc::io_error);
  CHECK(check_condition(SenseKey::miscompare, 0x1D, 0x00) == std::errc::io_error);
  CHECK(check_condition(SenseKey::illegal_request, 0x24, 0x00) == std::errc::invalid_argument);
  CHECK(check_condition(SenseKey::illegal_request, 0x21, 0x00) == std::errc::invalid_argument);
  CHECK(check_condition(SenseKey::data_protect, 0x27, 0x00) == std::errc::read_only_file_system);
  CHECK(check_condition(SenseKey::data_protect, 0x27, 0x07) == std::errc::no_space_on_device);
  CHECK(scsi::make_error(Status::reservation_conflict, std::nullopt) ==
        std::errc::permission_denied);
  CHECK(scsi::make_error(Status::busy, std::nullopt) == std::errc::resource_unavailable_try_again);
  CHECK(scsi::make_error(Status::task_set_full, std::nullopt) ==
        std::errc::resource_unavailable_try_again);
  CHECK(scsi::make_error(Status::task_aborted, std::nullopt) == std::errc::io_error);
  CHECK(scsi::make_error(Status::check_condition, std::nullopt) == std::errc::io_error);
  // Different conditions really differ.
  CHECK_FALSE(check_condition(SenseKey::medium_error, 0x11, 0x00) == std::errc::invalid_argument);
}

TEST_CASE("classify: statuses", "[scsi]") {
  CHECK(scsi::classify(Status::good, std::nullopt) == Disposition::success);
  CHECK(scsi::classify(Status::condition_met, std::nullopt) == Disposition::success);
  CHECK(scsi::classify(Status::busy, std::nullopt) == Disposition::retry_same_path);
  CHECK(scsi::classify(Status::task_set_full, std::nullopt) == Disposition::retry_same_path);
  CHECK(scsi::classify(Status::task_aborted, std::nullopt) == Disposition::retry_same_path);
  CHECK(scsi::classify(Status::aca_active, std::nullopt) == Disposition::retry_same_path);
  CHECK(scsi::classify(Status::reservation_conflict, std::nullopt) == Disposition::target_error);
  CHECK(scsi::classify(Status::check_condition, std::nullopt) == Disposition::retry_same_path);
  CHECK(scsi::classify(static_cast<Status>(0x22), std::nullopt) == Disposition::target_error);
}

TEST_CASE("classify: CHECK CONDITION by sense", "[scsi]") {
  auto cc = [](SenseKey key, uint8_t asc, uint8_t ascq, bool deferred = false) {
    return scsi::classify(Status::check_condition, sense(key, asc, ascq, deferred));
  };
  // ALUA: this port group cannot serve the LU now.
  CHECK(cc(SenseKey::not_ready, 0x04, 0x0A) == Disposition::retry_same_path);  // transitioning
  CHECK(cc(SenseKey::not_ready, 0x04, 0x0B) == Disposition::path_error);
  CHECK(cc(SenseKey::not_ready, 0x04, 0x0C) == Disposition::path_error);
  // Becoming ready: wait on the same path.
  CHECK(cc(SenseKey::not_ready, 0x04, 0x01) == Disposition::retry_same_path);
  CHECK(cc(SenseKey::not_ready, 0x04, 0x14) == Disposition::retry_same_path);
  // Other NOT READY: path down, as the tur checker says.
  CHECK(cc(SenseKey::not_ready, 0x04, 0x03) == Disposition::path_error);
  CHECK(cc(SenseKey::not_ready, 0x3A, 0x00) == Disposition::path_error);
  // LUN unmapped behind this port.
  CHECK(cc(SenseKey::illegal_request, 0x25, 0x00) == Disposition::path_error);
  CHECK(cc(SenseKey::aborted_command, 0x47, 0x05) == Disposition::path_error);
  CHECK(cc(SenseKey::aborted_command, 0x00, 0x00) == Disposition::path_error);
  // Protection information errors are about the data.
  CHECK(cc(SenseKey::aborted_command, 0x10, 0x01) == Disposition::target_error);

  CHECK(cc(SenseKey::unit_attention, 0x29, 0x00) == Disposition::retry_same_path);
  CHECK(cc(SenseKey::unit_attention, 0x2A, 0x06) == Disposition::retry_same_path);
  CHECK(cc(SenseKey::unit_attention, 0x3F, 0x0E) == Disposition::retry_same_path);
  CHECK(cc(SenseKey::no_sense, 0x00, 0x00) == Disposition::retry_same_path);
  CHECK(cc(SenseKey::recovered_error, 0x17, 0x01) == Disposition::success);
  // A deferred error: the current command was not performed.
  CHECK(cc(SenseKey::medium_error, 0x0C, 0x00, true) == Disposition::retry_same_path);

  // The LU's own answer: return it, never fail over on it.
  CHECK(cc(SenseKey::medium_error, 0x11, 0x00) == Disposition::target_error);
  CHECK(cc(SenseKey::medium_error, 0x0C, 0x00) == Disposition::target_error);
  CHECK(cc(SenseKey::hardware_error, 0x44, 0x00) == Disposition::target_error);
  CHECK(cc(SenseKey::illegal_request, 0x20, 0x00) == Disposition::target_error);
  CHECK(cc(SenseKey::illegal_request, 0x21, 0x00) == Disposition::target_error);
  CHECK(cc(SenseKey::illegal_request, 0x24, 0x00) == Disposition::target_error);
  CHECK(cc(SenseKey::data_protect, 0x27, 0x00) == Disposition::target_error);
  CHECK(cc(SenseKey::data_protect, 0x27, 0x07) == Disposition::target_error);
  CHECK(cc(SenseKey::miscompare, 0x1D, 0x00) == Disposition::target_error);
  CHECK(cc(SenseKey::vendor_specific, 0x80, 0x00) == Disposition::target_error);
}

TEST_CASE("classify works on decoded sense", "[scsi]") {
  auto standby = scsi::decode_sense(scsi_test::hex("72 02 04 0b 00 00 00 00"));
  CHECK(scsi::classify(Status::check_condition, standby) == Disposition::path_error);
  auto medium = scsi::decode_sense(scsi_test::hex("f0 00 03 00001234 0a 00000000 11 00 00 000000"));
  CHECK(scsi::classify(Status::check_condition, medium) == Disposition::target_error);
  CHECK(scsi::disposition_name(Disposition::path_error) == "path error");
}
