#include "nbd_server/server.hpp"

#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <span>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <common_asio/gather_cursor.hpp>

#include <blockdev/block_device.hpp>
#include "exports.hpp"
#include "nbd/buffer_budget.hpp"
#include "nbd/errors.hpp"
#include "nbd/export.hpp"
#include "nbd/handshake.hpp"
#include "nbd/reply.hpp"
#include "nbd/request.hpp"
#include "nbd/wire.hpp"
#include "tls.hpp"

namespace nbd {
namespace {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using Protocol = asio::generic::stream_protocol;
using Socket = Protocol::socket;
using Acceptor = asio::basic_socket_acceptor<Protocol>;
using boost::system::error_code;

bool is_disconnect(const error_code& ec) {
  return ec == asio::error::eof || ec == asio::error::connection_reset ||
         ec == asio::error::broken_pipe || ec == asio::error::operation_aborted ||
         ec == asio::error::bad_descriptor;
}

// RFC 3986 unreserved characters pass; everything else is percent-encoded. '/' is kept where
// the caller says so (socket paths).
std::string uri_escape(std::string_view s, bool keep_slash) {
  static constexpr char digits[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                            (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
                            c == '~' || (keep_slash && c == '/');
    if (unreserved) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(digits[c >> 4]);
      out.push_back(digits[c & 0xf]);
    }
  }
  return out;
}

// Send buffer of each client socket (the kernel caps it at net.core.wmem_max).
constexpr int kReplySocketBuffer = 4 * 1024 * 1024;

// Server::counters(), shared with the connections (which may outlive the server's Impl).
struct CounterCells {
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> errors{0};
  std::atomic<uint64_t> buffer_bytes{0};  // payload buffers held by all connections
  std::atomic<uint64_t> buffer_allocations{0};
  std::atomic<uint64_t> refused_max_clients{0};
  std::atomic<uint64_t> handshake_timeouts{0};
  std::atomic<uint64_t> fd_reserve_pauses{0};
  std::atomic<uint64_t> buffer_waits{0};  // reads held back for the shared payload budget
};

class Connection;

using PayloadBuffer = std::unique_ptr<std::byte[]>;

// The server-wide payload budget (ServerOptions::max_bytes_total) as the connections use it:
// nbd::BufferBudget decides, this carries out what it says on the connections it names
// (notifying the ones it grants, freeing the kept buffers it reclaims). Every connection of
// every export shares it; all of it runs on the io_context's thread.
//
// A buffer given back while a connection waits for as many bytes is handed to it rather than
// freed: under a busy budget every request would otherwise unmap a buffer (glibc maps those of
// 128 KiB and more, main() fixes the threshold) and map and fault in another of the same size.
class SharedBudget {
 public:
  explicit SharedBudget(size_t limit_bytes) : budget_(limit_bytes) {}
  SharedBudget(const SharedBudget&) = delete;
  SharedBudget& operator=(const SharedBudget&) = delete;

  BufferBudget::Holder join(Connection& connection) {
    const BufferBudget::Holder id = next_id_++;
    holders_[id] = &connection;
    return id;
  }
  void leave(BufferBudget::Holder id) {
    holders_.erase(id);
    waiting_bytes_.erase(id);
    handed_.erase(id);
    notify(budget_.leave(id), nullptr, 0);
  }
  // True: granted now. False: queued; the connection is notified once waiting(id) is false.
  bool take(BufferBudget::Holder id, size_t bytes);
  // `buffer` (of `bytes`) is done with: handed to a connection this grants, or freed.
  void give_back(BufferBudget::Holder id, PayloadBuffer buffer, size_t bytes,
                 BufferBudget::From from) {
    notify(budget_.give_back(id, bytes, from), &buffer, bytes);
  }
  void keep(BufferBudget::Holder id, size_t bytes) { notify(budget_.keep(id, bytes), nullptr, 0); }
  void reuse(BufferBudget::Holder id, size_t bytes) { budget_.reuse(id, bytes); }
  bool waiting(BufferBudget::Holder id) const { return budget_.waiting(id); }
  bool may_keep() const { return budget_.may_keep(); }
  // The buffer handed to `id` with its grant, if one was (of the size it asked for).
  PayloadBuffer claim(BufferBudget::Holder id) {
    const auto it = handed_.find(id);
    if (it == handed_.end()) return nullptr;
    PayloadBuffer buffer = std::move(it->second);
    handed_.erase(it);
    return buffer;
  }

 private:
  // Wakes the connections granted; the first that waited for exactly `bytes` gets `*buffer`.
  void notify(const std::vector<BufferBudget::Holder>& granted, PayloadBuffer* buffer,
              size_t bytes);

  BufferBudget budget_;
  std::map<BufferBudget::Holder, Connection*> holders_;
  std::map<BufferBudget::Holder, size_t> waiting_bytes_;  // the size of each queued take
  std::map<BufferBudget::Holder, PayloadBuffer> handed_;  // granted with a buffer, not claimed
  BufferBudget::Holder next_id_ = 1;
};

// The payload buffer bytes one connection holds (in use by its requests, kept for reuse), the
// server-wide total beside it for the counters, and its account in the shared budget. Bytes
// are taken from the budget before a buffer is allocated (Connection::reserve_payload), so
// allocated() only records them.
struct BufferAccount {
  BufferAccount(std::shared_ptr<CounterCells> totals, std::shared_ptr<SharedBudget> budget,
                Connection& connection)
      : totals(std::move(totals)), budget(std::move(budget)), id(this->budget->join(connection)) {}
  // After every Op (declared before them): nothing is held any more.
  ~BufferAccount() { budget->leave(id); }
  BufferAccount(const BufferAccount&) = delete;
  BufferAccount& operator=(const BufferAccount&) = delete;

  size_t held = 0;
  std::shared_ptr<CounterCells> totals;
  std::shared_ptr<SharedBudget> budget;
  BufferBudget::Holder id;

  void allocated(size_t bytes) {
    held += bytes;
    totals->buffer_bytes.fetch_add(bytes, std::memory_order_relaxed);
  }
  void freed(PayloadBuffer buffer, size_t bytes, bool kept) {
    held -= bytes;
    totals->buffer_bytes.fetch_sub(bytes, std::memory_order_relaxed);
    budget->give_back(id, std::move(buffer), bytes,
                      kept ? BufferBudget::From::kept : BufferBudget::From::in_use);
  }
};

// One request from header to written reply. It owns its payload buffer, which the device
// uses until `done` runs and the writer uses until the reply is on the wire.
struct Op {
  explicit Op(BufferAccount& account) : account(account) {}
  ~Op() { release_buffer(); }
  Op(const Op&) = delete;
  Op& operator=(const Op&) = delete;

  BufferAccount& account;  // the connection's; it outlives every Op (declared before them)
  Request request;
  blockdev::IoRequest io;
  std::unique_ptr<std::byte[]> buffer;
  uint32_t buffer_capacity = 0;
  bool kept = false;           // among the connection's spare ops, its buffer kept for reuse
  uint32_t payload_bytes = 0;  // counted against the connection's byte budget
  uint32_t error = 0;
  std::string message;
  // Encoded reply: header, then optionally the READ data from `buffer`.
  std::array<std::byte, 28> header{};
  size_t header_size = 0;
  std::vector<std::byte> chunk;  // a whole reply built in memory: error or block status chunk
  size_t data_size = 0;

  // A buffer of `length` bytes, taken from the shared budget already: the one another
  // connection handed over with the grant, or a new one.
  void allocate(uint32_t length) {
    release_buffer();
    buffer = account.budget->claim(account.id);
    if (!buffer) {
      buffer = std::make_unique_for_overwrite<std::byte[]>(length);
      account.totals->buffer_allocations.fetch_add(1, std::memory_order_relaxed);
    }
    buffer_capacity = length;
    account.allocated(length);
  }

  std::span<std::byte> payload(uint32_t length) { return {buffer.get(), length}; }

  void release_buffer() {
    if (buffer_capacity == 0) return;
    const uint32_t capacity = std::exchange(buffer_capacity, 0);
    account.freed(std::move(buffer), capacity, kept);
  }

