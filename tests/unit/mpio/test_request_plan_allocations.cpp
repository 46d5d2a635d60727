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

// Every form that allocates or frees with plain (unaligned) operator new, replaced as a set:
// a block from one allocator must never reach another's delete (AddressSanitizer reports an
// alloc-dealloc mismatch when, say, Catch's nothrow new comes from the runtime and its delete
// from here). Aligned forms are left to the runtime on both sides.
namespace {
void* counted_malloc(std::size_t size) noexcept {
  allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(size == 0 ? 1 : size);
}
void* counted_new(std::size_t size) {
  if (void* p = counted_malloc(size)) return p;
  throw std::bad_alloc();
}
}  // namespace

void* operator new(std::size_t size) {
  return counted_new(size);
}
void* operator new[](std::size_t size) {
  return counted_new(size);
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  return counted_malloc(size);
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  return counted_malloc(size);
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
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
