// iscsi_io/lu_probe.hpp's exchanges driven through a scripted command runner, without sockets:
// which CDBs go out in which order, and what each answer (data, CHECK CONDITION, a path that
// failed) makes of them.
#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include <common/hex.hpp>
#include <iscsi/errors.hpp>
#include <iscsi_io/lu_probe.hpp>
#include <scsi/error.hpp>
#include <scsi/sense.hpp>
#include <scsi/status.hpp>

namespace {

namespace asio = boost::asio;

// clang-format off
// INQUIRY with EVPD for pages 0x00, 0x83, 0x80 and ALLOCATION LENGTH 4096 (SPC-4 §6.6.1), and
// REPORT LUNS with ALLOCATION LENGTH 4096 (SPC-4 §6.33).
const char* const inquiry_00 = "12 01 00 10 00 00";
const char* const inquiry_83 = "12 01 83 10 00 00";
const char* const inquiry_80 = "12 01 80 10 00 00";
const char* const report_luns = "a0 00 00 00 00 00 00 00 10 00 00 00";

const char* const pages_00_80_83 = "00 00 00 03  00 80 83";
const char* const pages_00_83 = "00 00 00 02  00 83";
const char* const naa_page = "00 83 00 0c  01 03 00 08  50 01 40 50 00 00 00 01";
const char* const port_only_page = "00 83 00 08  51 94 00 04  00 00 00 01";
const char* const blank_serial_page = "00 80 00 08  20 20 20 20 20 20 20 20";
const char* const serial_page = "00 80 00 0a  20 20 20 53 4e 2d 30 30 30 31";
// LUN 0 and LUN 1 (peripheral device addressing), and LUN 0 alone.
const char* const luns_0_1 = "00 00 00 10 00 00 00 00  0000000000000000  0001000000000000";
const char* const lun_0 = "00 00 00 08 00 00 00 00  0000000000000000";
// clang-format on

// ILLEGAL REQUEST, INVALID FIELD IN CDB: how a target rejects a VPD page it does not support.
std::error_code invalid_field() {
  scsi::Sense sense;
  sense.response_code = 0x70;
  sense.key = scsi::SenseKey::illegal_request;
  sense.asc = 0x24;
  return scsi::make_error(scsi::Status::check_condition, sense);
}

const std::error_code path_failed = iscsi::errc::session_failed;

// One command the runner expects, and its answer: `data` with GOOD status, or `error`.
struct Step {
  const char* cdb;
  const char* data = "";
  std::error_code error{};
};

// Hands out the answers in order and records every CDB that came, so a test sees both what the
// exchange asked and what it made of the answers.
class ScriptedRunner {
 public:
  explicit ScriptedRunner(std::vector<Step> steps) : steps_(std::move(steps)) {}

  iscsi_io::DataInCommand runner() {
    return [this](const scsi::Cdb& cdb, uint32_t allocation, std::vector<std::byte>& data,
                  std::string& detail) { return answer(this, cdb, allocation, data, detail); };
  }

  std::vector<std::string> sent;  // hex of each CDB, in order

 private:
  static asio::awaitable<std::error_code> answer(ScriptedRunner* self, const scsi::Cdb& cdb,
                                                 uint32_t allocation, std::vector<std::byte>& data,
                                                 std::string& detail) {
    self->sent.push_back(common::to_hex(cdb.view()));
    REQUIRE(self->next_ < self->steps_.size());
    const Step& step = self->steps_[self->next_++];
    CHECK(common::to_hex(cdb.view()) == common::to_hex(common::from_hex(step.cdb)));
    data = common::from_hex(step.data);
    CHECK(data.size() <= allocation);
    if (step.error) detail = step.error.message();
    co_return step.error;
  }

  std::vector<Step> steps_;
  size_t next_ = 0;
};

// Runs an exchange to its end on a fresh io_context.
template <typename T>
T run(asio::awaitable<T> exchange) {
  asio::io_context io;
  std::optional<T> result;
  asio::co_spawn(io, std::move(exchange), [&](std::exception_ptr e, T value) {
    if (e) std::rethrow_exception(e);
    result = std::move(value);
  });
  io.run();
  REQUIRE(result.has_value());
  return std::move(*result);
}

struct Identity {
  std::error_code ec;
  std::string detail;
  scsi::IdentityPages pages;
  std::string wwid;
};

Identity read_identity(ScriptedRunner& script) {
  Identity out;
  out.ec = run(iscsi_io::read_identity_pages(script.runner(), out.pages, out.detail));
  out.wwid = scsi::lu_identity(out.pages);
  return out;
}

}  // namespace

