// The LUN behind one or more iSCSI paths, served as an mpio::BlockDevice.
//
// open() logs in, identifies the logical unit (INQUIRY, VPD 0x00/0x80/0x83/0xB0/0xB2, READ
// CAPACITY) and builds the DeviceInfo the NBD side advertises. submit() turns block requests
// into SBC commands (READ(16)/WRITE(16)/SYNCHRONIZE CACHE/UNMAP/WRITE SAME(16)), split by the
// LUN's limits, and maps their outcome to one error code.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include <iscsi_io/path_session.hpp>
#include <scsi/inquiry.hpp>

#include "mpio/block_device.hpp"

namespace boost::asio {
class io_context;
}

namespace mpio {

struct LunConfig {
  std::vector<iscsi_io::PathConfig> paths;  // login parameters of each path
  uint16_t lun = 0;
  // Unit attention, BUSY and TASK SET FULL are retried this many times before the error goes
  // to the client (SPC-4 §5.14: a unit attention reports a condition, not a failed command).
  int max_retries = 8;
  // Upper bound on a single SCSI command's data, whatever the LUN allows.
  uint32_t max_command_bytes = 8u << 20;
};

// What the probe found out about the LU, for logs and status.
struct LunIdentity {
  std::string wwid;
  std::string serial;
  scsi::StandardInquiry inquiry;
  scsi::BlockLimits limits;
  bool has_block_limits = false;
  scsi::LogicalBlockProvisioning provisioning;
  bool has_provisioning = false;
  uint64_t blocks = 0;
};

class LunDevice : public BlockDevice {
 public:
  using OpenHandler =
      std::function<void(std::error_code, const std::string& detail, std::shared_ptr<LunDevice>)>;

  // Logs in on the paths and probes the LU; `done` gets the device or an error naming the path
  // and the reason (login status, unreachable portal, no such LUN, ...).
  static void open(boost::asio::io_context& io, LunConfig config, OpenHandler done);

  ~LunDevice() override;
  const DeviceInfo& info() const override;
  void submit(IoRequest& request) override;

  const LunIdentity& identity() const;
  size_t requests_in_flight() const;

  // SYNCHRONIZE CACHE, then log out of every path. Requests still in flight complete first.
  void close(std::chrono::milliseconds timeout, std::function<void(std::error_code)> done);

  // Called when a path fails after open (its in-flight commands have completed with errors).
  void on_path_failure(std::function<void(const std::string& path, std::error_code,
                                          const std::string& detail)>
                           handler);

  struct Impl;

 private:
  explicit LunDevice(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace mpio
