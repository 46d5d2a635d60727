// multipath.conf no_path_retry: what a block device provider does with I/O while no path to
// its LU is usable. Declared here, at the boundary, because both sides act on it: mpio holds or
// fails the requests, and the kernel nbd driver's dead-connection timeout must never give up
// on a request sooner (nbd_kernel/kernel_device.hpp).
#pragma once

#include <cstdint>

namespace blockdev {

struct NoPathRetry {
  enum class Mode { fail, queue, intervals };
  Mode mode = Mode::queue;
  // Mode::intervals: requests are held this many polling intervals, then fail with EIO.
  std::uint32_t intervals = 0;
  friend bool operator==(const NoPathRetry&, const NoPathRetry&) = default;
};

}  // namespace blockdev