  // Ready for the next request; the buffer and io.done stay.
  void reset() {
    request = Request{};
    auto done = std::move(io.done);
    auto extents = std::move(io.extents);
    extents.clear();
    io = blockdev::IoRequest{};
    io.done = std::move(done);
    io.extents = std::move(extents);
    payload_bytes = 0;
    error = 0;
    message.clear();
    header_size = 0;
    chunk.clear();
    data_size = 0;
  }
};

// Payload buffers larger than this are freed with their request rather than kept for reuse.
constexpr uint32_t kKeepBufferBytes = 4u << 20;

// Freed blocks below glibc's mmap threshold (the program fixes it at 128 KiB) go back to the
// heap, where only its top is returned to the system; malloc_trim also returns free pages
// inside it. Called only after a release, never per request.
void return_freed_memory() {
#if defined(__GLIBC__)
  ::malloc_trim(0);
#endif
}

struct ConnectionLimits {
  size_t max_requests = 128;
  size_t max_bytes = 32u << 20;
  std::chrono::milliseconds handshake_timeout{0};    // 0: none
  std::chrono::milliseconds idle_buffer_release{0};  // 0: kept while the connection lasts
  std::string refusal;  // non-empty: refuse the client in the handshake with this message
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  // `exports`: what the handshake offers. `served`: the export of a peer that already knows
  // it (the kernel's socketpair), which starts in the transmission phase; null for a client
  // that negotiates. `tls`: credentials when the server offers TLS (TlsOptions::mode on or
  // require).
  Connection(Socket socket, std::shared_ptr<const ExportTable> exports,
             std::shared_ptr<ServedExport> served, ConnectionLimits limits, std::string peer,
             std::shared_ptr<CounterCells> counters, std::shared_ptr<SharedBudget> budget,
             TlsMode tls_mode, std::shared_ptr<const tls::Credentials> tls_credentials)
      : socket_(std::move(socket)),
        wake_(socket_.get_executor(), asio::steady_timer::time_point::max()),
        handshake_timer_(socket_.get_executor()),
        linger_timer_(socket_.get_executor()),
        idle_timer_(socket_.get_executor()),
        counters_(counters),
        buffers_(std::move(counters), std::move(budget), *this),
        exports_(std::move(exports)),
        limits_(std::move(limits)),
        peer_(std::move(peer)),
        handshake_done_(served != nullptr),
        size_follows_device_(served != nullptr),
        tls_mode_(tls_mode),
        tls_credentials_(std::move(tls_credentials)) {
    if (served) {
      ExportDescription description = served->describe();
      bind(std::move(served), std::move(description));
    }
  }

  awaitable<void> run() {
    auto self = shared_from_this();
    if (handshake_done_) {
      spdlog::info("nbd: client {} connected to export '{}'", peer_, export_.name);
    } else {
      spdlog::info("nbd: client {} connected", peer_);
    }
    if (handshake_done_ || co_await handshake()) {
      in_transmission_ = true;
      writer_running_ = true;
      asio::co_spawn(socket_.get_executor(), write_replies(), asio::detached);
      co_await read_requests();
      if (hard_disconnect_) close_socket();
      // proto.md NBD_CMD_DISC: "The server MUST handle all outstanding requests" first; the
      // device also keeps our buffers until `done`, so we wait even after a hard disconnect.
      while (in_flight_ > 0) co_await wait();
      writer_stop_ = true;
      notify();
      while (writer_running_) co_await wait();
    }
    close_socket();
    linger_timer_.cancel();
    idle_timer_.cancel();
    if (release_spare_buffers()) return_freed_memory();
    if (served_) {
      spdlog::info("nbd: client {} disconnected from export '{}'", peer_, export_.name);
      // Nothing of ours is left on the device: a removed export's on_released may run.
      --served_->connections;
      served_.reset();
    } else {
      spdlog::info("nbd: client {} disconnected", peer_);
    }
  }

  // Its export was removed (ServedExport::removed is set): new requests get EIO from now on;
  // after `linger` the connection ends like at stop().
  void export_removed(const ServedExport& removed, std::chrono::milliseconds linger) {
    if (served_.get() != &removed) return;
    if (linger.count() <= 0) {
      stop();
      return;
    }
    linger_timer_.expires_after(linger);
    linger_timer_.async_wait([weak = weak_from_this()](const error_code& ec) {
      auto self = weak.lock();
      if (!ec && self) self->stop();
    });
  }

  // Server::release_connected(): serve on until a quiet moment (or the deadline), then shut
  // the receive side and read what slipped in until EOF. `closed` runs once run() has ended;
  // `quiet` says whether nothing was left unanswered.
  void release(std::chrono::steady_clock::time_point deadline, std::function<void(bool)> closed) {
    if (releasing_ || !in_transmission_ || stopping_) {
      if (closed) closed(false);
      return;
    }
    releasing_ = true;
    on_released_ = std::move(closed);
    asio::co_spawn(socket_.get_executor(), watch_for_quiet(deadline), asio::detached);
  }
  bool releasing() const { return releasing_; }
  const std::string& export_name() const { return export_.name; }
  void released() {
    if (auto closed = std::exchange(on_released_, nullptr)) closed(released_quiet_);
  }

  // The shared budget granted this connection's queued take, or asks it to free what it keeps.
  void budget_granted() { notify(); }
  void free_kept_buffers() { release_spare_buffers(); }

  // Server shutdown: no new requests; what was read completes and is answered.
  void stop() {
    stopping_ = true;
    error_code ignored;
    if (!in_transmission_) {
      socket_.close(ignored);
    } else {
      // SHUT_RD wakes the pending header read with EOF without disturbing a reply being written.
      socket_.shutdown(Socket::shutdown_receive, ignored);
    }
    notify();
  }

 private:
  void notify() { wake_.cancel(); }

  // Bytes the peer sent that nobody has read yet, in the socket or in rx_.
  size_t unread_bytes() {
    int queued = 0;
    if (::ioctl(socket_.native_handle(), FIONREAD, &queued) != 0) queued = 1;  // unknown: busy
    return static_cast<size_t>(std::max(queued, 0)) + (rx_end_ - rx_begin_);
  }

  // Quiet: every request the kernel sent was read and answered, and the answers are written.
  // Shutting the receive side down then leaves it nothing to wait for: its next send fails, and
  // it requeues that request for the next connection (drivers/block/nbd.c, nbd_handle_cmd).
  awaitable<void> watch_for_quiet(std::chrono::steady_clock::time_point deadline) {
    auto self = shared_from_this();
    asio::steady_timer poll(socket_.get_executor());
    for (;;) {
      if (!socket_.is_open() || write_failed_ || hard_disconnect_ || stopping_) co_return;
      const bool quiet = in_flight_ == 0 && replies_.empty() && unread_bytes() == 0;
      if (quiet || std::chrono::steady_clock::now() >= deadline) {
        error_code ignored;
        socket_.shutdown(Socket::shutdown_receive, ignored);
        // A request that got in between the check and the shutdown is still read and served;
        // its answer reaches the kernel unless it tried to send again meanwhile.
        released_quiet_ = quiet && unread_bytes() == 0;
        if (!released_quiet_)
          spdlog::warn(
              "nbd: client {}: no quiet moment, released with {} request(s) in flight and {} "
              "byte(s) unread: the kernel sends what it got no answer to again after its "
              "block-layer timeout",
              peer_, in_flight_, unread_bytes());
        co_return;
      }
      poll.expires_after(std::chrono::milliseconds(1));
      error_code ignored;
      co_await poll.async_wait(asio::redirect_error(use_awaitable, ignored));
    }
  }

  // The export this connection serves from now on, as advertised to its client.
  void bind(std::shared_ptr<ServedExport> served, ExportDescription description) {
    served_ = std::move(served);
    ++served_->connections;
    export_ = std::move(description);
  }

  // Every waiter re-checks its own condition: one timer, cancelled on any state change, serves
  // as the condition variable for the reader, the writer and the drain in run().
  awaitable<void> wait() {
    error_code ignored;
    co_await wake_.async_wait(asio::redirect_error(use_awaitable, ignored));
  }

