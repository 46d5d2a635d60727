// iscsi_io::PathSession against the scripted fault target: one case per fault, each asserting
// what the initiator does about it. Every wait is bounded (a few seconds at most).
#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <iscsi/errors.hpp>
#include <iscsi_io/path_session.hpp>
#include <scsi/cdb.hpp>

#include "fault_target.hpp"

using Catch::Matchers::Contains;
using fault_target::Fault;
using fault_target::FaultTarget;
using fault_target::Script;
using iscsi::errc;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

constexpr uint32_t block_size = 512;

// One SCSI command and its buffer; completions are counted so a second one would show.
struct Command {
  iscsi::ScsiTask task;
  std::vector<std::byte> buffer;
  int completions = 0;
  Clock::time_point submitted_at;
  Clock::time_point completed_at;

  bool done() const { return completions > 0; }
  bool good() const { return done() && !task.transport_error && task.status == 0; }
};

std::unique_ptr<Command> make_command(const scsi::Cdb& cdb, iscsi::DataDirection direction,
                                      size_t length, std::byte fill = std::byte{0}) {
  auto command = std::make_unique<Command>();
  command->task.cdb = cdb.bytes;
  command->task.direction = direction;
  command->buffer.assign(length, fill);
  if (direction == iscsi::DataDirection::read) command->task.read_buffer = command->buffer;
  if (direction == iscsi::DataDirection::write) command->task.write_buffer = command->buffer;
  Command* raw = command.get();
  command->task.on_complete = [raw](iscsi::ScsiTask&) {
    ++raw->completions;
    raw->completed_at = Clock::now();
  };
  return command;
}

std::unique_ptr<Command> read_blocks(uint64_t lba, uint32_t blocks) {
  return make_command(scsi::read16(lba, blocks, false), iscsi::DataDirection::read,
                      size_t{blocks} * block_size, std::byte{0xee});
}

std::unique_ptr<Command> write_blocks(uint64_t lba, uint32_t blocks, std::byte fill) {
  return make_command(scsi::write16(lba, blocks, false), iscsi::DataDirection::write,
                      size_t{blocks} * block_size, fill);
}

std::unique_ptr<Command> test_unit_ready() {
  return make_command(scsi::test_unit_ready(), iscsi::DataDirection::none, 0);
}

struct Outcome {
  std::error_code ec;
  std::string detail;
  Clock::time_point at;
};

// An io_context with the fault target and one PathSession on it.
class Fixture {
 public:
  explicit Fixture(Script script) : target_(io_, script) {
    config.portal_host = "127.0.0.1";
    config.portal_port = target_.port();
    config.initiator_name = "iqn.2026-11.org.iscsi-mpio:fault-tests";
    config.target_name = FaultTarget::target_name;
    config.isid = iscsi_io::random_isid();
    config.login_timeout = 3s;
    config.noop_out_interval = 0ms;  // no pings: each case scripts every PDU the target sends
    config.noop_out_timeout = 2s;    // also the task management timeout
    config.command_timeout = 0ms;
  }

  ~Fixture() {
    if (path_) path_->close();
    if (io_.stopped()) io_.restart();
    io_.run_for(50ms);
  }

  FaultTarget& target() { return target_; }
  iscsi_io::PathSession& path() { return *path_; }
  const std::optional<Outcome>& failure() const { return failure_; }

  // Runs the io_context until `done` holds or `limit` passes; false on timeout.
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit = 5s) {
    return fault_target::run_until(io_, done, limit);
  }

  // A new PathSession with `config` (a reconnect is a new session), logged in or not.
  Outcome login() {
    if (path_) path_->close();
    failure_.reset();
    // The previous session may report its close later: only the current one counts.
    const unsigned session = ++sessions_;
    path_ = iscsi_io::PathSession::create(io_, config);
    path_->on_failure([this, session](std::error_code ec, const std::string& detail) {
      if (session == sessions_) failure_ = Outcome{ec, detail, Clock::now()};
    });
    std::optional<Outcome> result;
    path_->start([&result](std::error_code ec, const std::string& detail) {
      result = Outcome{ec, detail, Clock::now()};
    });
    REQUIRE(run_until([&] { return result.has_value(); }));
    return *result;
  }

  void login_ok() {
    const auto result = login();
    INFO(result.detail);
    REQUIRE_FALSE(result.ec);
  }

  void submit(Command& command) {
    command.submitted_at = Clock::now();
    path_->submit(command.task);
  }

  iscsi_io::PathConfig config;

 private:
  boost::asio::io_context io_;
  FaultTarget target_;
  std::shared_ptr<iscsi_io::PathSession> path_;
  std::optional<Outcome> failure_;
  unsigned sessions_ = 0;
};

