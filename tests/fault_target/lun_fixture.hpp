// mpio::LunDevice on paths to scripted fault targets (one target, one port, one path per
// script), for the device-level fault tests.
#pragma once

#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <iscsi_io/path_session.hpp>
#include <mpio/lun_device.hpp>

#include "fault_target.hpp"

namespace fault_target {

// A path to `target` as the fixtures configure it: loopback, no pings, a 3 s login timeout.
inline mpio::LunPath path_to(const FaultTarget& target) {
  using namespace std::chrono_literals;
  mpio::LunPath path;
  path.login.portal_host = "127.0.0.1";
  path.login.portal_port = target.port();
  path.login.initiator_name = "iqn.2026-11.org.iscsi-mpio:lun-fixture";
  path.login.target_name = FaultTarget::target_name;
  path.login.isid = iscsi_io::random_isid();
  path.login.login_timeout = 3s;
  path.login.noop_out_interval = 0ms;
  path.login.noop_out_timeout = 2s;
  return path;
}

class LunFixture {
 public:
  // `adjust` may change the device's configuration (grouping, polling interval, priorities)
  // before open.
  explicit LunFixture(Script script, const std::function<void(mpio::LunConfig&)>& adjust = {})
      : LunFixture(std::vector<Script>{script}, adjust) {}

  LunFixture(const std::vector<Script>& scripts,
             const std::function<void(mpio::LunConfig&)>& adjust = {})
      : block_size_(scripts.at(0).block_size) {
    for (const Script& script : scripts) {
      targets_.push_back(std::make_unique<FaultTarget>(io_, script));
      config_.paths.push_back(path_to(*targets_.back()));
    }
    if (adjust) adjust(config_);
    std::optional<std::string> failure;
    mpio::LunDevice::open(io_, config_,
                          [&](std::error_code ec, const std::string& detail,
                              std::shared_ptr<mpio::LunDevice> device) {
                            if (ec) failure = detail.empty() ? ec.message() : detail;
                            device_ = std::move(device);
                          });
    REQUIRE(run_until([&] { return device_ != nullptr || failure.has_value(); }));
    INFO(failure.value_or(""));
    REQUIRE(device_ != nullptr);
    device_->on_capacity_change([this](uint64_t size) { sizes_seen.push_back(size); });
  }

  ~LunFixture() {
    if (device_) {
      bool closed = false;
      device_->close(std::chrono::seconds(2), [&](std::error_code) { closed = true; });
      run_until([&] { return closed; });
    }
  }

  bool run_until(const std::function<bool()>& done,
                 std::chrono::milliseconds limit = std::chrono::seconds(5)) {
    return fault_target::run_until(io_, done, limit);
  }

  // One READ of `blocks` blocks at `lba` through the device, as the NBD side submits it;
  // nullopt when it did not complete within `limit`.
  std::optional<std::error_code> read(uint64_t lba, uint32_t blocks, std::string& detail,
                                      std::chrono::milliseconds limit = std::chrono::seconds(5)) {
    std::vector<std::byte> buffer(size_t{blocks} * block_size_);
    return transfer(blockdev::IoOp::read, lba, buffer, detail, limit);
  }

  // One WRITE of `data` at `lba`; nullopt when it did not complete within `limit`.
  std::optional<std::error_code> write(uint64_t lba, std::vector<std::byte> data,
                                       std::string& detail,
                                       std::chrono::milliseconds limit = std::chrono::seconds(5)) {
    return transfer(blockdev::IoOp::write, lba, data, detail, limit);
  }

  FaultTarget& target(size_t index = 0) { return *targets_.at(index); }
  mpio::LunDevice& device() { return *device_; }
  std::vector<uint64_t> sizes_seen;

 private:
  std::optional<std::error_code> transfer(blockdev::IoOp op, uint64_t lba,
                                          std::vector<std::byte>& buffer, std::string& detail,
                                          std::chrono::milliseconds limit) {
    std::optional<std::error_code> result;
    blockdev::IoRequest request;
    request.op = op;
    request.offset = lba * block_size_;
    request.length = buffer.size();
    request.buffer = buffer;
    request.done = [&](std::error_code ec, const std::string& d) {
      result = ec;
      detail = d;
    };
    device_->submit(request);
    // The request and buffer live on this frame: on a timeout the device still holds them, so
    // the device goes first.
    if (!run_until([&] { return result.has_value(); }, limit)) {
      device_.reset();
      return std::nullopt;
    }
    return result;
  }

  boost::asio::io_context io_;
  std::vector<std::unique_ptr<FaultTarget>> targets_;
  uint32_t block_size_;
  mpio::LunConfig config_;
  std::shared_ptr<mpio::LunDevice> device_;
};

}  // namespace fault_target