  void close_socket() {
    if (tls_ && !tls_closed_) tls_->bye();
    tls_closed_ = true;
    error_code ignored;
    socket_.shutdown(Socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

  // proto.md "Termination of the session during option haggling" lets the server end a
  // handshake that goes on too long; since CVE-2024-7409 qemu-nbd does so after 10 s. Closing
  // the socket ends the pending read or write.
  void arm_handshake_timer() {
    if (limits_.handshake_timeout.count() <= 0) return;
    handshake_timer_.expires_after(limits_.handshake_timeout);
    handshake_timer_.async_wait([weak = weak_from_this()](const error_code& ec) {
      auto self = weak.lock();
      if (ec || !self || self->in_transmission_) return;
      self->handshake_timed_out_ = true;
      error_code ignored;
      self->socket_.close(ignored);
    });
  }

  awaitable<bool> handshake() {
    ServerHandshake handshake(exports_, tls_mode_);
    if (!limits_.refusal.empty()) handshake.refuse(limits_.refusal);
    arm_handshake_timer();
    std::vector<std::byte> input;
    error_code ec;
    for (;;) {
      const auto output = handshake.pending_output();
      if (!output.empty()) {
        co_await write_all(output.data(), output.size(), ec);
        if (ec) break;
        handshake.consume_output(output.size());
      }
      if (handshake.finished()) break;
      if (handshake.tls_pending()) {
        // The ACK is on the wire: the next bytes are the client's TLS ClientHello. Exact
        // reads so far left them unread in the socket.
        // start_tls() logs why it failed; a failed TLS handshake leaves nothing to answer.
        if (!co_await start_tls(ec)) co_return false;
        handshake.tls_started();
        continue;
      }
      input.resize(handshake.bytes_needed());
      co_await read_all(input.data(), input.size(), ec);
      if (ec) break;
      handshake.feed(input);
    }
    handshake_timer_.cancel();
    if (handshake_timed_out_) {
      counters_->handshake_timeouts.fetch_add(1, std::memory_order_relaxed);
      spdlog::warn("nbd: client {} did not finish the handshake within {} ms, disconnected", peer_,
                   limits_.handshake_timeout.count());
      co_return false;
    }
    if (!handshake.finished()) {
      if (!is_disconnect(ec)) spdlog::warn("nbd: client {} handshake: {}", peer_, ec.message());
      co_return false;
    }
    const HandshakeOutcome& outcome = handshake.outcome();
    switch (outcome.kind) {
      case HandshakeOutcome::Kind::transmission: {
        // The export the handshake found; removed since (while its last reply was being
        // written), there is nothing to serve.
        auto served = exports_->served(outcome.selected_export.name);
        if (!served) {
          spdlog::warn("nbd: client {} chose export '{}', removed since: disconnected", peer_,
                       outcome.selected_export.name);
          co_return false;
        }
        bind(std::move(served), outcome.selected_export);
        structured_ = outcome.structured_replies;
        base_allocation_ = outcome.base_allocation;
        spdlog::info("nbd: client {} using export '{}' ({} replies)", peer_, export_.name,
                     structured_ ? "structured" : "simple");
        co_return true;
      }
      case HandshakeOutcome::Kind::client_aborted:
        co_return false;
      case HandshakeOutcome::Kind::protocol_error:
        if (outcome.error == errc::refused) co_return false;  // logged when accepted
        spdlog::warn("nbd: client {} handshake failed: {}", peer_, outcome.message);
        co_return false;
    }
    co_return false;
  }

  // The whole buffer, in plaintext or through TLS; the handshake and the rarer transmission
  // paths (a WRITE payload beyond what fill() brought, a drained payload) use these.
  awaitable<void> read_all(void* data, size_t size, error_code& ec) {
    if (!tls_) {
      co_await asio::async_read(socket_, asio::buffer(data, size),
                                asio::redirect_error(use_awaitable, ec));
      co_return;
    }
    auto* at = static_cast<std::byte*>(data);
    while (size > 0) {
      const size_t n = co_await tls_read_some(at, size, ec);
      if (ec) co_return;
      at += n;
      size -= n;
    }
  }

  awaitable<void> write_all(const void* data, size_t size, error_code& ec) {
    if (!tls_) {
      co_await asio::async_write(socket_, asio::buffer(data, size),
                                 asio::redirect_error(use_awaitable, ec));
      co_return;
    }
    const asio::const_buffer one(data, size);
    co_await tls_write(std::span(&one, 1), ec);
  }

  // GNUTLS_E_AGAIN: wait until the socket is ready the way GnuTLS was stuck, then call again.
  awaitable<void> tls_wait(tls::IoResult::Want want, error_code& ec) {
    co_await socket_.async_wait(
        want == tls::IoResult::Want::write ? Socket::wait_write : Socket::wait_read,
        asio::redirect_error(use_awaitable, ec));
  }

  static error_code tls_error(const tls::IoResult& r) {
    if (r.eof) return asio::error::eof;
    return error_code(r.error);
  }

  // Data GnuTLS has already decrypted is returned before the socket is waited on.
  awaitable<size_t> tls_read_some(void* data, size_t size, error_code& ec) {
    for (;;) {
      const tls::IoResult r = tls_->recv(data, size);
      if (r.want == tls::IoResult::Want::nothing) {
        if (r.eof || r.error) ec = tls_error(r);
        co_return r.bytes;
      }
      co_await tls_wait(r.want, ec);
      if (ec) co_return 0;
    }
  }

  // A batch of replies corked into as few TLS records as fit, then flushed.
  awaitable<void> tls_write(std::span<const asio::const_buffer> buffers, error_code& ec) {
    tls_->cork();
    for (const auto& buffer : buffers) {
      const tls::IoResult r = tls_->send(buffer.data(), buffer.size());
      if (r.error) {
        ec = tls_error(r);
        co_return;
      }
    }
    for (;;) {
      const tls::IoResult r = tls_->uncork();
      if (r.want == tls::IoResult::Want::nothing) {
        if (r.eof || r.error) ec = tls_error(r);
        co_return;
      }
      co_await tls_wait(r.want, ec);
      if (ec) co_return;
    }
  }

  // After NBD_OPT_STARTTLS's ACK: the TLS handshake on this connection's socket.
  awaitable<bool> start_tls(error_code& ec) {
    socket_.native_non_blocking(true, ec);
    if (ec) co_return false;
    tls_ = std::make_unique<tls::Session>(tls_credentials_, socket_.native_handle());
    if (const std::error_code init = tls_->init_error()) {
      spdlog::warn("nbd: client {} TLS session: {}", peer_, init.message());
      co_return false;
    }
    for (;;) {
      const tls::IoResult r = tls_->handshake();
      if (r.want == tls::IoResult::Want::nothing) {
        if (r.eof || r.error) {
          spdlog::warn("nbd: client {} TLS handshake failed: {}", peer_,
                       r.eof ? std::string("the client closed the connection") : r.error.message());
          tls_closed_ = true;  // no close_notify over a session that never was
          co_return false;
        }
        spdlog::info("nbd: client {} TLS: {}", peer_, tls_->describe_peer());
        co_return true;
      }
      co_await tls_wait(r.want, ec);
      if (ec) {
        if (!is_disconnect(ec))
          spdlog::warn("nbd: client {} TLS handshake: {}", peer_, ec.message());
        co_return false;
      }
    }
  }

  bool can_read_more() const { return !stopping_ && !hard_disconnect_ && !write_failed_; }

  SharedBudget& budget() { return *buffers_.budget; }

  // Takes `bytes` for a new payload buffer from the budget every connection shares, reading
  // nothing more from this client until it is granted. It is granted in the end
  // (nbd/buffer_budget.hpp): what the other connections hold belongs to requests in flight,
  // which complete, time out at the device or fail with their connection, and give it back;
  // what they keep for reuse is freed as soon as someone waits; and once this connection's own
  // requests are done it is granted whatever the budget says. So it waits even while stopping:
  // the request was read and is answered.
  awaitable<void> reserve_payload(uint32_t bytes) {
    if (budget().take(buffers_.id, bytes)) co_return;
    counters_->buffer_waits.fetch_add(1, std::memory_order_relaxed);
    while (budget().waiting(buffers_.id)) co_await wait();
  }

  awaitable<void> read_requests() {
    std::array<std::byte, kRequestHeaderSize> header{};
    error_code ec;
    for (;;) {
      while (can_read_more() && in_flight_ >= limits_.max_requests) co_await wait();
      if (!can_read_more()) co_return;
      if (co_await fill(header.size(), ec)) take(header);
      if (ec) {
        if (!is_disconnect(ec) && !stopping_) {
          spdlog::warn("nbd: client {} read: {}", peer_, ec.message());
        }
        co_return;
      }
      auto op = acquire_op();
      if (const auto decode_ec = decode_request(header, op->request)) {
        // Framing is lost: the only safe move is a hard disconnect of this connection.
        spdlog::warn("nbd: client {}: {}, closing connection", peer_, decode_ec.message());
        hard_disconnect_ = true;
        co_return;
      }
      const Request& request = op->request;
      if (request.type == kCmdDisc) co_return;
      counters_->requests.fetch_add(1, std::memory_order_relaxed);
      served_->requests.fetch_add(1, std::memory_order_relaxed);
      ++requests_read_;

      // A removed export's device gets no more requests: EIO, the error of a disk that went
      // away, with the reason in structured replies. (NBD_ESHUTDOWN is for a server shutting
      // down, which asks the client to disconnect; here the other exports stay.)
      const Validation validation =
          served_->removed
              ? Validation{kEio, served_->removal_message}
              : validate(request, size_follows_device_ ? served_->device.info() : export_.device,
                         structured_, base_allocation_);
      ++in_flight_;
      if (request.type == kCmdWrite && !validation) {
        // The payload still follows the header: drain it to stay in step with the client.
        if (request.length > kMaxPayloadBytes) {
          spdlog::warn("nbd: client {}: NBD_CMD_WRITE of {} bytes, closing connection", peer_,
                       request.length);
          --in_flight_;
          hard_disconnect_ = true;
          co_return;
        }
        if (!co_await discard(request.length)) {
          --in_flight_;
          co_return;
        }
      }
      if (!validation) {
        op->error = validation.error;
        op->message = std::string(validation.reason);
        queue_reply(std::move(op));
        continue;
      }

      const bool has_payload = request.type == kCmdRead || request.type == kCmdWrite;
      if (has_payload && request.length > 0) {
        while (can_read_more() && in_flight_bytes_ > 0 &&
               in_flight_bytes_ + request.length > limits_.max_bytes) {
          co_await wait();
        }
        op->payload_bytes = request.length;
        in_flight_bytes_ += request.length;
        if (op->buffer_capacity < request.length) {
          op->release_buffer();
          co_await reserve_payload(request.length);
          op->allocate(request.length);
        }
        const auto payload = op->payload(request.length);
        if (request.type == kCmdWrite) {
          // What the last read brought of the payload, then the rest straight into it.
          const size_t buffered = take(payload);
          if (buffered < payload.size() && tls_) {
            co_await read_all(payload.data() + buffered, payload.size() - buffered, ec);
          } else if (buffered < payload.size()) {
            co_await asio::async_read(
                socket_, asio::buffer(payload.data() + buffered, payload.size() - buffered),
                asio::redirect_error(use_awaitable, ec));
          }
          if (ec) {
            finish(std::move(op));
            co_return;
          }
        }
      } else if (op->buffer_capacity > 0 && !budget().may_keep()) {
        // A kept buffer this request does not need: another connection waits for bytes.
        op->release_buffer();
      }
      // Zero-length requests have nothing to do ("SHOULD NOT disconnect"); answer at once.
      if (request.length == 0 && request.type != kCmdFlush) {
        queue_reply(std::move(op));
        continue;
      }
      submit(std::move(op));
    }
  }

  // Requests come in bursts (a client at queue depth 32 sends 32 headers at once): one read
  // takes whatever has arrived into rx_, and headers are taken from there, instead of one
  // read per 28-byte header. fill() makes at least `need` bytes available.
  awaitable<bool> fill(size_t need, error_code& ec) {
    if (rx_end_ - rx_begin_ >= need) co_return true;
    if (rx_begin_ > 0) {
      std::memmove(rx_.data(), rx_.data() + rx_begin_, rx_end_ - rx_begin_);
      rx_end_ -= rx_begin_;
      rx_begin_ = 0;
    }
    while (rx_end_ < need) {
      size_t n = 0;
      if (tls_) {
        n = co_await tls_read_some(rx_.data() + rx_end_, rx_.size() - rx_end_, ec);
      } else {
        n = co_await socket_.async_read_some(
            asio::buffer(rx_.data() + rx_end_, rx_.size() - rx_end_),
            asio::redirect_error(use_awaitable, ec));
      }
      if (ec) co_return false;
      rx_end_ += n;
    }
    co_return true;
  }

  // Moves up to dst.size() buffered bytes into dst; returns how many.
  size_t take(std::span<std::byte> dst) {
    const size_t n = std::min(dst.size(), rx_end_ - rx_begin_);
    std::memcpy(dst.data(), rx_.data() + rx_begin_, n);
    rx_begin_ += n;
    if (rx_begin_ == rx_end_) rx_begin_ = rx_end_ = 0;
    return n;
  }

  awaitable<bool> discard(uint32_t length) {
    std::vector<std::byte> scratch(std::min<uint32_t>(length, 64 * 1024));
    length -= static_cast<uint32_t>(
        take(std::span(scratch).first(std::min<size_t>(length, scratch.size()))));
    error_code ec;
    while (length > 0) {
      const size_t n = std::min<size_t>(length, scratch.size());
      co_await read_all(scratch.data(), n, ec);
      if (ec) co_return false;
      length -= static_cast<uint32_t>(n);
    }
    co_return true;
  }

  void submit(std::unique_ptr<Op> op) {
    if (served_->removed) {
      // Read before the removal, but still waiting for its turn or its payload.
      op->error = kEio;
      op->message = served_->removal_message;
      queue_reply(std::move(op));
      return;
    }
    blockdev::IoRequest& io = op->io;
    to_io_op(op->request.type, io.op);
    io.offset = op->request.offset;
    io.length = op->request.length;
    io.fua = (op->request.flags & kCmdFlagFua) != 0;
    io.may_unmap = io.op == blockdev::IoOp::write_zeroes &&
                   (op->request.flags & kCmdFlagNoHole) == 0 &&
                   export_.device.write_zeroes_may_unmap;
    if (op->payload_bytes > 0) io.buffer = op->payload(op->request.length);
    if (io.op == blockdev::IoOp::block_status && !export_.device.supports_block_status) {
      // Every byte of a device without provisioning is data: one extent, no device request
      // ("a server MAY always safely report a status of 0").
      io.extents.assign(1, blockdev::Extent{io.length, 0});
      queue_reply(std::move(op));
      return;
    }
    // io.done (set in acquire_op) takes the Op back; until then the device owns it. It may run
    // before submit() returns; run() keeps this connection alive until every submitted Op has
    // come back.
    op.release();
    served_->device.submit(io);
  }

  // Ops are reused with their payload buffers: once a connection has seen its largest
  // request, a request costs no heap allocation. Each Op's io.done is set once: a closure
  // of two pointers, which std::function keeps without allocating.
  std::unique_ptr<Op> acquire_op() {
    if (!spare_ops_.empty()) {
      auto op = std::move(spare_ops_.back());
      spare_ops_.pop_back();
      if (std::exchange(op->kept, false)) budget().reuse(buffers_.id, op->buffer_capacity);
      return op;
    }
    auto op = std::make_unique<Op>(buffers_);
    op->io.done = [this, raw = op.get()](std::error_code ec, const std::string& detail) {
      // On our thread (LunDevice) this runs inline; from elsewhere (a test device completing
      // from its own thread) it is posted to our executor.
      asio::dispatch(socket_.get_executor(),
                     [this, raw, ec, detail] { on_done(std::unique_ptr<Op>(raw), ec, detail); });
    };
    return op;
  }

  // What a connection holds (payloads in flight, replies being written, buffers kept for reuse)
  // is trimmed to twice its byte budget, the least recently used kept buffers first (spare ops
  // are reused from the back). Payloads in flight are held to the budget by read_requests, and
  // answered requests wait for the writer beside them, so a client that keeps its budget full
  // (1 MiB at queue depth 16 against 8 MiB) needs up to twice the budget to reuse every buffer:
  // trimmed to the budget alone, the buffer of an answered request was freed and a new one
  // mapped for the next, a map, unmap and page faults per request that cost 2-3 s of CPU per
  // GiB on the benchmark's machine instead of 0.35. Each request can grow its op's buffer only
  // to its own length, so without the trim, phases of 4 MiB writes, 4 KiB reads and 4 MiB
  // writes again would leave every kept op with a 4 MiB buffer.
  //
  // Kept buffers count against the budget all connections share, and none is kept while
  // another connection waits for bytes of it: freed, the buffer serves that connection.
  void recycle(std::unique_ptr<Op> op) {
    if (spare_ops_.size() >= limits_.max_requests) return;
    if (op->buffer_capacity > kKeepBufferBytes || !budget().may_keep()) op->release_buffer();
    const size_t keep_limit = 2 * limits_.max_bytes;
    for (auto& spare : spare_ops_) {
      if (buffers_.held <= keep_limit) break;
      spare->release_buffer();
    }
    if (buffers_.held > keep_limit) op->release_buffer();
    op->reset();
    if (op->buffer_capacity > 0) {
      op->kept = true;
      budget().keep(buffers_.id, op->buffer_capacity);
    }
    spare_ops_.push_back(std::move(op));
    if (buffers_.held > 0) watch_idle_buffers();
  }

  // Arms the idle check (ServerOptions::idle_buffer_release) unless it is armed already. It
  // runs once per period while buffers are kept, not per request.
  void watch_idle_buffers() {
    if (idle_timer_armed_ || stopping_ || limits_.idle_buffer_release.count() <= 0) return;
    idle_timer_armed_ = true;
    requests_at_idle_check_ = requests_read_;
    idle_timer_.expires_after(limits_.idle_buffer_release);
    idle_timer_.async_wait([weak = weak_from_this()](const error_code& ec) {
      auto self = weak.lock();
      if (!self) return;
      self->idle_timer_armed_ = false;
      if (!ec) self->check_idle_buffers();
    });
  }

  // No request read since the timer was armed and none in flight: release. Otherwise look
  // again one period later.
  void check_idle_buffers() {
    if (requests_read_ != requests_at_idle_check_ || in_flight_ > 0) {
      if (buffers_.held > 0) watch_idle_buffers();
      return;
    }
    const size_t held = buffers_.held;
    if (!release_spare_buffers()) return;
    spdlog::debug("nbd: client {} idle for {} ms: released {} KiB of payload buffers", peer_,
                  limits_.idle_buffer_release.count(), held / 1024);
    return_freed_memory();
  }

  // Frees the payload buffers of the spare ops (the ops stay for reuse); whether there were any.
  bool release_spare_buffers() {
    bool released = false;
    for (auto& spare : spare_ops_) {
      released = released || spare->buffer_capacity > 0;
      spare->release_buffer();
    }
    return released;
  }

  void on_done(std::unique_ptr<Op> op, std::error_code ec, const std::string& detail) {
    if (ec) {
      op->error = error_for(ec);
      op->message = detail.empty() ? ec.message() : detail;
      spdlog::debug("nbd: client {} request {} failed: {} ({})", peer_, op->request.cookie,
                    op->message, nbd_error_name(op->error));
    }
    queue_reply(std::move(op));
  }

  void queue_reply(std::unique_ptr<Op> op) {
    if (op->error != 0) {
      counters_->errors.fetch_add(1, std::memory_order_relaxed);
      served_->errors.fetch_add(1, std::memory_order_relaxed);
    }
    if (hard_disconnect_ || write_failed_ || writer_stop_) {
      finish(std::move(op));
      return;
    }
    encode_reply(*op);
    replies_.push_back(std::move(op));
    notify();
  }

  void encode_reply(Op& op) {
    const Request& request = op.request;
    auto put = [&op](std::span<const std::byte> bytes) {
      std::copy(bytes.begin(), bytes.end(), op.header.begin());
      op.header_size = bytes.size();
    };
    if (op.error != 0) {
      if (structured_) {
        op.chunk = encode_error_chunk(request.cookie, op.error, op.message);
      } else {
        put(encode_simple_reply(request.cookie, op.error));
      }
      return;
    }
    if (request.type == kCmdBlockStatus) {
      // Validated only with base:allocation selected, hence with structured replies.
      const auto descriptors = block_status_descriptors(op.io.extents, request.length,
                                                        (request.flags & kCmdFlagReqOne) != 0);
      if (descriptors.empty()) {
        op.error = kEio;
        op.message = "the device reported no extent";
        op.chunk = encode_error_chunk(request.cookie, op.error, op.message);
        return;
      }
      op.chunk = encode_block_status_chunk(request.cookie, kBaseAllocationContextId, descriptors);
      return;
    }
    if (request.type != kCmdRead) {
      put(encode_simple_reply(request.cookie, 0));
      return;
    }
    if (!structured_) {
      put(encode_simple_reply(request.cookie, 0));
      op.data_size = request.length;
    } else if (request.length == 0) {
      put(encode_none_chunk(request.cookie));  // OFFSET_DATA must carry at least one byte
    } else {
      // One chunk marked DONE: the data is complete before we start sending it.
      put(encode_offset_data_header(request.cookie, request.offset, request.length, true));
      op.data_size = request.length;
    }
  }

  // Releases a request's share of the backpressure budget.
  void finish(std::unique_ptr<Op> op) {
    in_flight_bytes_ -= op->payload_bytes;
    --in_flight_;
    recycle(std::move(op));
    notify();
  }

  awaitable<void> write_replies() {
    auto self = shared_from_this();
    std::vector<std::unique_ptr<Op>> batch;
    std::vector<asio::const_buffer> buffers;
    error_code ec;
    for (;;) {
      while (replies_.empty() && !writer_stop_) co_await wait();
      if (replies_.empty()) break;
      // Gather every reply ready now into one write.
      batch.clear();
      buffers.clear();
      while (!replies_.empty() && batch.size() < 256) {
        batch.push_back(std::move(replies_.front()));
        replies_.pop_front();
        const Op& op = *batch.back();
        if (!op.chunk.empty()) {
          buffers.emplace_back(op.chunk.data(), op.chunk.size());
        } else {
          buffers.emplace_back(op.header.data(), op.header_size);
          if (op.data_size > 0) buffers.emplace_back(op.buffer.get(), op.data_size);
        }
      }
      ec = {};
      if (tls_) {
        co_await tls_write(buffers, ec);
      } else {
        for (common_asio::GatherCursor cursor(buffers); !cursor.finished() && !ec;) {
          const size_t n = co_await socket_.async_write_some(
              cursor.window(), asio::redirect_error(use_awaitable, ec));
          cursor.consume(n);
        }
      }
      for (auto& op : batch) finish(std::move(op));
      batch.clear();
      if (ec) {
        if (!is_disconnect(ec)) spdlog::warn("nbd: client {} write: {}", peer_, ec.message());
        write_failed_ = true;
        while (!replies_.empty()) {
          finish(std::move(replies_.front()));
          replies_.pop_front();
        }
        // Wake the reader (blocked on a read the client may never complete).
        error_code ignored;
        socket_.shutdown(Socket::shutdown_receive, ignored);
        break;
      }
    }
    writer_running_ = false;
    notify();
  }

  Socket socket_;
  asio::steady_timer wake_;
  asio::steady_timer handshake_timer_;
  asio::steady_timer linger_timer_;  // after its export was removed
  asio::steady_timer idle_timer_;    // idle_buffer_release: kept payload buffers given back
  bool idle_timer_armed_ = false;
  uint64_t requests_read_ = 0;           // request headers read, for the idle check
  uint64_t requests_at_idle_check_ = 0;  // requests_read_ when the idle timer was armed
  bool handshake_timed_out_ = false;
  std::shared_ptr<CounterCells> counters_;
  BufferAccount buffers_;  // before every member that holds Ops: destroyed after them
  std::vector<std::unique_ptr<Op>> spare_ops_;
  std::array<std::byte, 64 * 1024> rx_;  // received, not yet taken: [rx_begin_, rx_end_)
  size_t rx_begin_ = 0;
  size_t rx_end_ = 0;
  std::shared_ptr<const ExportTable> exports_;
  // The export chosen, once in transmission (its device serves every request), and how it
  // was advertised: size, flags and block sizes as the client knows them.
  std::shared_ptr<ServedExport> served_;
  ExportDescription export_;
  ConnectionLimits limits_;
  std::string peer_;
  bool handshake_done_ = false;
  // The kernel's connection (serve_connected): its size is ours to set, and a resize of
  // /dev/nbdN (KernelDevice::resize) follows the device, so requests are checked against the
  // device's size now. A negotiating client keeps the size it was given (proto.md: it must not
  // go past it; it learns a new one by connecting again).
  bool size_follows_device_ = false;
  TlsMode tls_mode_ = TlsMode::off;
  std::shared_ptr<const tls::Credentials> tls_credentials_;
  std::unique_ptr<tls::Session> tls_;  // after NBD_OPT_STARTTLS: every byte goes through it
  bool tls_closed_ = false;
  bool structured_ = false;
  bool base_allocation_ = false;  // NBD_CMD_BLOCK_STATUS allowed (HandshakeOutcome)
  bool in_transmission_ = false;
  bool stopping_ = false;
  bool releasing_ = false;       // release(): reading until EOF after a quiet moment
  bool released_quiet_ = false;  // the receive side was shut at a quiet moment
  std::function<void(bool quiet)> on_released_;
  bool hard_disconnect_ = false;
  bool write_failed_ = false;
  bool writer_stop_ = false;
  bool writer_running_ = false;
  size_t in_flight_ = 0;        // read but not yet answered (or dropped)
  size_t in_flight_bytes_ = 0;  // READ/WRITE payload bytes of those
  std::deque<std::unique_ptr<Op>> replies_;
};

bool SharedBudget::take(BufferBudget::Holder id, size_t bytes) {
  const BufferBudget::Take take = budget_.take(id, bytes);
  if (!take.granted) waiting_bytes_[id] = bytes;
  // Each frees what it keeps, giving it back: the queue is served as the bytes come in.
  for (const BufferBudget::Holder holder : take.reclaim)
    if (const auto it = holders_.find(holder); it != holders_.end())
      it->second->free_kept_buffers();
  return take.granted || !budget_.waiting(id);
}

void SharedBudget::notify(const std::vector<BufferBudget::Holder>& granted, PayloadBuffer* buffer,
                          size_t bytes) {
  for (const BufferBudget::Holder holder : granted) {
    const auto wanted = waiting_bytes_.find(holder);
    if (wanted == waiting_bytes_.end()) continue;
    if (buffer != nullptr && *buffer && wanted->second == bytes)
      handed_[holder] = std::move(*buffer);
    waiting_bytes_.erase(wanted);
    if (const auto it = holders_.find(holder); it != holders_.end()) it->second->budget_granted();
  }
}

std::string describe_peer(const Protocol::endpoint& endpoint, uint64_t id) {
  std::string name = "#" + std::to_string(id);
  const auto* addr = endpoint.data();
  if (addr->sa_family == AF_INET || addr->sa_family == AF_INET6) {
    asio::ip::tcp::endpoint tcp;
    std::memcpy(tcp.data(), addr, std::min<size_t>(endpoint.size(), sizeof(sockaddr_in6)));
    name += " (" + tcp.address().to_string() + ":" + std::to_string(tcp.port()) + ")";
  }
  return name;
}

// HOST:PORT of a TCP endpoint, IPv6 hosts in brackets.
std::string tcp_address_text(const Protocol::endpoint& local) {
  asio::ip::tcp::endpoint bound;
  std::memcpy(bound.data(), local.data(), std::min<size_t>(local.size(), sizeof(sockaddr_in6)));
  const std::string host = bound.address().is_v6() ? "[" + bound.address().to_string() + "]"
                                                   : bound.address().to_string();
  return host + ":" + std::to_string(bound.port());
}

uint16_t tcp_port(const Protocol::endpoint& local) {
  asio::ip::tcp::endpoint bound;
  std::memcpy(bound.data(), local.data(), std::min<size_t>(local.size(), sizeof(sockaddr_in6)));
  return bound.port();
}

// The path of a unix socket endpoint (sun_path is not always terminated).
std::string unix_path(const Protocol::endpoint& local) {
  const auto* un = reinterpret_cast<const sockaddr_un*>(local.data());
  const size_t offset = offsetof(sockaddr_un, sun_path);
  const size_t size = local.size() > offset ? local.size() - offset : 0;
  return std::string(un->sun_path, ::strnlen(un->sun_path, size));
}

// The address `fd` is bound to.
std::error_code local_address(int fd, Protocol::endpoint& local, std::string& detail) {
  sockaddr_storage address{};
  socklen_t size = sizeof address;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size) != 0) {
    const std::error_code ec(errno, std::generic_category());
    detail = "inherited socket " + std::to_string(fd) + ": getsockname: " + ec.message();
    return ec;
  }
  local.resize(std::min<size_t>(size, local.capacity()));
  std::memcpy(local.data(), &address, local.size());
  return {};
}

}  // namespace

std::error_code check_listening_socket(int fd,
                                       const std::variant<UnixEndpoint, TcpEndpoint>& listen,
                                       std::string& detail) {
  auto refuse = [&](std::string why) {
    detail = "inherited socket " + std::to_string(fd) + ": " + std::move(why);
    return std::make_error_code(std::errc::invalid_argument);
  };
  int type = 0, listening = 0;
  socklen_t size = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &size) != 0)
    return refuse(std::string("not a socket: ") + std::strerror(errno));
  size = sizeof listening;
  ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size);
  if (type != SOCK_STREAM || !listening) return refuse("not a listening stream socket");
  Protocol::endpoint local;
  if (auto ec = local_address(fd, local, detail)) return ec;
  const int family = local.protocol().family();
  if (const auto* unix_endpoint = std::get_if<UnixEndpoint>(&listen)) {
    if (family != AF_UNIX)
      return refuse("a TCP socket, but nbd.listen is unix:" + unix_endpoint->path);
    if (unix_path(local) != unix_endpoint->path)
      return refuse("listens on unix:" + unix_path(local) +
                    ", but nbd.listen is unix:" + unix_endpoint->path);
    return {};
  }
  const auto& tcp = std::get<TcpEndpoint>(listen);
  const std::string wanted = "tcp:" + tcp.host + ":" + std::to_string(tcp.port);
  if (family != AF_INET && family != AF_INET6)
    return refuse("not a TCP socket, but nbd.listen is " + wanted);
  // The host is not compared: systemd's ListenStream=PORT binds every address.
  if (tcp.port != 0 && tcp_port(local) != tcp.port)
    return refuse("listens on tcp:" + tcp_address_text(local) + ", but nbd.listen is " + wanted);
  return {};
}