void fill_lun(FaultTarget& target, uint64_t lba, uint32_t blocks, std::byte value) {
  auto& lun = target.lun();
  std::fill_n(lun.begin() + static_cast<ptrdiff_t>(lba * block_size), size_t{blocks} * block_size,
              value);
}

bool all_bytes(const std::vector<std::byte>& buffer, std::byte value) {
  return std::all_of(buffer.begin(), buffer.end(), [&](std::byte b) { return b == value; });
}

}  // namespace

TEST_CASE("no fault: login, TUR, INQUIRY, READ CAPACITY(16), WRITE and READ back",
          "[fault_target]") {
  // Both digests and R2T-driven writes: the paths the fault cases below corrupt work unharmed.
  Fixture f(Script{.initial_r2t = true, .immediate_data = false});
  f.config.proposal.header_digest = iscsi::DigestChoice::crc32c;
  f.config.proposal.data_digest = iscsi::DigestChoice::crc32c;
  f.config.proposal.max_recv_data_segment_length = 8192;  // a READ spans several Data-In
  f.config.proposal.max_burst_length = 16384;             // a WRITE takes several R2Ts
  f.config.proposal.first_burst_length = 16384;
  f.login_ok();
  CHECK(f.target().observed().header_digest);
  CHECK(f.target().observed().data_digest);
  CHECK(f.path().negotiated().header_digest_crc32c);
  CHECK(f.path().negotiated().initial_r2t);
  CHECK_FALSE(f.path().negotiated().immediate_data);

  auto tur = test_unit_ready();
  auto inquiry = make_command(scsi::inquiry(false, 0, 96), iscsi::DataDirection::read, 96);
  auto capacity = make_command(scsi::read_capacity16(32), iscsi::DataDirection::read, 32);
  f.submit(*tur);
  f.submit(*inquiry);
  f.submit(*capacity);
  REQUIRE(f.run_until([&] { return tur->done() && inquiry->done() && capacity->done(); }));
  CHECK(tur->good());
  CHECK(inquiry->good());
  CHECK(inquiry->task.residual_underflow);
  CHECK(inquiry->task.residual_count == 96 - 36);
  CHECK(std::string(reinterpret_cast<const char*>(inquiry->buffer.data()) + 8, 5) == "FAULT");
  CHECK(capacity->good());
  CHECK(capacity->buffer[6] == std::byte{0x07});  // last LBA 0x7ff
  CHECK(capacity->buffer[7] == std::byte{0xff});
  CHECK(capacity->buffer[10] == std::byte{0x02});  // 512-byte blocks

  auto write = write_blocks(16, 128, std::byte{0x3c});  // 64 KiB: four R2T bursts of 16 KiB
  f.submit(*write);
  REQUIRE(f.run_until([&] { return write->done(); }));
  CHECK(write->good());
  CHECK(f.target().observed().count(iscsi::Opcode::data_out) == 4);

  auto read = read_blocks(16, 128);
  f.submit(*read);
  REQUIRE(f.run_until([&] { return read->done(); }));
  CHECK(read->good());
  CHECK(all_bytes(read->buffer, std::byte{0x3c}));
  CHECK_FALSE(f.failure());
}

