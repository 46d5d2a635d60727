#include "service.hpp"

#include <sys/stat.h>

#include <spdlog/spdlog.h>
#include <array>
#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <deque>
#include <filesystem>
#include <optional>

#include <nbd_server/server.hpp>

#include "control.hpp"
#include "logging.hpp"
#include "metrics.hpp"

namespace iscsi_mpio::service {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using namespace asio::experimental::awaitable_operators;
using local = asio::local::stream_protocol;
using tcp = asio::ip::tcp;

namespace {

// A client gets this long to send its request and take the answer: a stuck `nc`, a client that
// sends a byte a second or never reads its answer must not pin a connection slot for ever.
constexpr auto control_exchange_time = std::chrono::seconds(5);
constexpr auto http_exchange_time = std::chrono::seconds(10);
// Scrapes served at once; more get 503 as they arrive.
constexpr size_t max_http_connections = 16;
constexpr std::string_view http_busy_answer =
    "HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    "Retry-After: 10\r\nConnection: close\r\nContent-Length: 37\r\n\r\n"
    "too many metrics connections at once\n";

// Answers a connection over the limit and closes it without waiting: a fresh connection's send
// buffer takes the few bytes, and a client that does not read them loses nothing it asked for.
template <typename Socket>
void refuse(Socket& socket, std::string_view answer) {
  boost::system::error_code ignored;
  socket.non_blocking(true, ignored);
  socket.send(asio::buffer(answer.data(), answer.size()), 0, ignored);
  socket.close(ignored);
}
constexpr auto progress_period = std::chrono::milliseconds(100);

std::string paths_word(size_t n) {
  return std::to_string(n) + (n == 1 ? " path" : " paths");
}

}  // namespace

struct Runtime::Impl : std::enable_shared_from_this<Impl> {
  Impl(asio::io_context& io, const config::Config& config)
      : io(io), config(config), control(io), metrics_acceptor(io) {}

  asio::io_context& io;
  const config::Config& config;
  local::acceptor control;
  bool control_created = false;  // we bound config.control.socket: ours to remove
  size_t control_connections = 0;
  tcp::acceptor metrics_acceptor;
  size_t http_connections = 0;
  // Connections turned away since the listener last had none open: the first of a burst is
  // logged, and the count when the burst is over, not each one of a flood.
  uint64_t control_refused = 0;
  uint64_t http_refused = 0;

  std::vector<ServedLun> luns;
  // One per LUN; a deque, so that a LUN added by a rescan leaves the others where they are.
  std::deque<metrics::Collector> collectors;
  control::Backend backend;
  bool stopping = false;
  uint64_t progress_generation = 0;  // a new progress task ends the previous one

  // ---------------------------------------------------------------- progress line

  // Shows what `text` returns every progress_period until it returns nothing.
  void run_progress(std::function<std::optional<std::string>()> text) {
    if (!logging::progress::enabled()) return;
    const uint64_t generation = ++progress_generation;
    asio::co_spawn(io, progress_task(shared_from_this(), generation, std::move(text)),
                   asio::detached);
  }

  static awaitable<void> progress_task(std::shared_ptr<Impl> self, uint64_t generation,
                                       std::function<std::optional<std::string>()> text) {
    asio::steady_timer timer(self->io);
    for (;;) {
      if (generation != self->progress_generation) co_return;
      const auto line = text();
      if (!line) {
        logging::progress::clear();
        co_return;
      }
      logging::progress::show(*line);
      timer.expires_after(progress_period);
      co_await timer.async_wait(asio::as_tuple(use_awaitable));
    }
  }

  // ---------------------------------------------------------------- what requests see

  void add_lun(ServedLun lun) {
    const size_t l = luns.size();
    luns.push_back(std::move(lun));
    collectors.emplace_back();
    const auto statuses = luns[l].device->path_status();
    for (size_t i = 0; i < statuses.size(); ++i)
      collectors[l].path_state(i, statuses[i].state, false);
    luns[l].device->on_command_done([this, l](size_t path, std::chrono::nanoseconds latency) {
      collectors[l].command_done(path, latency);
    });
  }

