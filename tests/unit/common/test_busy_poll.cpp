#include <catch2/catch.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>

#include <common_asio/busy_poll.hpp>

namespace {
using namespace std::chrono_literals;
namespace asio = boost::asio;
}  // namespace

TEST_CASE("run_busy_polling runs handlers and timers, and returns when the work is done",
          "[common][busy_poll]") {
  for (auto window : {0us, 200us}) {
    CAPTURE(window.count());
    asio::io_context io;
    int handlers = 0;
    int asked = 0;
    asio::steady_timer timer(io, 30ms);
    timer.async_wait([&](const boost::system::error_code& ec) {
      if (!ec) ++handlers;
      asio::post(io, [&] { ++handlers; });
    });
    const auto started = std::chrono::steady_clock::now();
    common_asio::run_busy_polling(io, window, [&] {
      ++asked;
      return true;
    });
    CHECK(handlers == 2);
    CHECK(std::chrono::steady_clock::now() - started >= 30ms);
    // The window is short next to the timer: the thread polled, then slept until it fired,
    // instead of polling for 30 ms.
    if (window.count() > 0) CHECK(asked <= 4);
  }
}

TEST_CASE("run_busy_polling returns when the io_context is stopped from a handler",
          "[common][busy_poll]") {
  asio::io_context io;
  asio::steady_timer forever(io, 1h);
  forever.async_wait([](const boost::system::error_code&) {});
  asio::steady_timer stop(io, 10ms);
  stop.async_wait([&](const boost::system::error_code&) { io.stop(); });
  common_asio::run_busy_polling(io, 500us, [] { return true; });
  CHECK(io.stopped());
}

TEST_CASE("run_busy_polling sleeps at once when polling is not worth it", "[common][busy_poll]") {
  asio::io_context io;
  int asked = 0;
  asio::steady_timer timer(io, 20ms);
  timer.async_wait([](const boost::system::error_code&) {});
  common_asio::run_busy_polling(io, 1000us, [&] {
    ++asked;
    return false;
  });
  CHECK(asked == 1);  // once, after the wait was set up; then asleep until the timer
}