TEST_CASE("identity: the pages VPD 0x00 lists are read, in the order 0x00, 0x83, 0x80",
          "[iscsi_io][identity]") {
  ScriptedRunner script(
      {{inquiry_00, pages_00_80_83}, {inquiry_83, naa_page}, {inquiry_80, serial_page}});
  const auto id = read_identity(script);
  CHECK_FALSE(id.ec);
  CHECK(id.wwid == "35001405000000001");
  CHECK(id.pages.serial == "SN-0001");
  REQUIRE(id.pages.designators);
  CHECK(id.pages.designators->size() == 1);
}

TEST_CASE("identity: a page VPD 0x00 does not list is not asked for", "[iscsi_io][identity]") {
  ScriptedRunner script({{inquiry_00, pages_00_83}, {inquiry_83, port_only_page}});
  const auto id = read_identity(script);
  CHECK_FALSE(id.ec);
  CHECK(id.wwid.empty());
  CHECK_FALSE(id.pages.serial);
  CHECK(script.sent.size() == 2);
}

TEST_CASE("identity: VPD 0x00 rejected, VPD 0x83 and 0x80 are asked anyway",
          "[iscsi_io][identity]") {
  ScriptedRunner script(
      {{inquiry_00, "", invalid_field()}, {inquiry_83, port_only_page}, {inquiry_80, serial_page}});
  const auto id = read_identity(script);
  CHECK_FALSE(id.ec);
  CHECK_FALSE(id.pages.supported);
  CHECK(id.wwid == "SSN-0001");
}

TEST_CASE("identity: a rejected VPD 0x83 is a missing page, and the serial names the LU",
          "[iscsi_io][identity]") {
  ScriptedRunner script(
      {{inquiry_00, pages_00_80_83}, {inquiry_83, "", invalid_field()}, {inquiry_80, serial_page}});
  const auto id = read_identity(script);
  CHECK_FALSE(id.ec);
  CHECK_FALSE(id.pages.designators);
  CHECK(id.wwid == "SSN-0001");
}

TEST_CASE("identity: no LU designator and a blank serial give no identity",
          "[iscsi_io][identity]") {
  ScriptedRunner script({{inquiry_00, pages_00_80_83},
                         {inquiry_83, port_only_page},
                         {inquiry_80, blank_serial_page}});
  const auto id = read_identity(script);
  CHECK_FALSE(id.ec);
  CHECK(id.pages.serial == "");
  CHECK(id.wwid.empty());
}

TEST_CASE("identity: a path that fails under a VPD page fails the exchange, naming the page",
          "[iscsi_io][identity]") {
  SECTION("under VPD 0x00") {
    ScriptedRunner script({{inquiry_00, "", path_failed}});
    const auto id = read_identity(script);
    CHECK(id.ec == path_failed);
    CHECK_THAT(id.detail, Catch::StartsWith("INQUIRY VPD 0x00: "));
  }
  SECTION("under VPD 0x83") {
    ScriptedRunner script({{inquiry_00, pages_00_80_83}, {inquiry_83, "", path_failed}});
    const auto id = read_identity(script);
    CHECK(id.ec == path_failed);
    CHECK_THAT(id.detail, Catch::StartsWith("INQUIRY VPD 0x83: "));
  }
  SECTION("under VPD 0x80") {
    ScriptedRunner script({{inquiry_00, pages_00_80_83},
                           {inquiry_83, port_only_page},
                           {inquiry_80, "", path_failed}});
    const auto id = read_identity(script);
    CHECK(id.ec == path_failed);
    CHECK_THAT(id.detail, Catch::StartsWith("INQUIRY VPD 0x80: "));
  }
}

TEST_CASE("LUN listing: the LUNs REPORT LUNS gives, as a note for an error message",
          "[iscsi_io][luns]") {
  SECTION("two LUNs") {
    ScriptedRunner script(std::vector<Step>{{report_luns, luns_0_1}});
    CHECK(run(iscsi_io::luns_on_target(script.runner())) == " (the target has LUNs 0, 1)");
  }
  SECTION("one LUN") {
    ScriptedRunner script(std::vector<Step>{{report_luns, lun_0}});
    CHECK(run(iscsi_io::luns_on_target(script.runner())) == " (the target has LUN 0)");
  }
  SECTION("REPORT LUNS rejected, or the path failed: nothing to add") {
    const auto error = GENERATE(invalid_field(), path_failed);
    ScriptedRunner script({{report_luns, "", error}});
    CHECK(run(iscsi_io::luns_on_target(script.runner())).empty());
  }
}