  metrics::Sample sample(size_t lun) const {
    const ServedLun& served = luns[lun];
    const status::Snapshot snap = served.snapshot();
    metrics::Sample s;
    s.export_name = snap.export_name;
    s.target = snap.target;
    s.lun = snap.lun;
    s.wwid = snap.info.wwid;
    s.paths = snap.paths;
    s.requests_in_flight = served.device ? served.device->requests_in_flight() : 0;
    if (const nbd::Server* server = served.server) {
      // Requests, errors and connections are the export's; the buffers and the refusals are
      // the one listener's, shared by every export.
      const auto counters = server->counters();
      const auto of_export = server->counters(snap.export_name);
      s.nbd = {.available = true,
               .requests = of_export.requests,
               .errors = of_export.errors,
               .connections = of_export.connections,
               .buffer_bytes = counters.buffer_bytes,
               .refused_max_clients = counters.refused_max_clients,
               .handshake_timeouts = counters.handshake_timeouts,
               .fd_reserve_pauses = counters.fd_reserve_pauses,
               .buffer_waits = counters.buffer_waits};
    }
    return s;
  }

  // An attach of target.luns labels its series by LUN; one of target.lun keeps today's names.
  bool several_luns() const { return config.target.luns.has_value(); }

  std::vector<metrics::LunSeries> series() const {
    std::vector<metrics::LunSeries> out;
    for (size_t i = 0; i < luns.size(); ++i) out.push_back({&collectors[i], sample(i)});
    return out;
  }

  std::string exposition() const { return metrics::exposition(series(), several_luns()); }

  std::string stats_json() const {
    if (!several_luns()) return collectors.front().stats_json(sample(0));
    return metrics::stats_json(series());
  }

  size_t requests_in_flight() const {
    size_t n = 0;
    for (const auto& l : luns) n += l.device ? l.device->requests_in_flight() : 0;
    return n;
  }

  // fail-path / reinstate-path on every LUN: each LUN's answer, "LUN N: " in front when there
  // are several; the first error is the result.
  std::error_code on_every_lun(std::string_view verb, size_t index, std::string& detail,
                               std::error_code (mpio::LunDevice::*action)(size_t, std::string&)) {
    std::error_code first;
    detail.clear();
    for (const auto& l : luns) {
      std::string d;
      const auto ec = (l.device.get()->*action)(index, d);
      if (ec && !first) first = ec;
      const std::string lun_text = "LUN " + std::to_string(l.snapshot().lun);
      if (several_luns())
        detail += (detail.empty() ? "" : "; ") + lun_text + ": " + d;
      else
        detail = d;
      spdlog::log(ec ? spdlog::level::warn : spdlog::level::info, "control: {} {}{}: {}", verb,
                  index + 1, several_luns() ? " on " + lun_text : "", d);
    }
    return first;
  }

  // ---------------------------------------------------------------- control socket