namespace {}  // namespace

struct Server::Impl : std::enable_shared_from_this<Server::Impl> {
  Impl(asio::io_context& io, ServerOptions options)
      : io(io), options(std::move(options)), acceptor(io) {}

  asio::io_context& io;
  ServerOptions options;
  std::shared_ptr<ExportTable> exports = std::make_shared<ExportTable>();
  Acceptor acceptor;
  std::set<std::shared_ptr<Connection>> connections;
  std::atomic<size_t> connection_count{0};
  std::shared_ptr<CounterCells> counters = std::make_shared<CounterCells>();
  // Every connection's payload buffers, of every export (options.max_bytes_total).
  std::shared_ptr<SharedBudget> budget = std::make_shared<SharedBudget>(options.max_bytes_total);
  std::shared_ptr<const tls::Credentials> tls_credentials;  // set by start() unless TLS is off
  uint64_t next_id = 1;
  // Accepted connections that are served (not refused, not handed over by serve_connected).
  size_t clients = 0;
  // Open descriptors as last counted, and the connection count then: between counts the
  // estimate moves with the connections, so a flood is not a directory scan per accept.
  size_t fds_counted = 0;
  size_t connections_at_count = 0;
  std::chrono::steady_clock::time_point counted_at{};
  // Wakes an accept loop paused for the descriptor reserve when a connection ends.
  std::unique_ptr<asio::steady_timer> reserve_wait;
  bool accepting = false;
  bool stopping = false;
  std::function<void()> on_drained;

