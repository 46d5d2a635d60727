// A gathered write in steps of at most one writev's worth of buffers.
//
// asio::async_write over a long buffer sequence carries a 64-entry array inside its operation,
// which is larger than the blocks Asio's per-thread recycling allocator keeps (255 chunks of 4
// bytes), so every call reaches malloc. A loop of async_write_some over a window from this
// cursor moves the same bytes with operations small enough to be recycled:
//
//   GatherCursor cursor(buffers);
//   while (!cursor.finished()) {
//     auto [ec, n] = co_await socket.async_write_some(cursor.window(), nothrow);
//     if (ec) ...;
//     cursor.consume(n);
//   }
#pragma once

#include <array>
#include <boost/asio/buffer.hpp>
#include <cstddef>
#include <span>

namespace common_asio {

class GatherCursor {
 public:
  // Buffers per step; Linux takes up to IOV_MAX (1024) per writev.
  static constexpr std::size_t max_window = 256;

  explicit GatherCursor(std::span<const boost::asio::const_buffer> buffers) : rest_(buffers) {
    skip_empty();
  }

  bool finished() const { return rest_.empty(); }

  // The next buffers to write; valid until consume().
  std::span<const boost::asio::const_buffer> window() {
    std::size_t n = 0;
    for (; n < rest_.size() && n < max_window; ++n) window_[n] = rest_[n];
    if (n > 0) window_[0] += offset_;
    return {window_.data(), n};
  }

  // `bytes` of the window were written.
  void consume(std::size_t bytes) {
    while (bytes > 0 && !rest_.empty()) {
      const std::size_t left = rest_.front().size() - offset_;
      if (bytes < left) {
        offset_ += bytes;
        return;
      }
      bytes -= left;
      rest_ = rest_.subspan(1);
      offset_ = 0;
    }
    skip_empty();
  }

 private:
  void skip_empty() {
    while (!rest_.empty() && rest_.front().size() == offset_) {
      rest_ = rest_.subspan(1);
      offset_ = 0;
    }
  }

  std::span<const boost::asio::const_buffer> rest_;
  std::size_t offset_ = 0;  // bytes of rest_.front() already written
  std::array<boost::asio::const_buffer, max_window> window_{};
};

}  // namespace common_asio