  std::error_code open_control(std::string& detail) {
    namespace fs = std::filesystem;
    const std::string& path = config.control.socket;
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) {
        detail = "control socket " + path + " exists and is not a socket";
        return std::make_error_code(std::errc::file_exists);
      }
      if (const auto who = control::live_listener(path)) {
        detail = "another iscsi-mpio attach is running: its control socket " + path + " answers (" +
                 *who + ")";
        return std::make_error_code(std::errc::address_in_use);
      }
      std::error_code ignored;
      fs::remove(path, ignored);  // left by a process that is gone
    }
    std::error_code fec;
    fs::create_directories(fs::path(path).parent_path(), fec);
    boost::system::error_code ec;
    control.open(local(), ec);
    if (!ec) control.bind(local::endpoint(path), ec);
    if (!ec) {
      control_created = true;
      // 0600: status shows target names and addresses, and fail-path changes what carries I/O.
      fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write, fec);
      control.listen(8, ec);
    }
    if (ec) {
      detail = "cannot listen on control socket " + path + ": " + ec.message();
      return std::error_code(ec.value(), std::system_category());
    }
    asio::co_spawn(io, control_accept(shared_from_this()), asio::detached);
    return {};
  }

  void close_control() {
    if (!control.is_open()) return;
    boost::system::error_code ignored;
    control.close(ignored);
    if (control_created) {
      std::error_code fec;
      std::filesystem::remove(config.control.socket, fec);
    }
  }

  static awaitable<void> control_accept(std::shared_ptr<Impl> self) {
    while (self->control.is_open()) {
      auto [ec, socket] = co_await self->control.async_accept(asio::as_tuple(use_awaitable));
      if (ec == asio::error::operation_aborted || !self->control.is_open()) break;
      if (ec) {
        spdlog::warn("control socket: accept: {}", ec.message());
        asio::steady_timer pause(self->io, std::chrono::milliseconds(100));  // EMFILE: no spin
        co_await pause.async_wait(asio::as_tuple(use_awaitable));
        continue;
      }
      if (self->control_connections >= control::max_connections) {
        if (self->control_refused++ == 0)
          spdlog::warn("control socket: {} connections open, turning new ones away",
                       self->control_connections);
        refuse(socket, control::busy_answer);
        continue;
      }
      ++self->control_connections;
      asio::co_spawn(self->io, control_session(self, std::move(socket)), asio::detached);
    }
  }

  static awaitable<void> control_exchange(std::shared_ptr<Impl> self, local::socket& socket) {
    std::string request;
    auto [ec, n] = co_await asio::async_read_until(
        socket, asio::dynamic_buffer(request, control::max_request_line), '\n',
        asio::as_tuple(use_awaitable));
    std::string answer;
    if (!ec) {
      request.resize(n - 1);
      answer = control::respond(request, self->backend);
    } else if (ec == asio::error::eof && !request.empty()) {
      answer = control::respond(request, self->backend);  // no newline before the half-close
    } else if (ec == asio::error::not_found) {
      answer =
          "error: request longer than " + std::to_string(control::max_request_line) + " bytes\n";
    } else {
      co_return;
    }
    co_await asio::async_write(socket, asio::buffer(answer), asio::as_tuple(use_awaitable));
  }

  static awaitable<void> control_session(std::shared_ptr<Impl> self, local::socket socket) {
    asio::steady_timer timer(self->io, control_exchange_time);
    co_await (control_exchange(self, socket) || timer.async_wait(asio::as_tuple(use_awaitable)));
    boost::system::error_code ignored;
    socket.close(ignored);
    if (--self->control_connections == 0 && self->control_refused > 0) {
      spdlog::info("control socket: {} connection(s) were turned away", self->control_refused);
      self->control_refused = 0;
    }
  }

  // ---------------------------------------------------------------- metrics listener

  std::error_code open_metrics(const config::Portal& where, std::string& detail) {
    const std::string name = config::to_string(where);
    boost::system::error_code ec;
    tcp::resolver resolver(io);
    auto results = resolver.resolve(where.host, std::to_string(where.port),
                                    tcp::resolver::passive | tcp::resolver::numeric_service, ec);
    if (ec || results.empty()) {
      detail = "cannot resolve metrics.listen " + name + ": " + ec.message();
      return std::make_error_code(std::errc::address_not_available);
    }
    const tcp::endpoint endpoint = results.begin()->endpoint();
    metrics_acceptor.open(endpoint.protocol(), ec);
    if (!ec) metrics_acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) metrics_acceptor.bind(endpoint, ec);
    if (!ec) metrics_acceptor.listen(16, ec);
    if (ec) {
      detail = "cannot listen for metrics on " + name + ": " + ec.message();
      boost::system::error_code ignored;
      metrics_acceptor.close(ignored);
      return std::error_code(ec.value(), std::system_category());
    }
    asio::co_spawn(io, metrics_accept(shared_from_this()), asio::detached);
    spdlog::info("metrics at http://{}/metrics", name);
    return {};
  }

  static awaitable<void> metrics_accept(std::shared_ptr<Impl> self) {
    while (self->metrics_acceptor.is_open()) {
      auto [ec, socket] =
          co_await self->metrics_acceptor.async_accept(asio::as_tuple(use_awaitable));
      if (ec == asio::error::operation_aborted || !self->metrics_acceptor.is_open()) break;
      if (ec) {
        spdlog::warn("metrics: accept: {}", ec.message());
        asio::steady_timer pause(self->io, std::chrono::milliseconds(100));
        co_await pause.async_wait(asio::as_tuple(use_awaitable));
        continue;
      }
      if (self->http_connections >= max_http_connections) {
        if (self->http_refused++ == 0)
          spdlog::warn("metrics: {} connections open, answering new ones 503",
                       self->http_connections);
        refuse(socket, http_busy_answer);
        continue;
      }
      ++self->http_connections;
      asio::co_spawn(self->io, http_session(self, std::move(socket)), asio::detached);
    }
  }

  static awaitable<void> http_exchange(std::shared_ptr<Impl> self, tcp::socket& socket) {
    std::string received;
    std::array<char, 2048> chunk;
    std::optional<std::string> answer;
    // Ends: answer_http() answers 431 once the head passes max_request_head bytes.
    while (!answer) {
      auto [ec, n] =
          co_await socket.async_read_some(asio::buffer(chunk), asio::as_tuple(use_awaitable));
      received.append(chunk.data(), n);
      answer = metrics::answer_http(received, [&] { return self->exposition(); });
      if (!answer && ec) co_return;
    }
    co_await asio::async_write(socket, asio::buffer(*answer), asio::as_tuple(use_awaitable));
    boost::system::error_code ignored;
    socket.shutdown(tcp::socket::shutdown_send, ignored);
  }

  static awaitable<void> http_session(std::shared_ptr<Impl> self, tcp::socket socket) {
    asio::steady_timer timer(self->io, http_exchange_time);
    co_await (http_exchange(self, socket) || timer.async_wait(asio::as_tuple(use_awaitable)));
    boost::system::error_code ignored;
    socket.close(ignored);
    if (--self->http_connections == 0 && self->http_refused > 0) {
      spdlog::info("metrics: {} connection(s) were answered 503", self->http_refused);
      self->http_refused = 0;
    }
  }
};

