// The data path allocates nothing per request once its pools are warm: planning a request into
// a reused CommandPlan must not either. Counted by replacing the global operator new for this
// test binary; only the calls between the two reads of the counter matter.
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdlib>
#include <mpio/request_plan.hpp>
#include <new>

namespace {
std::atomic<size_t> allocations{0};
}  // namespace

void* operator new(std::size_t size) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}

namespace {

blockdev::IoRequest request(blockdev::IoOp op, uint64_t offset, uint64_t length) {
  blockdev::IoRequest r;
  r.op = op;
  r.offset = offset;
  r.length = length;
  r.fua = true;
  r.may_unmap = true;
  return r;
}

}  // namespace

TEST_CASE("planning into a warm plan allocates nothing for reads, writes, flushes and zeroes",
          "[mpio][plan]") {
  mpio::CommandLimits limits;
  limits.block_size = 512;
  limits.command_bytes = 64u << 10;
  limits.max_write_same_length = 128;
  mpio::CommandPlan plan;
  const auto big_read = request(blockdev::IoOp::read, 0, 1u << 20);
  const auto write = request(blockdev::IoOp::write, 4096, 200u << 10);
  const auto flush = request(blockdev::IoOp::flush, 0, 0);
  const auto zeroes = request(blockdev::IoOp::write_zeroes, 0, 16 * 128 * 512);
  for (const auto* r : {&big_read, &zeroes}) mpio::plan_request(*r, limits, plan);

  const size_t before = allocations.load();
  for (int i = 0; i < 100; ++i)
    for (const auto* r : {&big_read, &write, &flush, &zeroes}) mpio::plan_request(*r, limits, plan);
  const size_t after = allocations.load();
  CHECK(after - before == 0);
  CHECK(plan.size() == 16);

  // The counter sees the allocations of a cold plan, so the zero above means something.
  mpio::CommandPlan cold;
  const size_t cold_before = allocations.load();
  mpio::plan_request(big_read, limits, cold);
  CHECK(allocations.load() > cold_before);
}
