// Waiting in a test for something another thread does (a server's io_context thread): polls
// `condition` every 2 ms, up to `limit`.
#pragma once

#include <chrono>
#include <functional>
#include <thread>

namespace test {

inline bool eventually(const std::function<bool()>& condition,
                       std::chrono::milliseconds limit = std::chrono::seconds(5)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

}  // namespace test
