// nbd::BufferBudget: the payload buffers of every connection of a server under one byte budget,
// as scripted sequences of take, give back, keep and leave.
#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <map>
#include <random>
#include <vector>

#include "nbd/buffer_budget.hpp"

namespace {

using nbd::BufferBudget;
using Holders = std::vector<BufferBudget::Holder>;
using From = BufferBudget::From;

constexpr size_t MiB = size_t{1} << 20;
constexpr BufferBudget::Holder A = 1, B = 2, C = 3;

}  // namespace

TEST_CASE("budget: no limit grants every take and always keeps", "[nbd][budget]") {
  BufferBudget budget;
  for (int i = 0; i < 100; ++i) CHECK(budget.take(A, 32 * MiB).granted);
  CHECK(budget.held() == 100 * 32 * MiB);
  CHECK(budget.may_keep());
  CHECK(budget.give_back(A, 32 * MiB).empty());
  CHECK(budget.held() == 99 * 32 * MiB);
}

TEST_CASE("budget: takes within it are granted, the next waits until enough comes back",
          "[nbd][budget]") {
  BufferBudget budget(4 * MiB);
  CHECK(budget.take(A, 1 * MiB).granted);
  CHECK(budget.take(A, 2 * MiB).granted);
  CHECK(budget.take(B, 1 * MiB).granted);
  CHECK(budget.held() == 4 * MiB);
  // A has requests in flight: it waits for bytes to come back.
  const auto take = budget.take(A, 2 * MiB);
  CHECK_FALSE(take.granted);
  CHECK(take.reclaim.empty());  // nobody keeps anything
  CHECK(budget.waiting(A));
  CHECK_FALSE(budget.may_keep());
  // 1 MiB back is not enough for 2 MiB; 2 MiB back is.
  CHECK(budget.give_back(B, 1 * MiB).empty());
  CHECK(budget.waiting(A));
  CHECK(budget.give_back(A, 1 * MiB) == Holders{A});
  CHECK_FALSE(budget.waiting(A));
  CHECK(budget.in_use(A) == 4 * MiB);
  CHECK(budget.held() == 4 * MiB);
  CHECK(budget.may_keep());
}

TEST_CASE("budget: waiters are served first come, first served", "[nbd][budget]") {
  BufferBudget budget(4 * MiB);
  CHECK(budget.take(A, 2 * MiB).granted);
  CHECK(budget.take(B, 1 * MiB).granted);
  CHECK(budget.take(C, 1 * MiB).granted);
  CHECK_FALSE(budget.take(A, 2 * MiB).granted);
  CHECK_FALSE(budget.take(B, 1 * MiB).granted);
  // B's 1 MiB would fit once C gives back, but A came first and needs 2.
  CHECK(budget.give_back(C, 1 * MiB).empty());
  CHECK(budget.waiting(A));
  CHECK(budget.waiting(B));
  // C, with nothing in use, is not made to wait (see the next cases).
  CHECK(budget.take(C, 512 * 1024).granted);
  // A's first request completes: A's 2 MiB fits, B's 1 MiB not yet.
  CHECK(budget.give_back(A, 2 * MiB) == Holders{A});
  CHECK(budget.waiting(B));
  CHECK(budget.give_back(C, 512 * 1024) == Holders{B});
  CHECK(budget.held() == 4 * MiB);
}

TEST_CASE("budget: a request larger than the budget runs when its connection holds nothing",
          "[nbd][budget]") {
  BufferBudget budget(4 * MiB);
  CHECK(budget.take(A, 4 * MiB).granted);
  // B holds nothing: granted at once, although the budget is full and 32 MiB is above it.
  const auto take = budget.take(B, 32 * MiB);
  CHECK(take.granted);
  CHECK(budget.held() == 36 * MiB);
  CHECK_FALSE(budget.may_keep());  // nothing is kept above the budget
  // With something in flight, B waits like anyone else, until its own request is done.
  CHECK_FALSE(budget.take(B, 32 * MiB).granted);
  CHECK(budget.give_back(A, 4 * MiB).empty());  // 32 MiB never fits in 4
  CHECK(budget.give_back(B, 32 * MiB) == Holders{B});
  CHECK(budget.held() == 32 * MiB);
}