  // endpoint_uri(name) is uri_prefix + name + uri_suffix (empty before start()).
  mutable std::mutex uri_mutex;
  std::string uri_prefix;
  std::string uri_suffix;
  // The unix socket we created, identified by inode so we never unlink another server's.
  std::string socket_path;
  dev_t socket_dev = 0;
  ino_t socket_ino = 0;

  std::error_code bind_unix(const std::string& path, std::string& detail) {
    if (path.empty() || path.size() >= sizeof(sockaddr_un::sun_path)) {
      detail = "unix socket path '" + path + "' is empty or too long";
      return std::make_error_code(std::errc::filename_too_long);
    }
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) {
        detail = path + " exists and is not a socket";
        return std::make_error_code(std::errc::file_exists);
      }
      asio::local::stream_protocol::socket probe(io);
      error_code ec;
      probe.connect(asio::local::stream_protocol::endpoint(path), ec);
      if (!ec) {
        detail = "another process is listening on " + path;
        return std::make_error_code(std::errc::address_in_use);
      }
      if (ec != asio::error::connection_refused) {
        detail = "cannot probe existing socket " + path + ": " + ec.message();
        return ec;
      }
      ::unlink(path.c_str());  // stale: its server is gone
    }
    const Protocol::endpoint endpoint{asio::local::stream_protocol::endpoint(path)};
    error_code ec;
    acceptor.open(endpoint.protocol(), ec);
    if (!ec) acceptor.bind(endpoint, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      detail = "cannot listen on " + path + ": " + ec.message();
      error_code ignored;
      acceptor.close(ignored);
      return ec;
    }
    if (::lstat(path.c_str(), &st) == 0) {
      socket_path = path;
      socket_dev = st.st_dev;
      socket_ino = st.st_ino;
    }
    set_uri("nbd+unix:///", "?socket=" + uri_escape(path, true));
    return {};
  }

  std::error_code bind_tcp(const TcpEndpoint& where, std::string& detail) {
    error_code ec;
    asio::ip::tcp::resolver resolver(io);
    auto results = resolver.resolve(where.host, std::to_string(where.port),
                                    asio::ip::tcp::resolver::passive, ec);
    if (ec || results.empty()) {
      detail = "cannot resolve " + where.host + ": " + ec.message();
      return ec ? std::error_code(ec) : std::make_error_code(std::errc::address_not_available);
    }
    const asio::ip::tcp::endpoint tcp = results.begin()->endpoint();
    const Protocol::endpoint endpoint{tcp};
    acceptor.open(endpoint.protocol(), ec);
    if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor.bind(endpoint, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    Protocol::endpoint local;
    if (!ec) local = acceptor.local_endpoint(ec);
    if (ec) {
      detail =
          "cannot listen on " + where.host + ":" + std::to_string(where.port) + ": " + ec.message();
      error_code ignored;
      acceptor.close(ignored);
      return ec;
    }
    set_tcp_uri(local);
    return {};
  }

  void set_tcp_uri(const Protocol::endpoint& local) {
    set_uri("nbd://" + tcp_address_text(local) + "/", "");
  }

  // options.listening_fd: a socket someone else bound (systemd socket activation), checked
  // by check_listening_socket(). The file of a unix socket stays: socket_path is left empty,
  // so remove_socket_file() never unlinks what its owner keeps across our restarts.
  std::error_code adopt_listening(int fd, std::string& detail) {
    auto ec = check_listening_socket(fd, options.listen, detail);
    Protocol::endpoint local;
    if (!ec) ec = local_address(fd, local, detail);
    if (!ec) {
      error_code assign_error;
      acceptor.assign(local.protocol(), fd, assign_error);
      if (assign_error) {
        detail = "inherited socket " + std::to_string(fd) +
                 ": cannot accept on it: " + assign_error.message();
        ec = assign_error;
      }
    }
    if (ec) {
      ::close(fd);
      return ec;
    }
    if (local.protocol().family() == AF_UNIX)
      set_uri("nbd+unix:///", "?socket=" + uri_escape(unix_path(local), true));
    else
      set_tcp_uri(local);
    return {};
  }

  void set_uri(std::string prefix, std::string suffix) {
    std::lock_guard lock(uri_mutex);
    uri_prefix = std::move(prefix);
    uri_suffix = std::move(suffix);
  }

  std::string uri_of(const std::string& export_name) const {
    std::lock_guard lock(uri_mutex);
    if (uri_prefix.empty()) return {};
    return uri_prefix + uri_escape(export_name, false) + uri_suffix;
  }

  static size_t count_open_fds() {
    std::error_code ec;
    size_t n = 0;
    for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end;
         it.increment(ec)) {
      ++n;
    }
    return n;
  }

  // True while accepting one more client would leave fewer than options.fd_reserve
  // descriptors below RLIMIT_NOFILE (a client costs one; its accept may need it first).
  bool fds_short() {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return false;
    const size_t soft = static_cast<size_t>(limit.rlim_cur);
    const auto now = std::chrono::steady_clock::now();
    const size_t conns = connections.size();
    size_t estimate =
        fds_counted + (conns > connections_at_count ? conns - connections_at_count : 0);
    if (estimate + options.fd_reserve + 1 >= soft ||
        now - counted_at >= options.fd_recount_interval) {
      fds_counted = count_open_fds();
      connections_at_count = conns;
      counted_at = now;
      estimate = fds_counted;
    }
    return estimate + options.fd_reserve + 1 >= soft;
  }

  // Waits (in the listen backlog, where the kernel keeps further clients) until the reserve
  // is free again: a connection ending wakes us, or the timer re-counts.
  awaitable<void> keep_fd_reserve() {
    if (!fds_short()) co_return;
    counters->fd_reserve_pauses.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn(
        "nbd: {} file descriptors open, limit {}: not accepting clients while fewer than {} are "
        "left for paths and the control socket",
        fds_counted, soft_fd_limit(), options.fd_reserve);
    while (!stopping && fds_short()) {
      reserve_wait = std::make_unique<asio::steady_timer>(io, std::chrono::milliseconds(200));
      error_code ignored;
      co_await reserve_wait->async_wait(asio::redirect_error(use_awaitable, ignored));
      reserve_wait.reset();
    }
    if (!stopping) spdlog::info("nbd: accepting clients again ({} descriptors open)", fds_counted);
  }

  static size_t soft_fd_limit() {
    rlimit limit{};
    return ::getrlimit(RLIMIT_NOFILE, &limit) == 0 ? static_cast<size_t>(limit.rlim_cur) : 0;
  }

  awaitable<void> accept_loop() {
    auto self = shared_from_this();
    for (;;) {
      error_code ec;
      co_await keep_fd_reserve();
      if (stopping) break;
      Socket socket = co_await acceptor.async_accept(asio::redirect_error(use_awaitable, ec));
      if (ec) {
        if (stopping || ec == asio::error::operation_aborted) break;
        spdlog::warn("nbd: accept: {}", ec.message());
        // EMFILE and friends: back off instead of spinning.
        asio::steady_timer pause(io, std::chrono::milliseconds(100));
        co_await pause.async_wait(asio::redirect_error(use_awaitable, ec));
        continue;
      }
      if (stopping) break;
      Protocol::endpoint remote = socket.remote_endpoint(ec);
      const int family = remote.data()->sa_family;
      if (!ec && (family == AF_INET || family == AF_INET6)) {
        socket.set_option(asio::ip::tcp::no_delay(true), ec);
      }
      // A unix socket's default send buffer (about 200 KiB) takes a 1 MiB READ reply in
      // several writes, each waiting for the client to drain the last: room for a few whole
      // replies keeps the client's reads and ours overlapping.
      socket.set_option(asio::socket_base::send_buffer_size(kReplySocketBuffer), ec);
      std::string peer = describe_peer(remote, next_id++);
      std::string refusal;
      if (options.max_clients != 0 && clients >= options.max_clients) {
        refusal = "too many clients: this server serves at most " +
                  std::to_string(options.max_clients) + " at once (nbd.max_clients)";
        counters->refused_max_clients.fetch_add(1, std::memory_order_relaxed);
        spdlog::warn("nbd: client {} refused: {} clients connected, nbd.max_clients is {}", peer,
                     clients, options.max_clients);
      }
      add_connection(std::move(socket), std::move(peer), nullptr, options.tls.mode, tls_credentials,
                     std::move(refusal));
    }
    accepting = false;
    maybe_drained();
  }

  // `served`: the export of a connection that skips the handshake (serve_connected); null for
  // a client that negotiates one.
  void add_connection(Socket socket, std::string peer, std::shared_ptr<ServedExport> served,
                      TlsMode tls_mode, std::shared_ptr<const tls::Credentials> credentials,
                      std::string refusal = {}) {
    const bool handshake_done = served != nullptr;
    const bool client = !handshake_done && refusal.empty();
    auto connection = std::make_shared<Connection>(
        std::move(socket), exports, std::move(served),
        ConnectionLimits{options.max_requests_per_connection, options.max_bytes_per_connection,
                         handshake_done ? std::chrono::milliseconds(0) : options.handshake_timeout,
                         options.idle_buffer_release, std::move(refusal)},
        std::move(peer), counters, budget, tls_mode, std::move(credentials));
    connections.insert(connection);
    if (handshake_done) handed_over.insert(connection);
    ++connection_count;
    if (client) ++clients;
    asio::co_spawn(io, connection->run(),
                   [self = shared_from_this(), connection, client](std::exception_ptr error) {
                     if (error) spdlog::warn("nbd: connection ended with an exception");
                     connection->released();
                     self->handed_over.erase(connection);
                     self->connections.erase(connection);
                     --self->connection_count;
                     if (client) --self->clients;
                     if (self->reserve_wait) self->reserve_wait->cancel();
                     self->maybe_drained();
                   });
  }

  // Connections of serve_connected() (the kernel's), for release_connected().
  std::set<std::shared_ptr<Connection>> handed_over;

  void do_release(const std::vector<std::string>& export_names,
                  std::chrono::milliseconds quiet_within, std::function<void(Released)> done) {
    struct Release {
      Released outcome;
      size_t pending = 1;  // one for the loop below: `done` runs after it
      std::function<void(Released)> done;
      void one_done() {
        if (--pending == 0 && done) done(outcome);
      }
    };
    auto state = std::make_shared<Release>();
    state->done = std::move(done);
    const auto deadline = std::chrono::steady_clock::now() + quiet_within;
    for (const auto& connection : handed_over) {
      if (!connections.contains(connection) || connection->releasing() ||
          std::find(export_names.begin(), export_names.end(), connection->export_name()) ==
              export_names.end())
        continue;
      ++state->pending;
      connection->release(deadline, [state](bool quiet) {
        ++(quiet ? state->outcome.quiet : state->outcome.forced);
        state->one_done();
      });
    }
    state->one_done();
  }

  void do_stop(std::function<void()> callback) {
    on_drained = std::move(callback);
    if (!stopping) {
      stopping = true;
      error_code ignored;
      acceptor.close(ignored);
      if (reserve_wait) reserve_wait->cancel();
      remove_socket_file();
      for (const auto& connection : connections) connection->stop();
    }
    maybe_drained();
  }

  void maybe_drained() {
    if (!stopping || accepting || !connections.empty() || !on_drained) return;
    auto callback = std::move(on_drained);
    on_drained = nullptr;
    callback();
  }

  void remove_socket_file() {
    if (socket_path.empty()) return;
    struct stat st {};
    if (::lstat(socket_path.c_str(), &st) == 0 && st.st_dev == socket_dev &&
        st.st_ino == socket_ino) {
      ::unlink(socket_path.c_str());
    }
    socket_path.clear();
  }
};

