// One byte budget for the payload buffers of every connection of an NBD server, whatever export
// each serves (nbd.total_buffer_mib). A per-connection budget bounds one client; with one
// export per LUN, eight LUNs busy at once would each fill theirs, and the process would hold
// eight times what one LUN needs, where a shared budget lets the busy ones share what is there.
//
// The server asks before it allocates a request's payload buffer (take), and says when a
// buffer is freed (give_back) or kept for the next request of its connection (keep, reuse). A
// take that does not fit is queued: that connection reads no further request from its socket
// until it is granted (its client's requests wait in the socket, the TCP window or the unix
// socket's buffer fills, and the client waits: back-pressure). Grants are first come, first
// served, so a large request is not overtaken forever by small ones.
//
// Buffers kept for reuse (and those an idle connection still holds) count too, but they are
// only kept while nobody waits and the budget is not exceeded: a take that does not fit names every
// holder of kept buffers to free them first (Take::reclaim), and may_keep() says a buffer done with
// is freed, not kept, while a take waits.
//
// Progress: a connection with nothing in use is granted at once, whatever the budget says and
// even ahead of the queue. So a request larger than the whole budget still runs, and a
// connection whose client stops reading its replies (its buffers held until it leaves) cannot
// stop the others: each keeps at least one request going. Every other waiter holds buffers
// only for requests in flight, which complete (or time out at the device, or fail with the
// connection) and give their bytes back, and then it has nothing in use and is granted. So
// every take is granted eventually. The budget is exceeded only by such grants: at most one
// request per connection that had nothing else in use.
//
// Pure bookkeeping (no clock, no I/O, one thread): the server carries out what it says,
// notifying the connections it grants and freeing the kept buffers it names.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <vector>

namespace nbd {

class BufferBudget {
 public:
  // Whoever holds buffers: one connection. The server numbers them.
  using Holder = uint64_t;

  // limit_bytes 0: no limit (every take is granted at once; buffers are always kept).
  explicit BufferBudget(size_t limit_bytes = 0) : limit_(limit_bytes) {}

  struct Take {
    bool granted = false;  // else queued: granted later, named by give_back, keep or leave
    // Holders whose kept buffers must be freed now (each freed buffer given back with
    // From::kept), before the budget is exceeded or a take waits. Set whenever the take did
    // not fit at once, granted or not: as they give back, the queue is served.
    std::vector<Holder> reclaim;
  };

  // `bytes` more for `holder`: one request's new payload buffer. At most one take per holder
  // is queued at a time (a connection reads one request at a time).
  Take take(Holder holder, size_t bytes);

  // Where freed bytes were: in use by a request, or kept for reuse.
  enum class From { in_use, kept };
  // `holder` freed `bytes`. Returns the holders granted now, in the order of their takes.
  std::vector<Holder> give_back(Holder holder, size_t bytes, From from = From::in_use);
  // `bytes` in use by `holder` are kept for its next request (still held), or taken back into
  // use by one. keep() lowers what the holder has in use, so it may grant a waiter.
  std::vector<Holder> keep(Holder holder, size_t bytes);
  void reuse(Holder holder, size_t bytes);
  // The holder is gone: its bytes are given back, its queued take dropped. Returns the holders
  // granted now.
  std::vector<Holder> leave(Holder holder);

  // Whether a buffer a request is done with may be kept: not while a take waits for bytes,
  // nor while more than the budget is held (after a grant above it).
  bool may_keep() const { return queue_.empty() && (limit_ == 0 || held_ <= limit_); }
  bool waiting(Holder holder) const;

  size_t limit() const { return limit_; }
  size_t held() const { return held_; }  // in use and kept, every holder
  size_t kept() const { return kept_; }
  size_t in_use(Holder holder) const;
  size_t kept(Holder holder) const;

 private:
  struct Account {
    size_t in_use = 0;
    size_t kept = 0;
    bool waiting = false;
  };
  struct Waiter {
    Holder holder;
    size_t bytes;
  };

  bool fits(size_t bytes) const {
    return limit_ == 0 || (held_ <= limit_ && bytes <= limit_ - held_);
  }
  void grant(Account& account, size_t bytes);
  std::vector<Holder> serve();

  size_t limit_;
  size_t held_ = 0;
  size_t kept_ = 0;
  std::map<Holder, Account> accounts_;
  std::deque<Waiter> queue_;
};

}  // namespace nbd