Runtime::Runtime(asio::io_context& io, const config::Config& config)
    : impl_(std::make_shared<Impl>(io, config)) {}

Runtime::~Runtime() {
  impl_->close_control();
  boost::system::error_code ignored;
  impl_->metrics_acceptor.close(ignored);
  ++impl_->progress_generation;
  logging::progress::clear();
}

std::error_code Runtime::preflight(std::string& detail, bool nbd_socket_inherited) const {
  const auto& cfg = impl_->config;
  std::vector<std::pair<std::string, std::string>> sockets;
  if (cfg.nbd.listen.kind == config::Listen::Kind::unix_socket && !nbd_socket_inherited)
    sockets.emplace_back("NBD socket", cfg.nbd.listen.path_or_host);
  sockets.emplace_back("control socket", cfg.control.socket);
  for (const auto& [what, path] : sockets) {
    const auto who = control::live_listener(path);
    if (!who) continue;
    const bool ours = who->find("iscsi-mpio") != std::string::npos;
    detail = std::string(ours ? "another iscsi-mpio attach" : "another process") +
             " is running on the " + what + " " + path + " (" + *who +
             "): stop it first, or give this attach its own nbd.listen and control.socket";
    return std::make_error_code(std::errc::address_in_use);
  }
  return {};
}