TEST_CASE("digests on: 64 KiB Data-In segments back to back, four reads at once",
          "[fault_target]") {
  // Segments of 64 KiB, each with its data digest, four reads outstanding at once: one PDU's
  // digest and the next one's header follow each other in the stream. Segments of 16 KiB or
  // more that are not yet buffered when their header is parsed are read from the socket
  // straight into the command's buffer, with the digest and next header in the same recvmsg;
  // how many take that path here depends on how the in-process target's writes are timed, so
  // this case checks the framing and the data, and integration.tgtd the direct path at volume.
  Fixture f(Script{});
  f.config.proposal.header_digest = iscsi::DigestChoice::crc32c;
  f.config.proposal.data_digest = iscsi::DigestChoice::crc32c;
  f.config.proposal.max_recv_data_segment_length = 65536;  // four Data-In PDUs per read
  f.login_ok();
  REQUIRE(f.path().negotiated().data_digest_crc32c);
  std::vector<std::unique_ptr<Command>> writes, reads;
  for (int i = 0; i < 4; ++i) writes.push_back(write_blocks(512 * i, 512, std::byte(0x41 + i)));
  for (auto& w : writes) f.submit(*w);
  REQUIRE(f.run_until([&] {
    return std::all_of(writes.begin(), writes.end(), [](auto& w) { return w->done(); });
  }));
  for (auto& w : writes) CHECK(w->good());
  for (int i = 0; i < 4; ++i) reads.push_back(read_blocks(512 * i, 512));  // 256 KiB each
  for (auto& r : reads) f.submit(*r);
  REQUIRE(f.run_until(
      [&] { return std::all_of(reads.begin(), reads.end(), [](auto& r) { return r->done(); }); }));
  for (int i = 0; i < 4; ++i) {
    CHECK(reads[i]->good());
    CHECK(all_bytes(reads[i]->buffer, std::byte(0x41 + i)));
  }
  CHECK_FALSE(f.failure());
}

TEST_CASE("bad header digest: the connection is dropped and the read fails", "[fault_target]") {
  Fixture f(Script{.fault = Fault::bad_header_digest});
  f.config.proposal.header_digest = iscsi::DigestChoice::crc32c;
  f.login_ok();
  REQUIRE(f.target().observed().header_digest);

  auto read = read_blocks(0, 8);
  f.submit(*read);
  REQUIRE(f.run_until([&] { return read->done() && f.failure(); }));
  // RFC 7143 §7.8 at ErrorRecoveryLevel 0: a header digest error loses the framing; the
  // connection goes, and with it every task on it.
  CHECK(read->completions == 1);
  CHECK(read->task.transport_error == errc::header_digest_mismatch);
  CHECK_FALSE(read->good());
  CHECK(f.failure()->ec == errc::header_digest_mismatch);
  CHECK_THAT(f.failure()->detail, Contains("header digest mismatch on Data-In"));
  CHECK_FALSE(f.path().ready());
}

TEST_CASE("bad data digest on Data-In: no GOOD completion, the data is not handed back",
          "[fault_target]") {
  Fixture f(Script{.fault = Fault::bad_data_digest});
  f.config.proposal.data_digest = iscsi::DigestChoice::crc32c;
  fill_lun(f.target(), 0, 8, std::byte{0x5a});
  f.login_ok();
  REQUIRE(f.target().observed().data_digest);

  auto read = read_blocks(0, 8);
  f.submit(*read);
  REQUIRE(f.run_until([&] { return read->done() && f.failure(); }));
  // The Data-In carried status GOOD (S bit), but its data failed the digest: the status must
  // not count (RFC 7143 §7.8, ERL 0 drops the connection), so the caller never sees a good
  // read of bytes that may be damaged, whatever landed in its buffer meanwhile.
  CHECK(read->completions == 1);
  CHECK(read->task.transport_error == errc::data_digest_mismatch);
  CHECK_FALSE(read->good());
  CHECK(f.failure()->ec == errc::data_digest_mismatch);
  CHECK_THAT(f.failure()->detail, Contains("data digest mismatch on Data-In"));
  CHECK(f.target().observed().count(iscsi::Opcode::scsi_command) == 1);

  // The retry on a new connection reads the same blocks intact.
  f.login_ok();
  auto again = read_blocks(0, 8);
  f.submit(*again);
  REQUIRE(f.run_until([&] { return again->done(); }));
  CHECK(again->good());
  CHECK(all_bytes(again->buffer, std::byte{0x5a}));
}

