#include <catch2/catch.hpp>

#include <mpio/path_selector.hpp>
#include <vector>

using namespace mpio;

TEST_CASE("round-robin sends rr_min_io commands per path, then moves on", "[mpio][selector]") {
  auto rr = make_path_selector("round-robin", 2);
  std::vector<PathLoad> paths{{.path = 0}, {.path = 1}, {.path = 2}};
  std::vector<size_t> picks;
  for (int i = 0; i < 7; ++i) picks.push_back(rr->select(paths, 4096));
  CHECK(picks == std::vector<size_t>{0, 0, 1, 1, 2, 2, 0});
}

TEST_CASE("round-robin skips a failed path and takes it back when it returns", "[mpio][selector]") {
  auto rr = make_path_selector("round-robin", 1);
  std::vector<PathLoad> both{{.path = 0}, {.path = 1}}, only_1{{.path = 1}};
  CHECK(rr->select(both, 0) == 0);
  CHECK(rr->select(only_1, 0) == 1);
  CHECK(rr->select(only_1, 0) == 1);
  CHECK(rr->select(both, 0) == 0);
  CHECK(rr->select(both, 0) == 1);
}

TEST_CASE("queue-length picks the path with the fewest commands in flight", "[mpio][selector]") {
  auto ql = make_path_selector("queue-length");
  std::vector<PathLoad> paths{
      {.path = 0, .in_flight = 3}, {.path = 1, .in_flight = 1}, {.path = 2, .in_flight = 1}};
  CHECK(ql->select(paths, 0) == 1);  // tie between 1 and 2 goes to the lower index
}

TEST_CASE("service-time weighs in-flight bytes by relative throughput", "[mpio][selector]") {
  auto st = make_path_selector("service-time");
  // Path 1 has twice the bytes in flight but four times the throughput.
  std::vector<PathLoad> paths{{.path = 0, .in_flight_bytes = 1 << 20, .relative_throughput = 1},
                              {.path = 1, .in_flight_bytes = 2 << 20, .relative_throughput = 4}};
  CHECK(st->select(paths, 1 << 20) == 1);
  paths[1].relative_throughput = 1;
  CHECK(st->select(paths, 1 << 20) == 0);
}

TEST_CASE("unknown selector names are refused", "[mpio][selector]") {
  CHECK(make_path_selector("random") == nullptr);
  for (auto name : path_selector_names) CHECK(make_path_selector(name) != nullptr);
}
