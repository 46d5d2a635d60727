// mpio::LunDevice against the scripted fault target answering data commands with a SCSI status
// instead of serving them (SAM-5 §5.3; sense keys of SPC-4 §4.5.6), and what each answer
// becomes for the NBD client (proto.md "Error values"). The faults stand for an overloaded array
// (BUSY, TASK SET FULL), a LU reset by someone else (UNIT ATTENTION 29/00), a LU reserved by
// another host (RESERVATION CONFLICT), a bad block (MEDIUM ERROR 11/00) and a request the LU
// refuses (ILLEGAL REQUEST 21/00): states tgtd and istgt do not enter on cue.
#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

#include <nbd/errors.hpp>
#include <nbd/wire.hpp>
#include <scsi/sense.hpp>
#include <scsi/status.hpp>

#include "lun_fixture.hpp"

namespace {

using namespace std::chrono_literals;
using fault_target::Script;
using fault_target::ScriptedStatus;

constexpr uint8_t kRead16 = 0x88;
// The answers, spelled with the initiator's own SAM-5 / SPC-4 code names.
constexpr ScriptedStatus status_only(scsi::Status status) {
  return {.status = static_cast<uint8_t>(status)};
}
constexpr ScriptedStatus check_condition(scsi::SenseKey key, uint8_t asc, uint8_t ascq) {
  return {.status = static_cast<uint8_t>(scsi::Status::check_condition),
          .sense_key = static_cast<uint8_t>(key),
          .asc = asc,
          .ascq = ascq};
}
constexpr ScriptedStatus kBusy = status_only(scsi::Status::busy);
constexpr ScriptedStatus kTaskSetFull = status_only(scsi::Status::task_set_full);
constexpr ScriptedStatus kReservationConflict = status_only(scsi::Status::reservation_conflict);
constexpr ScriptedStatus kPowerOnReset =
    check_condition(scsi::SenseKey::unit_attention, 0x29, 0x00);
constexpr ScriptedStatus kUnrecoveredReadError =
    check_condition(scsi::SenseKey::medium_error, 0x11, 0x00);
constexpr ScriptedStatus kLbaOutOfRange =
    check_condition(scsi::SenseKey::illegal_request, 0x21, 0x00);

Script answering(std::vector<ScriptedStatus> answers) {
  Script s;
  s.data_command_answers = std::move(answers);
  return s;
}

// When each READ(16) reached the target.
std::vector<std::chrono::steady_clock::time_point> reads_seen(fault_target::FaultTarget& t) {
  std::vector<std::chrono::steady_clock::time_point> out;
  for (const auto& pdu : t.observed().received) {
    if (pdu.opcode == iscsi::Opcode::scsi_command && pdu.cdb_opcode == kRead16)
      out.push_back(pdu.at);
  }
  return out;
}

}  // namespace

TEST_CASE("BUSY and TASK SET FULL: retried on the same path after 10, 20, 40 ms; then served",
          "[fault_target][status]") {
  fault_target::LunFixture f(answering({kBusy, kTaskSetFull, kBusy}));
  std::string detail;
  const auto ec = f.read(0, 8, detail);
  INFO(detail);
  REQUIRE(ec.has_value());
  CHECK_FALSE(*ec);
  const auto reads = reads_seen(f.target());
  REQUIRE(reads.size() == 4);
  // SAM-5 §5.3.1: the LU is overloaded; an immediate retry would add to the load. Each try
  // waits twice as long as the one before.
  CHECK(reads[1] - reads[0] >= 10ms);
  CHECK(reads[2] - reads[1] >= 20ms);
  CHECK(reads[3] - reads[2] >= 40ms);
}

TEST_CASE("BUSY without end: the retries are bounded and the client gets NBD_EIO",
          "[fault_target][status]") {
  fault_target::LunFixture f(answering(std::vector<ScriptedStatus>(8, kBusy)),
                             [](mpio::LunConfig& config) { config.max_retries = 3; });
  std::string detail;
  const auto ec = f.read(0, 8, detail);
  REQUIRE(ec.has_value());
  REQUIRE(*ec);
  CHECK(detail.find("BUSY") != std::string::npos);
  CHECK(nbd::error_for(*ec) == nbd::kEio);
  CHECK(reads_seen(f.target()).size() == 4);  // the first try and 3 retries
}

TEST_CASE("UNIT ATTENTION 29/00 (power on or reset): the command is retried and served",
          "[fault_target][status]") {
  fault_target::LunFixture f(answering({kPowerOnReset}));
  std::string detail;
  const auto ec = f.read(0, 8, detail);
  INFO(detail);
  REQUIRE(ec.has_value());
  CHECK_FALSE(*ec);
  CHECK(reads_seen(f.target()).size() == 2);
}

TEST_CASE(
    "RESERVATION CONFLICT, MEDIUM ERROR, ILLEGAL REQUEST: the matching NBD error, no "
    "retry, the path stays in service",
    "[fault_target][status]") {
  struct Case {
    const char* name;
    ScriptedStatus answer;
    uint32_t nbd_error;
    const char* in_detail;
  };
  const Case c = GENERATE(
      Case{"reservation conflict", kReservationConflict, nbd::kEperm, "RESERVATION CONFLICT"},
      Case{"medium error", kUnrecoveredReadError, nbd::kEio, "MEDIUM ERROR"},
      Case{"illegal request", kLbaOutOfRange, nbd::kEinval, "ILLEGAL REQUEST"});
  INFO(c.name);
  fault_target::LunFixture f(answering({c.answer}));
  std::string detail;
  const auto ec = f.read(0, 8, detail);
  REQUIRE(ec.has_value());
  REQUIRE(*ec);
  INFO(detail);
  CHECK(detail.find(c.in_detail) != std::string::npos);
  CHECK(nbd::error_for(*ec) == c.nbd_error);
  // The target answered: the answer is about the command, not the path, and another try would
  // get the same answer.
  CHECK(reads_seen(f.target()).size() == 1);
  const auto next = f.read(8, 8, detail);
  REQUIRE(next.has_value());
  CHECK_FALSE(*next);
  CHECK(f.device().path_status().at(0).state == mpio::PathState::active);
}