Server::Server(asio::io_context& io, ServerOptions options)
    : impl_(std::make_shared<Impl>(io, std::move(options))) {}

Server::Server(asio::io_context& io, blockdev::BlockDevice& device, ServerOptions options)
    : Server(io, std::move(options)) {
  std::string ignored;  // the first export of an empty table is never a duplicate
  add_export(
      {impl_->options.export_name, impl_->options.description, impl_->options.read_only, device},
      ignored);
}

std::error_code Server::add_export(ExportOptions export_options, std::string& detail) {
  std::string name = export_options.name;
  if (const auto ec = impl_->exports->add(std::move(export_options), detail)) {
    spdlog::warn("nbd: {}", detail);
    return ec;
  }
  if (impl_->accepting) spdlog::info("nbd: serving export '{}' at {}", name, endpoint_uri(name));
  return {};
}

std::error_code Server::remove_export(const std::string& name, std::string reason,
                                      std::string& detail, std::function<void()> on_released) {
  auto removed = impl_->exports->remove(name, reason);
  if (!removed) {
    detail = "no export '" + name + "' is served";
    return std::make_error_code(std::errc::no_such_device);
  }
  removed->removed = true;
  removed->removal_message = "export " + name + " was removed: " + reason;
  removed->on_released = std::move(on_released);
  for (const auto& connection : impl_->connections) {
    connection->export_removed(*removed, impl_->options.removed_export_linger);
  }
  spdlog::info("nbd: export '{}' removed ({}); {} connection(s) on it close", name, reason,
               removed->connections.load());
  // Dropping the table's share: on_released runs now if no connection holds the export.
  return {};
}

