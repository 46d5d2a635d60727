// A FIFO whose elements keep their addresses while queued, and whose storage is reused.
//
// The session's output queue needs both: the driver gathers iovecs straight from the queued
// frames, and a frame is pushed and popped for every PDU. std::deque keeps addresses but
// returns a node to the allocator each time the front passes it (every few frames for a large
// element); here popped elements go to a spare list and are move-assigned over when pushed
// again, so a steady stream allocates nothing once the queue has reached its working size.
#pragma once

#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

namespace common {

template <class T>
class StableQueue {
 public:
  class iterator {
   public:
    iterator(const StableQueue* q, size_t i) : q_(q), i_(i) {}
    T& operator*() const { return *q_->ring_[(q_->head_ + i_) & q_->mask()]; }
    T* operator->() const { return &**this; }
    iterator& operator++() {
      ++i_;
      return *this;
    }
    bool operator==(const iterator& other) const { return i_ == other.i_; }

   private:
    const StableQueue* q_;
    size_t i_;
  };

  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }
  T& operator[](size_t i) { return *ring_[(head_ + i) & mask()]; }
  T& front() { return *ring_[head_]; }
  T& back() { return *ring_[(head_ + size_ - 1) & mask()]; }
  iterator begin() const { return {this, 0}; }
  iterator end() const { return {this, size_}; }

  T& push_back(T&& value) {
    if (size_ == ring_.size()) grow();
    T* slot;
    if (!spare_.empty()) {
      slot = spare_.back().release();
      spare_.pop_back();
      *slot = std::move(value);
    } else {
      slot = new T(std::move(value));
    }
    ring_[(head_ + size_) & mask()] = slot;
    ++size_;
    return *slot;
  }

  void pop_front() {
    spare_.emplace_back(ring_[head_]);
    ring_[head_] = nullptr;
    head_ = (head_ + 1) & mask();
    --size_;
  }

  void clear() {
    while (!empty()) pop_front();
  }

  StableQueue() = default;
  StableQueue(const StableQueue&) = delete;
  StableQueue& operator=(const StableQueue&) = delete;
  ~StableQueue() {
    for (size_t i = 0; i < size_; ++i) delete ring_[(head_ + i) & mask()];
  }

 private:
  size_t mask() const { return ring_.size() - 1; }

  // Doubles the ring of pointers (the elements themselves never move).
  void grow() {
    std::vector<T*> bigger(ring_.empty() ? 16 : ring_.size() * 2, nullptr);
    for (size_t i = 0; i < size_; ++i) bigger[i] = ring_[(head_ + i) & mask()];
    ring_ = std::move(bigger);
    head_ = 0;
  }

  std::vector<T*> ring_;  // power-of-two size; the queued elements from head_
  size_t head_ = 0;
  size_t size_ = 0;
  std::vector<std::unique_ptr<T>> spare_;
};

}  // namespace common
