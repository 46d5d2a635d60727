#include "iscsi_io/session_pool.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <cstdio>
#include <map>
#include <utility>
#include <vector>

#include "iscsi_io/route_watch.hpp"

namespace iscsi_io {

namespace asio = boost::asio;

std::string nexus_key(const PathConfig& config) {
  char isid[13];
  const auto& b = config.isid.bytes;
  std::snprintf(isid, sizeof isid, "%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
  // Separators that no host name, address, interface name or iSCSI name contains.
  return config.portal_host + '\n' + std::to_string(config.portal_port) + '\n' +
         config.source_address.value_or("") + '\n' + config.interface_name.value_or("") + '\n' +
         config.initiator_name + '\n' + config.target_name + '\n' + isid;
}

namespace {

// The sessions of one I_T nexus, and the one login (own or proof) that may run for it.
struct Nexus {
  PathConfig config;
  size_t users = 0;
  std::shared_ptr<PathSession> current;
  SessionGeneration current_generation = 0;
  SessionGeneration last_generation = 0;
  std::shared_ptr<PathSession> logging_in;           // the path's own login in progress
  bool proving = false;                              // a proof login through another portal runs
  std::vector<SessionPool::SessionHandler> waiting;  // for the next own login's outcome
  std::vector<SessionPool::ProofHandler> proofs;     // for the next login's outcome, any kind
};

}  // namespace

struct SessionPool::Impl : std::enable_shared_from_this<SessionPool::Impl> {
  explicit Impl(asio::io_context& io) : io(io) {}

  asio::io_context& io;
  std::map<std::string, Nexus> nexuses;
  // One netlink socket for every device of the pool (watch_routes); open while anyone listens.
  std::unique_ptr<RouteWatch> route_watch;
  std::map<uint64_t, std::function<void()>> route_listeners;
  uint64_t next_route_listener = 0;

  void routes_changed() {
    // A listener may stop listening (or another start) while it runs: call the ones there now.
    std::vector<uint64_t> ids;
    for (const auto& [id, listener] : route_listeners) ids.push_back(id);
    for (const uint64_t id : ids)
      if (auto it = route_listeners.find(id); it != route_listeners.end()) {
        auto listener = it->second;
        listener();
      }
  }

  Nexus& nexus(const PathConfig& config) {
    auto [it, added] = nexuses.try_emplace(nexus_key(config));
    if (added) it->second.config = config;
    return it->second;
  }

  bool current_ready(const Nexus& n) const { return n.current && n.current->ready(); }

  void start_login(Nexus& n) {
    const SessionGeneration generation = ++n.last_generation;
    auto session = PathSession::create(io, n.config);
    n.logging_in = session;
    session->start([weak = weak_from_this(), &n, session, generation](std::error_code ec,
                                                                      const std::string& detail) {
      auto self = weak.lock();
      if (!self) return;
      n.logging_in.reset();
      if (!ec) {
        n.current = session;
        n.current_generation = generation;
        // Every device left while the login ran: nobody will use or log out this session.
        if (n.users == 0) session->logout(std::chrono::seconds(2), [session](std::error_code) {});
      }
      auto waiting = std::exchange(n.waiting, {});
      auto proofs = std::exchange(n.proofs, {});
      for (auto& done : waiting) done(ec, detail, ec ? nullptr : session, ec ? 0 : generation);
      // RFC 7143 §6.3.5: a new session with the path's ISID and TSIH 0 ended the old one.
      for (auto& done : proofs)
        done(ec, ec ? "the path's own login failed: " + detail : std::string());
      self->next(n);
    });
  }

  // After a login of either kind: devices that asked meanwhile get theirs.
  void next(Nexus& n) {
    if (n.logging_in || n.proving || n.waiting.empty()) return;
    if (current_ready(n)) {
      auto waiting = std::exchange(n.waiting, {});
      for (auto& done : waiting) done({}, {}, n.current, n.current_generation);
      return;
    }
    start_login(n);
  }

  void start_proof(Nexus& n, const PathConfig& via) {
    n.proving = true;
    ++n.last_generation;
    PathConfig proof = n.config;
    proof.portal_host = via.portal_host;
    proof.portal_port = via.portal_port;
    proof.source_address = via.source_address;
    proof.interface_name = via.interface_name;
    proof.noop_out_interval = std::chrono::milliseconds(0);
    auto session = PathSession::create(io, std::move(proof));
    session->start(
        [weak = weak_from_this(), &n, session](std::error_code ec, const std::string& detail) {
          auto self = weak.lock();
          if (!self) return;
          n.proving = false;
          auto proofs = std::exchange(n.proofs, {});
          for (auto& done : proofs) done(ec, detail);
          if (!ec) session->logout(std::chrono::seconds(2), [session](std::error_code) {});
          self->next(n);
        });
  }
};

std::shared_ptr<void> SessionPool::watch_routes(std::function<void()> on_change) {
  auto& impl = *impl_;
  const uint64_t id = impl.next_route_listener++;
  impl.route_listeners.emplace(id, std::move(on_change));
  if (!impl.route_watch)
    impl.route_watch = std::make_unique<RouteWatch>(impl.io, [weak = std::weak_ptr<Impl>(impl_)] {
      if (auto self = weak.lock()) self->routes_changed();
    });
  // The handle's end is the listener's: the last one closes the socket.
  return std::shared_ptr<void>(nullptr, [weak = std::weak_ptr<Impl>(impl_), id](void*) {
    auto self = weak.lock();
    if (!self) return;
    self->route_listeners.erase(id);
    if (self->route_listeners.empty()) self->route_watch.reset();
  });
}

SessionPool::SessionPool(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
SessionPool::~SessionPool() = default;

std::shared_ptr<SessionPool> SessionPool::create(asio::io_context& io) {
  return std::shared_ptr<SessionPool>(new SessionPool(std::make_shared<Impl>(io)));
}

void SessionPool::join(const PathConfig& config) {
  ++impl_->nexus(config).users;
}

std::shared_ptr<PathSession> SessionPool::acquire(const PathConfig& config, SessionHandler done) {
  Nexus& n = impl_->nexus(config);
  // The nexus keeps the configuration of its first user; a reload may have changed the
  // timeouts since, and the asker has the running ones: the next login takes them.
  set_timeouts(n.config, timeouts_of(config));
  if (impl_->current_ready(n)) {
    asio::post(impl_->io,
               [done = std::move(done), session = n.current, generation = n.current_generation] {
                 done({}, {}, session, generation);
               });
    return n.current;
  }
  n.waiting.push_back(std::move(done));
  if (!n.logging_in && !n.proving) impl_->start_login(n);
  return n.logging_in;
}

void SessionPool::prove_ended(const PathConfig& config, SessionGeneration failed,
                              const PathConfig& via, ProofHandler done) {
  Nexus& n = impl_->nexus(config);
  if (impl_->current_ready(n) && n.current_generation > failed) {
    asio::post(impl_->io, [done = std::move(done)] { done({}, {}); });
    return;
  }
  n.proofs.push_back(std::move(done));
  if (!n.logging_in && !n.proving) impl_->start_proof(n, via);
}

void SessionPool::release(const PathConfig& config, std::chrono::milliseconds timeout,
                          std::function<void(std::error_code)> done) {
  Nexus& n = impl_->nexus(config);
  if (n.users > 0) --n.users;
  if (n.users > 0 || !n.current) {
    done({});
    return;
  }
  auto session = std::move(n.current);
  session->logout(timeout, std::move(done));
}

std::shared_ptr<PathSession> SessionPool::ready_session() const {
  for (const auto& [key, n] : impl_->nexuses)
    if (impl_->current_ready(n)) return n.current;
  return nullptr;
}

size_t SessionPool::sessions_logged_in() const {
  size_t count = 0;
  for (const auto& [key, n] : impl_->nexuses)
    if (impl_->current_ready(n)) ++count;
  return count;
}

}  // namespace iscsi_io