Server::~Server() = default;

std::error_code Server::start(std::string& detail) {
  std::string reason;
  std::error_code ec;
  if (impl_->options.tls.mode != TlsMode::off) {
    impl_->tls_credentials = tls::load_credentials(impl_->options.tls, ec, reason);
    if (!impl_->tls_credentials) {
      spdlog::warn("nbd: TLS: {}", reason);
      detail = "TLS: " + reason;
      return ec;
    }
  }
  if (impl_->options.listening_fd) {
    const int fd = *impl_->options.listening_fd;
    impl_->options.listening_fd.reset();  // ours now, whatever adopt_listening() says
    ec = impl_->adopt_listening(fd, reason);
  } else if (const auto* unix_endpoint = std::get_if<UnixEndpoint>(&impl_->options.listen)) {
    ec = impl_->bind_unix(unix_endpoint->path, reason);
  } else {
    ec = impl_->bind_tcp(std::get<TcpEndpoint>(impl_->options.listen), reason);
  }
  if (ec) {
    spdlog::warn("nbd: {}", reason);
    detail = reason;
    return ec;
  }
  impl_->accepting = true;
  spdlog::info("nbd: serving {} export(s) at {} (default export)", impl_->exports->size(),
               endpoint_uri());
  asio::co_spawn(impl_->io, impl_->accept_loop(), asio::detached);
  return {};
}

