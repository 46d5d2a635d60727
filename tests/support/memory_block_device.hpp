// A memory-backed blockdev::BlockDevice for NBD tests: every operation, op counters, error
// injection for the next N requests, and deferred completion so a test can finish requests in
// any order (out-of-order replies) or hold them in flight (drain on stop).
// Thread-safe: the server submits on its io_context thread while the test thread inspects the
// data or completes deferred requests.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include <blockdev/block_device.hpp>

namespace test {

class MemoryBlockDevice : public blockdev::BlockDevice {
 public:
  struct Counters {
    size_t reads = 0;
    size_t writes = 0;
    size_t fua_writes = 0;  // writes, trims and write_zeroes with fua set
    size_t flushes = 0;
    size_t trims = 0;
    size_t write_zeroes = 0;
    size_t unmapping_zeroes = 0;  // write_zeroes with may_unmap
    size_t block_statuses = 0;
    size_t caches = 0;
    size_t failed = 0;  // completed with an injected error
    size_t total() const {
      return reads + writes + flushes + trims + write_zeroes + block_statuses + caches;
    }
  };

  static blockdev::DeviceInfo make_info(uint64_t size_bytes = 1 << 20, uint32_t block_size = 512) {
    blockdev::DeviceInfo info;
    info.wwid = "memory";
    info.vendor = "TEST";
    info.product = "MEMORY";
    info.size_bytes = size_bytes;
    info.logical_block_size = block_size;
    info.physical_block_size = block_size;
    info.max_transfer_bytes = 1 << 20;
    info.supports_fua = true;
    info.supports_trim = true;
    info.supports_write_zeroes = true;
    info.write_zeroes_may_unmap = true;
    return info;
  }

  explicit MemoryBlockDevice(blockdev::DeviceInfo info = make_info())
      : info_(std::move(info)), data_(static_cast<size_t>(info_.size_bytes)) {}

  const blockdev::DeviceInfo& info() const override { return info_; }

  // The LUN grew or shrank on the target: info() reports the new size. Call on the thread
  // that reads info() (the server's), as a LUN's own capacity change would arrive.
  void resize(uint64_t size_bytes) {
    std::lock_guard lock(mutex_);
    info_.size_bytes = size_bytes;
    data_.resize(static_cast<size_t>(size_bytes));
  }

  void submit(blockdev::IoRequest& request) override {
    std::unique_lock lock(mutex_);
    count(request);
    if (defer_) {
      deferred_.push_back(&request);
      return;
    }
    lock.unlock();
    execute(request);
  }

  // The next `n` requests to execute (deferred ones when completed) fail with `ec`, data untouched.
  void fail_next(size_t n, std::error_code ec, std::string detail = "injected failure") {
    std::lock_guard lock(mutex_);
    fail_left_ = n;
    fail_ec_ = ec;
    fail_detail_ = std::move(detail);
  }

  // While deferring, submitted requests wait in a queue until complete_deferred().
  void set_defer(bool defer) {
    std::lock_guard lock(mutex_);
    defer_ = defer;
  }
  size_t deferred_count() const {
    std::lock_guard lock(mutex_);
    return deferred_.size();
  }
  // Executes and completes the deferred request at `index` (0 = oldest). False if none.
  bool complete_deferred(size_t index = 0) {
    blockdev::IoRequest* request = nullptr;
    {
      std::lock_guard lock(mutex_);
      if (index >= deferred_.size()) return false;
      request = deferred_[index];
      deferred_.erase(deferred_.begin() + static_cast<ptrdiff_t>(index));
    }
    execute(*request);
    return true;
  }
  size_t complete_all_deferred() {
    size_t n = 0;
    while (complete_deferred(0)) ++n;
    return n;
  }

  Counters counters() const {
    std::lock_guard lock(mutex_);
    return counters_;
  }
  std::vector<std::byte> read_bytes(uint64_t offset, size_t length) const {
    std::lock_guard lock(mutex_);
    auto begin = data_.begin() + static_cast<ptrdiff_t>(offset);
    return {begin, begin + static_cast<ptrdiff_t>(length)};
  }
  void write_bytes(uint64_t offset, std::span<const std::byte> bytes) {
    std::lock_guard lock(mutex_);
    std::copy(bytes.begin(), bytes.end(), data_.begin() + static_cast<ptrdiff_t>(offset));
  }
  void fill(std::byte value) {
    std::lock_guard lock(mutex_);
    std::fill(data_.begin(), data_.end(), value);
  }

 private:
  void count(const blockdev::IoRequest& request) {
    switch (request.op) {
      case blockdev::IoOp::read:
        ++counters_.reads;
        break;
      case blockdev::IoOp::write:
        ++counters_.writes;
        break;
      case blockdev::IoOp::flush:
        ++counters_.flushes;
        break;
      case blockdev::IoOp::trim:
        ++counters_.trims;
        break;
      case blockdev::IoOp::write_zeroes:
        ++counters_.write_zeroes;
        if (request.may_unmap) ++counters_.unmapping_zeroes;
        break;
      case blockdev::IoOp::block_status:
        ++counters_.block_statuses;
        break;
      case blockdev::IoOp::cache:
        ++counters_.caches;
        break;
    }
    if (request.fua) ++counters_.fua_writes;
  }

  // Runs the request against the buffer, then calls `done` outside the lock (the callback may
  // submit again).
  void execute(blockdev::IoRequest& request) {
    std::error_code ec;
    std::string detail;
    {
      std::lock_guard lock(mutex_);
      if (fail_left_ > 0) {
        --fail_left_;
        ++counters_.failed;
        ec = fail_ec_;
        detail = fail_detail_;
      } else if (request.offset > data_.size() || request.length > data_.size() - request.offset) {
        ec = std::make_error_code(std::errc::invalid_argument);
        detail = "beyond end of device";
      } else {
        auto at = data_.begin() + static_cast<ptrdiff_t>(request.offset);
        const auto n = static_cast<ptrdiff_t>(request.length);
        switch (request.op) {
          case blockdev::IoOp::read:
            std::copy(at, at + n, request.buffer.begin());
            break;
          case blockdev::IoOp::write:
            std::copy(request.buffer.begin(), request.buffer.begin() + n, at);
            break;
          case blockdev::IoOp::trim:  // a trimmed range reads back as zeroes here
          case blockdev::IoOp::write_zeroes:
            std::fill(at, at + n, std::byte{0});
            break;
          case blockdev::IoOp::flush:
          case blockdev::IoOp::cache:
            break;
          case blockdev::IoOp::block_status:
            // Blocks of zeros are holes that read as zeros, like a thin LU after UNMAP.
            request.extents.clear();
            for (auto block = at; block < at + n;) {
              const auto end = std::min(block + info_.logical_block_size, at + n);
              const bool zero =
                  std::all_of(block, end, [](std::byte b) { return b == std::byte{0}; });
              const uint32_t flags = zero ? blockdev::Extent::hole | blockdev::Extent::zero : 0;
              const auto length = static_cast<uint64_t>(end - block);
              if (!request.extents.empty() && request.extents.back().flags == flags) {
                request.extents.back().length += length;
              } else {
                request.extents.push_back({length, flags});
              }
              block = end;
            }
            break;
        }
      }
    }
    request.done(ec, detail);
  }

  blockdev::DeviceInfo info_;
  mutable std::mutex mutex_;
  std::vector<std::byte> data_;
  Counters counters_;
  bool defer_ = false;
  std::deque<blockdev::IoRequest*> deferred_;
  size_t fail_left_ = 0;
  std::error_code fail_ec_;
  std::string fail_detail_;
};

}  // namespace test
