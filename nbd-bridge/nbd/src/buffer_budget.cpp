#include "nbd/buffer_budget.hpp"

#include <algorithm>

namespace nbd {

BufferBudget::Take BufferBudget::take(Holder holder, size_t bytes) {
  Account& account = accounts_[holder];
  Take out;
  if (account.waiting) return out;  // one take at a time: the first is still queued
  if (queue_.empty() && fits(bytes)) {
    grant(account, bytes);
    out.granted = true;
    return out;
  }
  // Kept buffers serve nobody's request in flight: they go before anyone waits or the budget
  // is exceeded.
  for (const auto& [other, other_account] : accounts_)
    if (other_account.kept > 0) out.reclaim.push_back(other);
  if (account.in_use == 0) {
    // Nothing of its own to wait for: never made to wait on the others (see the header).
    grant(account, bytes);
    out.granted = true;
    return out;
  }
  account.waiting = true;
  queue_.push_back({holder, bytes});
  return out;
}

std::vector<BufferBudget::Holder> BufferBudget::give_back(Holder holder, size_t bytes, From from) {
  const auto it = accounts_.find(holder);
  if (it == accounts_.end()) return {};
  size_t& pool = from == From::kept ? it->second.kept : it->second.in_use;
  bytes = std::min(bytes, pool);  // never below zero, whatever the caller says
  pool -= bytes;
  held_ -= bytes;
  if (from == From::kept) kept_ -= bytes;
  return serve();
}

std::vector<BufferBudget::Holder> BufferBudget::keep(Holder holder, size_t bytes) {
  const auto it = accounts_.find(holder);
  if (it == accounts_.end()) return {};
  bytes = std::min(bytes, it->second.in_use);
  it->second.in_use -= bytes;
  it->second.kept += bytes;
  kept_ += bytes;
  return serve();
}

void BufferBudget::reuse(Holder holder, size_t bytes) {
  const auto it = accounts_.find(holder);
  if (it == accounts_.end()) return;
  bytes = std::min(bytes, it->second.kept);
  it->second.kept -= bytes;
  it->second.in_use += bytes;
  kept_ -= bytes;
}

std::vector<BufferBudget::Holder> BufferBudget::leave(Holder holder) {
  const auto it = accounts_.find(holder);
  if (it == accounts_.end()) return {};
  held_ -= it->second.in_use + it->second.kept;
  kept_ -= it->second.kept;
  accounts_.erase(it);
  std::erase_if(queue_, [holder](const Waiter& w) { return w.holder == holder; });
  return serve();
}

bool BufferBudget::waiting(Holder holder) const {
  const auto it = accounts_.find(holder);
  return it != accounts_.end() && it->second.waiting;
}

size_t BufferBudget::in_use(Holder holder) const {
  const auto it = accounts_.find(holder);
  return it == accounts_.end() ? 0 : it->second.in_use;
}

size_t BufferBudget::kept(Holder holder) const {
  const auto it = accounts_.find(holder);
  return it == accounts_.end() ? 0 : it->second.kept;
}

void BufferBudget::grant(Account& account, size_t bytes) {
  account.in_use += bytes;
  account.waiting = false;
  held_ += bytes;
}

// First come, first served while the head fits; behind a head that must wait, a holder whose
// requests have all completed since it queued is granted (it has nothing left to wait for).
std::vector<BufferBudget::Holder> BufferBudget::serve() {
  std::vector<Holder> granted;
  while (!queue_.empty()) {
    const Waiter head = queue_.front();
    Account& account = accounts_[head.holder];
    if (!fits(head.bytes) && account.in_use > 0) break;
    queue_.pop_front();
    grant(account, head.bytes);
    granted.push_back(head.holder);
  }
  for (auto it = queue_.begin(); it != queue_.end();) {
    Account& account = accounts_[it->holder];
    if (account.in_use > 0) {
      ++it;
      continue;
    }
    grant(account, it->bytes);
    granted.push_back(it->holder);
    it = queue_.erase(it);
  }
  return granted;
}

}  // namespace nbd