std::error_code Server::serve_connected(int fd, std::string peer, std::string& detail) {
  return serve_connected(fd, impl_->exports->default_name().value_or(""), std::move(peer), detail);
}

std::error_code Server::serve_connected(int fd, const std::string& export_name, std::string peer,
                                        std::string& detail) {
  Socket socket(impl_->io);
  error_code ec;
  if (impl_->stopping) {
    ::close(fd);
    detail = "the server is stopping";
    return std::make_error_code(std::errc::operation_canceled);
  }
  auto served = impl_->exports->served(export_name);
  if (!served) {
    ::close(fd);
    detail = "no export '" + export_name + "' is served";
    return std::make_error_code(std::errc::no_such_device);
  }
  int domain = AF_UNIX;
  socklen_t domain_size = sizeof domain;
  ::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &domain_size);
  socket.assign(Protocol(domain, 0), fd, ec);
  if (ec) {
    ::close(fd);
    detail = "cannot serve socket " + std::to_string(fd) + ": " + ec.message();
    return ec;
  }
  peer += " #" + std::to_string(impl_->next_id++);
  // The kernel's socketpair never negotiates: no TLS.
  impl_->add_connection(std::move(socket), std::move(peer), std::move(served), TlsMode::off,
                        nullptr);
  return {};
}

void Server::release_connected(std::vector<std::string> export_names,
                               std::chrono::milliseconds quiet_within,
                               std::function<void(Released)> done) {
  asio::post(impl_->io, [impl = impl_, names = std::move(export_names), quiet_within,
                         done = std::move(done)]() mutable {
    impl->do_release(names, quiet_within, std::move(done));
  });
}

void Server::stop(std::function<void()> on_drained) {
  if (!on_drained) on_drained = [] {};
  asio::post(impl_->io, [impl = impl_, callback = std::move(on_drained)]() mutable {
    impl->do_stop(std::move(callback));
  });
}

std::string Server::endpoint_uri() const {
  return impl_->uri_of(impl_->exports->default_name().value_or(""));
}

std::string Server::endpoint_uri(const std::string& export_name) const {
  return impl_->uri_of(export_name);
}

size_t Server::connection_count() const {
  return impl_->connection_count.load();
}

Server::Counters Server::counters() const {
  return {impl_->counters->requests.load(std::memory_order_relaxed),
          impl_->counters->errors.load(std::memory_order_relaxed),
          impl_->counters->buffer_bytes.load(std::memory_order_relaxed),
          impl_->counters->buffer_allocations.load(std::memory_order_relaxed),
          impl_->counters->refused_max_clients.load(std::memory_order_relaxed),
          impl_->counters->handshake_timeouts.load(std::memory_order_relaxed),
          impl_->counters->fd_reserve_pauses.load(std::memory_order_relaxed),
          impl_->connection_count.load(),
          impl_->counters->buffer_waits.load(std::memory_order_relaxed)};
}

Server::Counters Server::counters(const std::string& export_name) const {
  Counters out;
  if (const auto served = impl_->exports->served(export_name)) {
    out.requests = served->requests.load(std::memory_order_relaxed);
    out.errors = served->errors.load(std::memory_order_relaxed);
    out.connections = served->connections.load(std::memory_order_relaxed);
  }
  return out;
}

}  // namespace nbd
