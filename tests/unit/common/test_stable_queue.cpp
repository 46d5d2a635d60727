#include <catch2/catch.hpp>

#include <common/stable_queue.hpp>
#include <string>
#include <vector>

TEST_CASE("StableQueue is a FIFO whose elements keep their addresses", "[common]") {
  common::StableQueue<std::string> q;
  std::vector<std::string*> addresses;
  for (int i = 0; i < 40; ++i) addresses.push_back(&q.push_back(std::to_string(i)));
  REQUIRE(q.size() == 40);
  // Growing the ring moved pointers, not elements.
  int i = 0;
  for (auto& s : q) {
    CHECK(&s == addresses[i]);
    CHECK(s == std::to_string(i));
    ++i;
  }
  CHECK(q.front() == "0");
  CHECK(q.back() == "39");
  CHECK(&q[17] == addresses[17]);
  q.pop_front();
  CHECK(q.front() == "1");
  CHECK(&q.front() == addresses[1]);
}

TEST_CASE("StableQueue reuses popped elements instead of allocating", "[common]") {
  common::StableQueue<std::vector<int>> q;
  q.push_back(std::vector<int>(100, 1));
  std::vector<int>* first = &q.front();
  q.pop_front();
  CHECK(q.empty());
  // The spare element is move-assigned over: same object, new value.
  auto& again = q.push_back(std::vector<int>(3, 7));
  CHECK(&again == first);
  CHECK(again == std::vector<int>(3, 7));
  // Wrap-around keeps order.
  for (int round = 0; round < 100; ++round) {
    q.push_back({round});
    CHECK(q.size() == 2);
    q.pop_front();
    CHECK(q.front() == std::vector<int>{round});
  }
  q.clear();
  CHECK(q.empty());
}
