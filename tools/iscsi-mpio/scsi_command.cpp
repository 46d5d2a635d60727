#include "scsi_command.hpp"

#include <boost/asio.hpp>
#include <memory>

#include <iscsi/errors.hpp>
#include <iscsi/session.hpp>
#include <scsi/report_luns.hpp>
#include <scsi/sense.hpp>
#include <scsi/status.hpp>

#include "errors.hpp"

namespace iscsi_mpio::scsi_command {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;

namespace {

// UNIT ATTENTION (a fresh I_T nexus reports 29/00, power on or reset), BUSY, TASK SET FULL:
// asked again on the same path, as attach does.
constexpr int same_path_retries = 3;

}  // namespace

awaitable<void> wait_for(asio::io_context& io,
                         const std::function<void(std::function<void()>)>& start) {
  co_await asio::async_initiate<decltype(use_awaitable), void()>(
      [&io, &start](auto handler) {
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        start([&io, shared] { asio::post(io, [shared]() mutable { std::move (*shared)(); }); });
      },
      use_awaitable);
}

awaitable<std::error_code> login(asio::io_context& io, iscsi_io::PathSession& session,
                                 std::string& detail) {
  std::error_code login_error;
  co_await wait_for(io, [&](std::function<void()> done) {
    session.start([&, done = std::move(done)](std::error_code ec, const std::string& why) {
      login_error = ec;
      detail = why;
      done();
    });
  });
  co_return login_error;
}

awaitable<std::error_code> command(asio::io_context& io, iscsi_io::PathSession& session,
                                   iscsi::Lun lun, const scsi::Cdb& cdb, uint32_t allocation,
                                   std::vector<std::byte>& data, std::string& detail,
                                   scsi::Disposition* disposition) {
  for (int attempt = 0;; ++attempt) {
    iscsi::ScsiTask task;
    task.lun = lun;
    task.cdb = cdb.bytes;
    data.assign(allocation, std::byte{0});
    if (allocation > 0) {
      task.direction = iscsi::DataDirection::read;
      task.read_buffer = data;
    }
    co_await wait_for(io, [&](std::function<void()> done) {
      task.on_complete = [done = std::move(done)](iscsi::ScsiTask&) { done(); };
      session.submit(task);
    });
    if (task.transport_error) {
      detail = error_text(task.transport_error, task.transport_detail);
      co_return task.transport_error;
    }
    const auto status = static_cast<scsi::Status>(task.status);
    if (status == scsi::Status::good || status == scsi::Status::condition_met) {
      if (task.residual_underflow && task.residual_count <= data.size())
        data.resize(data.size() - task.residual_count);
      co_return std::error_code{};
    }
    const auto sense = scsi::decode_sense(task.sense);
    const auto meaning = scsi::classify(status, sense);
    if (meaning == scsi::Disposition::retry_same_path && attempt < same_path_retries) continue;
    if (disposition != nullptr) *disposition = meaning;
    const auto ec = scsi::make_error(status, sense);
    detail = ec.message();
    co_return ec;
  }
}

awaitable<std::error_code> report_luns(asio::io_context& io, iscsi_io::PathSession& session,
                                       std::vector<uint16_t>& luns, std::string& detail) {
  // 8 bytes of header and 8 per LUN: room for 2047 LUNs.
  constexpr uint32_t allocation = 16384;
  std::vector<std::byte> data;
  if (auto ec = co_await command(io, session, iscsi::Lun{0}, scsi::report_luns(allocation),
                                 allocation, data, detail)) {
    detail = "REPORT LUNS: " + detail;
    co_return ec;
  }
  const auto listed = scsi::parse_report_luns(data);
  if (!listed) {
    detail = "REPORT LUNS: malformed parameter data";
    co_return iscsi::errc::protocol_violation;
  }
  for (const uint64_t raw : *listed)
    if (const auto lun = scsi::decode_lun(raw)) luns.push_back(*lun);
  co_return std::error_code{};
}

}  // namespace iscsi_mpio::scsi_command