TEST_CASE("budget: a waiter whose own requests completed goes ahead of a head that must wait",
          "[nbd][budget]") {
  BufferBudget budget(4 * MiB);
  CHECK(budget.take(A, 3 * MiB).granted);
  CHECK(budget.take(B, 1 * MiB).granted);
  CHECK_FALSE(budget.take(A, 3 * MiB).granted);  // head: needs 3, waits for A's or B's bytes
  CHECK_FALSE(budget.take(B, 1 * MiB).granted);
  // A client that never reads its replies keeps A's 3 MiB: B's request completes, and B,
  // holding nothing now, is not held behind A.
  CHECK(budget.give_back(B, 1 * MiB) == Holders{B});
  CHECK(budget.waiting(A));
  CHECK(budget.in_use(B) == 1 * MiB);
}

TEST_CASE("budget: kept buffers are freed first when a take does not fit", "[nbd][budget]") {
  BufferBudget budget(4 * MiB);
  // B was busy and keeps 3 MiB for its next requests; A is busy now.
  CHECK(budget.take(B, 3 * MiB).granted);
  CHECK(budget.keep(B, 3 * MiB).empty());
  CHECK(budget.kept() == 3 * MiB);
  CHECK(budget.kept(B) == 3 * MiB);
  CHECK(budget.in_use(B) == 0);
  CHECK(budget.take(A, 1 * MiB).granted);
  const auto take = budget.take(A, 2 * MiB);
  CHECK_FALSE(take.granted);
  CHECK(take.reclaim == Holders{B});
  CHECK_FALSE(budget.may_keep());
  // B frees its kept buffers one by one: A is granted as soon as enough is back.
  CHECK(budget.give_back(B, 1 * MiB, From::kept).empty());
  CHECK(budget.give_back(B, 2 * MiB, From::kept) == Holders{A});
  CHECK(budget.kept() == 0);
  CHECK(budget.held() == 3 * MiB);
}

TEST_CASE("budget: kept buffers go even when the take is granted above the budget",
          "[nbd][budget]") {
  BufferBudget budget(2 * MiB);
  CHECK(budget.take(A, 2 * MiB).granted);
  CHECK(budget.keep(A, 2 * MiB).empty());  // A is idle now, keeping 2 MiB
  // B holds nothing: granted, and A is named to free what it keeps.
  const auto take = budget.take(B, 1 * MiB);
  CHECK(take.granted);
  CHECK(take.reclaim == Holders{A});
  CHECK(budget.give_back(A, 2 * MiB, From::kept).empty());
  CHECK(budget.held() == 1 * MiB);
}

TEST_CASE("budget: reuse and keep move bytes without changing what is held", "[nbd][budget]") {
  BufferBudget budget(4 * MiB);
  CHECK(budget.take(A, 1 * MiB).granted);
  CHECK(budget.keep(A, 1 * MiB).empty());
  budget.reuse(A, 1 * MiB);
  CHECK(budget.in_use(A) == 1 * MiB);
  CHECK(budget.kept(A) == 0);
  CHECK(budget.held() == 1 * MiB);
  // Keeping the last bytes in use of a waiter leaves it nothing in use: granted.
  CHECK(budget.take(B, 3 * MiB).granted);
  CHECK_FALSE(budget.take(A, 1 * MiB).granted);
  CHECK(budget.keep(A, 1 * MiB) == Holders{A});
}