void Runtime::logging_in() {
  auto* impl = impl_.get();
  const size_t total = impl->config.paths.size();
  impl->run_progress([impl, total]() -> std::optional<std::string> {
    if (impl->stopping) return std::nullopt;
    size_t up = 0;
    if (!impl->luns.empty()) {
      bool connecting = false;
      for (const auto& p : impl->luns.front().device->path_status()) {
        up += p.state == mpio::PathState::active || p.state == mpio::PathState::ghost;
        connecting = connecting || p.state == mpio::PathState::connecting;
      }
      if (!connecting) return std::nullopt;
    }
    return "logging in to " + paths_word(total) + ": " + std::to_string(up) + " up";
  });
}

std::error_code Runtime::serving(std::vector<ServedLun> luns, std::string& detail) {
  auto& impl = *impl_;
  for (auto& lun : luns) impl.add_lun(std::move(lun));
  for (const auto& p : impl.config.paths) impl.backend.portals.push_back(p.portal);
  impl.backend.snapshot = [raw = &impl] { return raw->luns.front().snapshot(); };
  if (impl.several_luns())
    impl.backend.snapshots = [raw = &impl] {
      std::vector<status::Snapshot> out;
      for (const auto& l : raw->luns) out.push_back(l.snapshot());
      return out;
    };
  impl.backend.stats_json = [raw = &impl] { return raw->stats_json(); };
  impl.backend.fail_path = [raw = &impl](size_t index, std::string& d) {
    return raw->on_every_lun("fail-path", index, d, &mpio::LunDevice::fail_path);
  };
  impl.backend.reinstate_path = [raw = &impl](size_t index, std::string& d) {
    return raw->on_every_lun("reinstate-path", index, d, &mpio::LunDevice::reinstate_path);
  };
  // The URI goes to stdout next: the progress line must not sit in front of it.
  logging::progress::clear();
  if (auto ec = impl.open_control(detail)) return ec;
  if (impl.config.metrics.listen)
    if (auto ec = impl.open_metrics(*impl.config.metrics.listen, detail)) return ec;
  return {};
}

void Runtime::path_event(size_t lun_index, const std::string& path, mpio::PathState state) {
  auto& impl = *impl_;
  if (lun_index >= impl.luns.size()) return;
  const auto statuses = impl.luns[lun_index].device->path_status();
  for (size_t i = 0; i < statuses.size(); ++i)
    if (statuses[i].name == path) {
      impl.collectors[lun_index].path_state(i, state);
      return;
    }
}

void Runtime::add_lun(ServedLun lun) {
  impl_->add_lun(std::move(lun));
}

void Runtime::add_path(const config::Portal& portal) {
  impl_->backend.portals.push_back(portal);
}

void Runtime::on_rescan(std::function<std::string()> rescan) {
  impl_->backend.rescan = std::move(rescan);
}

void Runtime::on_reload(std::function<std::string(const std::string&)> reload) {
  impl_->backend.reload = std::move(reload);
}

void Runtime::paths_changed(std::vector<config::Portal> portals) {
  impl_->backend.portals = std::move(portals);
}

void Runtime::path_removed(const mpio::LunDevice& device, size_t path) {
  auto& impl = *impl_;
  for (size_t l = 0; l < impl.luns.size(); ++l)
    if (impl.luns[l].device.get() == &device) impl.collectors[l].remove_path(path);
}

void Runtime::on_detach(std::function<std::string()> detach) {
  impl_->backend.detach = std::move(detach);
}

void Runtime::shutting_down() {
  auto* impl = impl_.get();
  impl->stopping = true;
  impl->close_control();
  boost::system::error_code ignored;
  impl->metrics_acceptor.close(ignored);
  impl->run_progress([impl]() -> std::optional<std::string> {
    const size_t n = impl->requests_in_flight();
    if (n == 0) return std::nullopt;
    return "draining " + std::to_string(n) + (n == 1 ? " request" : " requests");
  });
}

}  // namespace iscsi_mpio::service
