#include <catch2/catch.hpp>

#include <chrono>
#include <mpio/no_path.hpp>

using Action = mpio::NoPathDecision::Action;
using blockdev::NoPathRetry;
using std::chrono::milliseconds;

namespace {

constexpr milliseconds polling_interval(5000);

mpio::NoPathDecision decide(NoPathRetry policy, bool closing = false, bool failing = false) {
  return mpio::decide_no_path(policy, polling_interval, closing, failing);
}

}  // namespace

TEST_CASE("no_path_retry fail ends a command without a path at once", "[mpio][no_path]") {
  const auto d = decide({.mode = NoPathRetry::Mode::fail});
  CHECK(d.action == Action::fail);
  CHECK_FALSE(d.deadline);
}

TEST_CASE("no_path_retry queue holds a command without a deadline", "[mpio][no_path]") {
  const auto d = decide({.mode = NoPathRetry::Mode::queue});
  CHECK(d.action == Action::queue);
  CHECK_FALSE(d.deadline);
}

TEST_CASE("no_path_retry N holds a command for N polling intervals", "[mpio][no_path]") {
  const auto d = decide({.mode = NoPathRetry::Mode::intervals, .intervals = 3});
  CHECK(d.action == Action::queue);
  CHECK(d.deadline == milliseconds(15000));
}

TEST_CASE("no_path_retry 0 intervals still waits one polling interval", "[mpio][no_path]") {
  CHECK(decide({.mode = NoPathRetry::Mode::intervals, .intervals = 0}).deadline ==
        polling_interval);
}

TEST_CASE("a closing device fails a command without a path whatever the policy",
          "[mpio][no_path]") {
  CHECK(decide({.mode = NoPathRetry::Mode::queue}, true).action == Action::fail);
  CHECK(decide({.mode = NoPathRetry::Mode::intervals, .intervals = 3}, true).action ==
        Action::fail);
}

TEST_CASE("once the deadline ran out commands fail at once until a path returns",
          "[mpio][no_path]") {
  const auto d = decide({.mode = NoPathRetry::Mode::intervals, .intervals = 3}, false, true);
  CHECK(d.action == Action::fail);
  CHECK_FALSE(d.deadline);
}
