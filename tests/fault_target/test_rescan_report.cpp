// What a rescan sends (lun_report::report_on on a session the LUN devices already use): one
// REPORT LUNS, and an INQUIRY only for a LUN number the previous report did not list. A rescan
// runs every polling interval; with 64 LUNs, INQUIRY of each would be 65 commands a period on
// every target for nothing.
#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <iscsi_io/path_session.hpp>

#include "fault_target.hpp"
#include "lun_fixture.hpp"
#include "lun_report.hpp"

namespace {

using namespace std::chrono_literals;
using fault_target::FaultTarget;
using fault_target::Script;

constexpr uint8_t kReportLuns = 0xa0;
constexpr uint8_t kInquiry = 0x12;

struct Fixture {
  explicit Fixture(uint8_t lun) : target(io, Script{.lun = lun}) {
    session = iscsi_io::PathSession::create(io, fault_target::path_to(target).login);
    std::optional<std::error_code> login;
    session->start([&](std::error_code ec, const std::string&) { login = ec; });
    REQUIRE(fault_target::run_until(
        io, [&] { return login.has_value(); }, 5s));
    REQUIRE_FALSE(*login);
  }
  ~Fixture() { session->close(); }

  struct Answer {
    std::error_code ec;
    std::string detail;
    std::vector<iscsi_mpio::options::TargetLun> luns;
  };
  Answer rescan(iscsi_mpio::lun_report::KnownLuns known) {
    std::optional<Answer> answer;
    iscsi_mpio::lun_report::report_on(io, session, std::move(known),
                                      [&](std::error_code ec, const std::string& detail,
                                          std::vector<iscsi_mpio::options::TargetLun> luns) {
                                        answer = Answer{ec, detail, std::move(luns)};
                                      });
    REQUIRE(fault_target::run_until(
        io, [&] { return answer.has_value(); }, 5s));
    return *answer;
  }

  // SCSI Commands with this CDB opcode the target received so far.
  size_t commands(uint8_t cdb_opcode) const {
    size_t n = 0;
    for (const auto& pdu : target.observed().received)
      n += pdu.opcode == iscsi::Opcode::scsi_command && pdu.cdb_opcode == cdb_opcode ? 1 : 0;
    return n;
  }

  boost::asio::io_context io;
  FaultTarget target;
  std::shared_ptr<iscsi_io::PathSession> session;
};

}  // namespace

TEST_CASE("rescan: a new LUN number gets one INQUIRY, a known one none", "[fault_target][rescan]") {
  Fixture f(3);
  // The first report (attach) knows nothing: REPORT LUNS and INQUIRY of LUN 3.
  auto first = f.rescan({});
  INFO(first.detail);
  REQUIRE_FALSE(first.ec);
  REQUIRE(first.luns.size() == 1);
  CHECK(first.luns[0].lun == 3);
  CHECK(first.luns[0].device_type == 0x00);
  CHECK(f.commands(kReportLuns) == 1);
  CHECK(f.commands(kInquiry) == 1);

  // Every later rescan of an unchanged target: REPORT LUNS alone, the type remembered.
  const auto known = iscsi_mpio::lun_report::known_from(first.luns);
  for (int i = 0; i < 3; ++i) {
    auto again = f.rescan(known);
    REQUIRE_FALSE(again.ec);
    REQUIRE(again.luns.size() == 1);
    CHECK(again.luns[0].lun == 3);
    CHECK(again.luns[0].device_type == 0x00);
  }
  CHECK(f.commands(kReportLuns) == 4);
  CHECK(f.commands(kInquiry) == 1);

  // A LUN the last report did not list (here: another number was known) is asked again.
  auto changed = f.rescan({{5, 0x00}});
  REQUIRE_FALSE(changed.ec);
  REQUIRE(changed.luns.size() == 1);
  CHECK(changed.luns[0].lun == 3);
  CHECK(f.commands(kInquiry) == 2);
}

TEST_CASE("rescan: a known LUN keeps the device type it was reported with",
          "[fault_target][rescan]") {
  Fixture f(0);
  // Known as a non-disk (an enclosure, 0x0d): the rescan neither asks nor turns it into a disk,
  // so `luns: all` keeps skipping it.
  auto answer = f.rescan({{0, 0x0d}});
  REQUIRE_FALSE(answer.ec);
  REQUIRE(answer.luns.size() == 1);
  CHECK(answer.luns[0].device_type == 0x0d);
  CHECK(f.commands(kInquiry) == 0);
}
