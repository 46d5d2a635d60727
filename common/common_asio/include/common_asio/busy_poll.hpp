// io_context::run() with hybrid polling: a thread that has run out of ready handlers keeps
// polling (epoll_wait with a zero timeout) for up to a window before it sleeps, while the
// caller's predicate says an event is due soon. A sleeping thread pays a wake-up on every
// event, which at queue depth 1 is most of a request's time through the bridge; polling trades
// CPU for that latency. Included by the daemon's main loop only: it pulls in Asio.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>

namespace common_asio {

// Returns when `io` is stopped or out of work, as io.run() does. `worth_polling()` is asked each
// time the ready handlers are done; with a zero window this is io.run().
template <class Predicate>
void run_busy_polling(boost::asio::io_context& io, std::chrono::microseconds window,
                      Predicate worth_polling) {
  if (window.count() <= 0) {
    io.run();
    return;
  }
  using clock = std::chrono::steady_clock;
  while (!io.stopped()) {
    if (io.poll() > 0) continue;
    if (io.stopped()) break;
    if (worth_polling()) {
      const auto until = clock::now() + window;
      bool ran = false;
      while (!ran && !io.stopped() && clock::now() < until) ran = io.poll() > 0;
      if (ran || io.stopped()) continue;
    }
    io.run_one();  // sleeps until the next event
  }
}

}  // namespace common_asio