TEST_CASE("Reject PDU for a command: the task completes with reject_received", "[fault_target]") {
  Fixture f(Script{.fault = Fault::reject_command});
  f.login_ok();
  auto tur = test_unit_ready();
  f.submit(*tur);
  REQUIRE(f.run_until([&] { return tur->done(); }));
  CHECK(tur->completions == 1);
  CHECK(tur->task.transport_error == errc::reject_received);
  CHECK_THAT(tur->task.transport_detail, Contains("reason 0x05"));
  // A Reject ends the command, not the connection.
  CHECK(f.path().ready());
  CHECK_FALSE(f.failure());
}

// AsyncEvent 1 asks for a logout within Parameter3 seconds; AsyncEvent 4 for a negotiation,
// which we honour by a logout too (§11.9.1 allows either a Text Request or a Logout Request),
// so that the next login negotiates every key afresh.
TEST_CASE(
    "Async logout or negotiation request (AsyncEvent 1, 4): logout, then "
    "target_requested_logout",
    "[fault_target]") {
  const auto [fault, reason] = GENERATE(table<Fault, std::string>(
      {{Fault::async_logout, "target requested logout (asynchronous event 1, within 2 s)"},
       {Fault::async_renegotiate,
        "target requested parameter negotiation (asynchronous event 4)"}}));
  CAPTURE(reason);
  Fixture f(Script{.fault = fault, .logout_within_seconds = 2});
  f.login_ok();
  auto tur = test_unit_ready();
  f.submit(*tur);
  REQUIRE(f.run_until([&] { return tur->done() && f.failure(); }));
  CHECK(tur->good());
  const auto& observed = f.target().observed();
  REQUIRE(observed.logout_requested_at);
  const auto* logout = observed.first(iscsi::Opcode::logout_request);
  REQUIRE(logout != nullptr);
  CHECK(observed.count(iscsi::Opcode::logout_request) == 1);
  // The Logout went out at once (no task was in flight), well inside Parameter3, and the
  // owner heard of the failure only after it.
  CHECK(logout->at - *observed.logout_requested_at < 1s);
  CHECK(f.failure()->at >= logout->at);
  CHECK(f.failure()->ec == errc::target_requested_logout);
  CHECK_THAT(f.failure()->detail, Contains(reason));
  CHECK_FALSE(f.path().ready());

  // New work is refused on this path as not sent, for the owner to re-issue elsewhere.
  auto late = test_unit_ready();
  f.submit(*late);
  CHECK(late->task.transport_error == errc::task_not_sent);
}

TEST_CASE("closed CmdSN window reopened by NOP-In: the command waits, then completes GOOD",
          "[fault_target]") {
  Fixture f(Script{.fault = Fault::closed_window, .window_reopen_after = 1000ms});
  f.login_ok();
  auto read = read_blocks(0, 4);
  f.submit(*read);
  REQUIRE(f.run_until([&] { return read->done(); }));
  CHECK(read->good());
  CHECK_FALSE(f.failure());
  const auto& observed = f.target().observed();
  REQUIRE(observed.window_opened_at);
  const auto* command = observed.first(iscsi::Opcode::scsi_command);
  REQUIRE(command != nullptr);
  // §4.2.2.1: nothing non-immediate goes out while MaxCmdSN = ExpCmdSN - 1.
  CHECK(command->at >= *observed.window_opened_at);
  CHECK(read->completed_at - read->submitted_at >= 900ms);
}

