// mpio::LunDevice against the scripted fault target: the LU is resized while in service. The
// fault stands for a storage admin growing a LUN on the array: with UNIT ATTENTION 2A/09 (SPC-4
// Annex D, CAPACITY DATA HAS CHANGED), or without any notice, which the polling interval's
// READ CAPACITY(16) must catch. tgtd cannot resize a LUN in service, hence the fake.
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

namespace {

using namespace std::chrono_literals;
using fault_target::FaultTarget;
using fault_target::Script;

constexpr uint32_t kBlockSize = 512;
constexpr uint64_t kBlocks = 2048;  // 1 MiB
constexpr uint64_t kGrownBlocks = 8192;

class LunFixture {
 public:
  explicit LunFixture(std::chrono::milliseconds polling_interval) : target_(io_, script()) {
    mpio::LunPath path;
    path.login.portal_host = "127.0.0.1";
    path.login.portal_port = target_.port();
    path.login.initiator_name = "iqn.2026-11.org.iscsi-mpio:capacity-tests";
    path.login.target_name = FaultTarget::target_name;
    path.login.isid = iscsi_io::random_isid();
    path.login.login_timeout = 3s;
    path.login.noop_out_interval = 0ms;
    path.login.noop_out_timeout = 2s;
    config_.paths.push_back(path);
    config_.polling_interval = polling_interval;
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
      device_->close(2s, [&](std::error_code) { closed = true; });
      run_until([&] { return closed; });
    }
  }

  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit = 5s) {
    return fault_target::run_until(io_, done, limit);
  }

  // One READ of `blocks` blocks at `lba` through the device, as the NBD side submits it.
  std::error_code read(uint64_t lba, uint32_t blocks, std::string& detail) {
    std::vector<std::byte> buffer(size_t{blocks} * kBlockSize);
    std::optional<std::error_code> result;
    mpio::IoRequest request;
    request.op = mpio::IoOp::read;
    request.offset = lba * kBlockSize;
    request.length = buffer.size();
    request.buffer = buffer;
    request.done = [&](std::error_code ec, const std::string& d) {
      result = ec;
      detail = d;
    };
    device_->submit(request);
    REQUIRE(run_until([&] { return result.has_value(); }));
    return *result;
  }

  FaultTarget& target() { return target_; }
  mpio::LunDevice& device() { return *device_; }
  std::vector<uint64_t> sizes_seen;

 private:
  static Script script() {
    Script s;
    s.blocks = kBlocks;
    s.block_size = kBlockSize;
    return s;
  }

  boost::asio::io_context io_;
  FaultTarget target_;
  mpio::LunConfig config_;
  std::shared_ptr<mpio::LunDevice> device_;
};

}  // namespace

TEST_CASE("resize with UNIT ATTENTION 2A/09: the READ that meets it succeeds, the size follows",
          "[fault_target][capacity]") {
  LunFixture f(1h);  // no polling re-read during the test: only the unit attention can tell
  REQUIRE(f.device().info().size_bytes == kBlocks * kBlockSize);
  f.target().resize(kGrownBlocks, true);
  std::string detail;
  const auto ec = f.read(0, 8, detail);
  INFO(detail);
  CHECK_FALSE(ec);  // a unit attention reports a condition, the command is retried
  REQUIRE(f.run_until([&] { return !f.sizes_seen.empty(); }));
  CHECK(f.sizes_seen == std::vector<uint64_t>{kGrownBlocks * kBlockSize});
  CHECK(f.device().info().size_bytes == kGrownBlocks * kBlockSize);
  // The grown part is readable through the device.
  CHECK_FALSE(f.read(kGrownBlocks - 8, 8, detail));
}

TEST_CASE("resize without notice: the polling interval's READ CAPACITY finds the new size",
          "[fault_target][capacity]") {
  LunFixture f(1s);
  f.target().resize(kGrownBlocks, false);
  REQUIRE(f.run_until([&] { return !f.sizes_seen.empty(); }, 4s));
  CHECK(f.sizes_seen == std::vector<uint64_t>{kGrownBlocks * kBlockSize});
  CHECK(f.device().info().size_bytes == kGrownBlocks * kBlockSize);
  // Shrunk back: the device follows down too.
  f.target().resize(kBlocks, false);
  REQUIRE(f.run_until([&] { return f.sizes_seen.size() == 2; }, 4s));
  CHECK(f.sizes_seen.back() == kBlocks * kBlockSize);
}