TEST_CASE("budget: a connection that leaves gives everything back and drops its take",
          "[nbd][budget]") {
  BufferBudget budget(4 * MiB);
  CHECK(budget.take(A, 2 * MiB).granted);
  CHECK(budget.take(B, 1 * MiB).granted);
  CHECK(budget.take(C, 1 * MiB).granted);
  CHECK_FALSE(budget.take(A, 2 * MiB).granted);
  CHECK_FALSE(budget.take(C, 1 * MiB).granted);
  // A leaves while waiting: its bytes and its take are gone; C's 1 MiB fits now.
  CHECK(budget.leave(A) == Holders{C});
  CHECK_FALSE(budget.waiting(A));
  CHECK(budget.held() == 3 * MiB);
  CHECK(budget.keep(B, 1 * MiB).empty());
  CHECK(budget.leave(B).empty());
  CHECK(budget.kept() == 0);
  CHECK(budget.leave(C).empty());
  CHECK(budget.held() == 0);
  // Unknown holders are ignored, and nothing goes below zero.
  CHECK(budget.give_back(A, 1 * MiB).empty());
  CHECK(budget.take(A, 1 * MiB).granted);
  CHECK(budget.give_back(A, 5 * MiB).empty());
  CHECK(budget.held() == 0);
}

TEST_CASE("budget: a second take of a waiting connection is not queued twice", "[nbd][budget]") {
  BufferBudget budget(1 * MiB);
  CHECK(budget.take(A, 1 * MiB).granted);
  CHECK_FALSE(budget.take(A, 1 * MiB).granted);
  CHECK_FALSE(budget.take(A, 1 * MiB).granted);
  CHECK(budget.give_back(A, 1 * MiB) == Holders{A});
  CHECK(budget.held() == 1 * MiB);
}

// Connections that each keep a few requests in flight, random sizes, completing in random
// order: every take is granted in the end, and what is held stays within the budget but for
// the grants made to a connection that had nothing in use, one request each at most.
TEST_CASE("budget: every take is granted in the end, within the budget plus one request each",
          "[nbd][budget]") {
  constexpr size_t kLimit = 8 * MiB;
  constexpr int kHolders = 6;
  BufferBudget budget(kLimit);
  std::mt19937 random(20261206);
  std::map<BufferBudget::Holder, std::vector<size_t>> in_flight;
  std::map<BufferBudget::Holder, size_t> wanted;  // queued takes
  size_t granted_takes = 0, queued_takes = 0;
  auto on_granted = [&](const Holders& holders) {
    for (auto h : holders) {
      REQUIRE(wanted.count(h) == 1);
      in_flight[h].push_back(wanted[h]);
      wanted.erase(h);
      ++granted_takes;
    }
  };
  for (int step = 0; step < 20000; ++step) {
    const BufferBudget::Holder h = 1 + random() % kHolders;
    if (random() % 2 == 0 && wanted.count(h) == 0) {
      const size_t bytes = (random() % 8 == 0) ? 12 * MiB : (1 + random() % 2048) * 1024;
      const auto take = budget.take(h, bytes);
      REQUIRE(take.reclaim.empty());  // nothing is kept in this script
      if (take.granted) {
        in_flight[h].push_back(bytes);
        ++granted_takes;
      } else {
        wanted[h] = bytes;
        ++queued_takes;
      }
    } else if (!in_flight[h].empty()) {
      auto& mine = in_flight[h];
      const size_t i = random() % mine.size();
      const size_t bytes = mine[i];
      mine.erase(mine.begin() + static_cast<std::ptrdiff_t>(i));
      on_granted(budget.give_back(h, bytes));
    }
    // Above the budget only by requests granted to a connection with nothing else in use:
    // at most the largest request (12 MiB) per connection.
    size_t total = 0;
    for (const auto& [holder, sizes] : in_flight)
      for (size_t s : sizes) total += s;
    REQUIRE(total == budget.held());
    REQUIRE(budget.held() <= kLimit + kHolders * 12 * MiB);
  }
  // Everything in flight completes: every queued take is granted.
  for (int round = 0; round < 100 && !wanted.empty(); ++round) {
    for (auto& [h, sizes] : in_flight) {
      while (!sizes.empty()) {
        const size_t bytes = sizes.back();
        sizes.pop_back();
        on_granted(budget.give_back(h, bytes));
      }
    }
  }
  CHECK(wanted.empty());
  CHECK(queued_takes > 100);  // the script did make connections wait
  CHECK(granted_takes > 1000);
}