TEST_CASE("stalled R2T: the command timeout sends ABORT TASK, the task is aborted proven",
          "[fault_target]") {
  Fixture f(Script{.fault = Fault::stalled_r2t});
  f.config.command_timeout = 1000ms;
  f.login_ok();
  REQUIRE(f.path().negotiated().initial_r2t);
  REQUIRE_FALSE(f.path().negotiated().immediate_data);

  auto write = write_blocks(0, 8, std::byte{0x11});
  f.submit(*write);
  REQUIRE(f.run_until([&] { return write->done(); }));
  CHECK(write->completions == 1);
  CHECK(write->task.transport_error == errc::task_aborted_proven);
  CHECK(write->completed_at - write->submitted_at >= 1000ms);

  const auto& observed = f.target().observed();
  const auto* command = observed.first(iscsi::Opcode::scsi_command);
  const auto* abort = observed.first(iscsi::Opcode::task_management_request);
  REQUIRE(command != nullptr);
  REQUIRE(abort != nullptr);
  CHECK(abort->tmf_function == static_cast<uint8_t>(iscsi::TaskFunction::abort_task));
  CHECK(abort->referenced_task_tag == command->itt);
  CHECK(abort->immediate);
  CHECK(observed.count(iscsi::Opcode::data_out) == 0);
  // "Function complete" settles it: no LOGICAL UNIT RESET, the connection stays.
  CHECK(observed.count(iscsi::Opcode::task_management_request) == 1);
  CHECK(f.path().ready());
  CHECK_FALSE(f.failure());
  CHECK(all_bytes(
      std::vector<std::byte>(f.target().lun().begin(), f.target().lun().begin() + 8 * block_size),
      std::byte{0}));
}

TEST_CASE("garbage PDU with an invalid opcode: the connection is dropped naming it",
          "[fault_target]") {
  Fixture f(Script{.fault = Fault::garbage_opcode});
  f.login_ok();
  auto tur = test_unit_ready();
  f.submit(*tur);
  REQUIRE(f.run_until([&] { return tur->done() && f.failure(); }));
  CHECK(tur->task.transport_error == errc::unknown_opcode);
  CHECK(f.failure()->ec == errc::unknown_opcode);
  CHECK_THAT(f.failure()->detail, Contains("opcode 0x3e"));
  CHECK_FALSE(f.path().ready());
}

TEST_CASE("garbage PDU with an impossible length: the connection is dropped naming it",
          "[fault_target]") {
  Fixture f(Script{.fault = Fault::garbage_length});
  f.login_ok();
  auto read = read_blocks(0, 1);
  f.submit(*read);
  REQUIRE(f.run_until([&] { return read->done() && f.failure(); }));
  CHECK(read->task.transport_error == errc::data_segment_too_long);
  CHECK(f.failure()->ec == errc::data_segment_too_long);
  CHECK_THAT(f.failure()->detail,
             Contains("Data-In data segment of 16777215 bytes exceeds MaxRecvDataSegmentLength"));
  CHECK(all_bytes(read->buffer, std::byte{0xee}));  // nothing was placed
}

TEST_CASE("target disconnects mid-login: start() fails at once with a clear error",
          "[fault_target]") {
  Fixture f(Script{.fault = Fault::disconnect_in_login});
  const auto started = Clock::now();
  const auto result = f.login();
  CHECK(result.ec == errc::connection_closed);
  CHECK_THAT(result.detail, Contains("connection to 127.0.0.1:") && Contains("closed"));
  // Not the login timeout (3 s): the closed connection is noticed when it happens.
  CHECK(result.at - started < 2s);
  CHECK(f.target().observed().login_requests == 1);
  CHECK(f.target().observed().logins_completed == 0);
}

TEST_CASE("a target refusing a required digest fails the login naming the key", "[fault_target]") {
  Fixture f(Script{.accept_header_digest = false, .accept_data_digest = false});
  f.config.proposal.header_digest = iscsi::DigestChoice::crc32c;
  const auto refused = f.login();
  CHECK(refused.ec == errc::negotiation_failed);
  CHECK_THAT(refused.detail, Contains("HeaderDigest=Reject: target rejected our offer CRC32C"));

  f.config.proposal.header_digest = iscsi::DigestChoice::none;
  f.config.proposal.data_digest = iscsi::DigestChoice::crc32c;
  const auto data_refused = f.login();
  CHECK(data_refused.ec == errc::negotiation_failed);
  CHECK_THAT(data_refused.detail, Contains("DataDigest"));

  // prefer-crc32c settles for None.
  f.config.proposal.header_digest = iscsi::DigestChoice::prefer_crc32c;
  f.config.proposal.data_digest = iscsi::DigestChoice::prefer_crc32c;
  f.login_ok();
  CHECK_FALSE(f.path().negotiated().header_digest_crc32c);
  CHECK_FALSE(f.path().negotiated().data_digest_crc32c);
}
