#include "iscsi_io/path_session.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <cerrno>
#include <cstring>
#include <random>
#include <utility>

#include <common_asio/gather_cursor.hpp>
#include <iscsi/errors.hpp>
#include <iscsi/login.hpp>
#include <iscsi/pdu_reader.hpp>
#include <iscsi/text.hpp>

namespace iscsi_io {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
constexpr auto nothrow = asio::as_tuple(use_awaitable);

std::string describe(const PathConfig& c) {
  std::string host =
      c.portal_host.find(':') != std::string::npos ? "[" + c.portal_host + "]" : c.portal_host;
  std::string s = host + ":" + std::to_string(c.portal_port);
  if (c.source_address) s += " from " + *c.source_address;
  if (c.interface_name) s += " via " + *c.interface_name;
  return s;
}

SessionTimeouts timeouts_of(const PathConfig& config) {
  return {config.login_timeout, config.noop_out_interval, config.noop_out_timeout,
          config.command_timeout};
}

void set_timeouts(PathConfig& config, const SessionTimeouts& timeouts) {
  config.login_timeout = timeouts.login_timeout;
  config.noop_out_interval = timeouts.noop_out_interval;
  config.noop_out_timeout = timeouts.noop_out_timeout;
  config.command_timeout = timeouts.command_timeout;
}

iscsi::Isid random_isid() {
  std::random_device rd;
  iscsi::Isid isid;
  for (auto& b : isid.bytes) b = static_cast<uint8_t>(rd());
  isid.bytes[0] = static_cast<uint8_t>(0xc0 | (isid.bytes[0] & 0x3f));  // T = 0b11: random
  return isid;
}

struct PathSession::Impl : std::enable_shared_from_this<PathSession::Impl> {
  Impl(asio::io_context& io, PathConfig c)
      : io(io),
        config(std::move(c)),
        socket(io),
        wake(io),
        logout_deadline(io),
        rx_buffer(std::make_unique_for_overwrite<std::byte[]>(rx_buffer_size)) {}

  asio::io_context& io;
  PathConfig config;
  tcp::socket socket;
  asio::steady_timer wake;             // the writer sleeps on it; cancel() wakes it
  asio::steady_timer logout_deadline;  // a target-requested logout's Parameter3 window
  // Not zeroed: its pages become resident only as reads reach them. A value-initialised vector
  // wrote all 256 KiB at construction, most of an idle path's memory (issue 25: an attach's
  // second path cost 288 KiB of RSS before, measured with /proc/PID/status).
  static constexpr size_t rx_buffer_size = 256 * 1024;
  std::unique_ptr<std::byte[]> rx_buffer;
  std::span<const std::byte> rx_pending;  // received but not yet consumed

  std::unique_ptr<iscsi::Session> session;
  iscsi::PduReader reader;
  iscsi::OperationalParams negotiated;
  std::optional<uint16_t> portal_group_tag;
  // Every device that uses the session (SessionPool) watches it.
  std::vector<FailureHandler> failure_handlers;
  std::vector<ScsiEventHandler> scsi_event_handlers;
  std::function<void(std::error_code)> logout_done;
  bool target_logout = false;  // logging out because the target asked (AsyncEvent 1)
  std::string target_logout_detail;

  using clock = std::chrono::steady_clock;
  clock::time_point last_received;  // any PDU (bytes) from the target
  clock::time_point ping_sent;

  bool failed = false;
  int loops_running = 0;
  bool housekeeping_running = false;
  std::error_code failure;
  std::string failure_detail;

  // ---------------------------------------------------------------- connect

  awaitable<std::error_code> connect_to(const std::string& host, uint16_t port,
                                        std::string& detail) {
    boost::system::error_code ec;
    auto address = asio::ip::make_address(host, ec);
    tcp::endpoint endpoint;
    if (ec) {
      tcp::resolver resolver(io);
      auto [rec, results] = co_await resolver.async_resolve(host, std::to_string(port), nothrow);
      if (rec || results.empty()) {
        detail = "cannot resolve " + host + ": " + rec.message();
        co_return std::make_error_code(std::errc::host_unreachable);
      }
      endpoint = results.begin()->endpoint();
    } else {
      endpoint = tcp::endpoint(address, port);
    }
    socket = tcp::socket(io);
    socket.open(endpoint.protocol(), ec);
    if (ec) {
      detail = "socket: " + ec.message();
      co_return std::error_code(ec.value(), std::system_category());
    }
    if (config.interface_name) {
      const auto& name = *config.interface_name;
      if (::setsockopt(socket.native_handle(), SOL_SOCKET, SO_BINDTODEVICE, name.c_str(),
                       static_cast<socklen_t>(name.size())) != 0) {
        const int err = errno;
        detail = "cannot bind to interface " + name + ": " + std::strerror(err) +
                 (err == EPERM ? " (needs CAP_NET_RAW)" : "");
        co_return std::error_code(err, std::system_category());
      }
    }
    if (config.source_address) {
      auto source = asio::ip::make_address(*config.source_address, ec);
      if (!ec) socket.bind(tcp::endpoint(source, 0), ec);
      if (ec) {
        detail = "cannot bind to source address " + *config.source_address + ": " + ec.message();
        co_return std::error_code(ec.value(), std::system_category());
      }
    }
    auto [cec] = co_await socket.async_connect(endpoint, nothrow);
    if (cec) {
      detail = "cannot connect to " + describe(config) + ": " + cec.message();
      co_return std::error_code(cec.value(), std::system_category());
    }
    // Small command PDUs must not wait for Nagle; a dead path's socket is closed abortively
    // (SO_LINGER 0) so the kernel never retransmits stale writes when the network heals.
    socket.set_option(tcp::no_delay(true), ec);
    socket.set_option(asio::socket_base::linger(true, 0), ec);
    // No SO_SNDBUF/SO_RCVBUF: setting them turns off the kernel's autotuning, which sizes the
    // buffers to the bandwidth-delay product (up to net.ipv4.tcp_rmem's maximum, 32 MiB here).
    // Fixed 4 MiB buffers measured 20-30% slower for 1 MiB reads at queue depth 8.
    co_return std::error_code{};
  }

  // Reads one whole PDU with `r` (login and discovery, before the session's reader runs).
  awaitable<std::error_code> read_pdu(iscsi::PduReader& r, std::string& detail) {
    while (true) {
      if (!rx_pending.empty()) {
        auto res = r.feed(rx_pending);
        rx_pending = rx_pending.subspan(res.consumed);
        if (res.state == iscsi::PduReader::State::ready) co_return std::error_code{};
        if (res.state == iscsi::PduReader::State::error) {
          detail = r.error_detail();
          co_return r.error();
        }
      }
      auto [ec, n] =
          co_await socket.async_read_some(asio::buffer(rx_buffer.get(), rx_buffer_size), nothrow);
      if (ec) {
        detail = "connection to " + describe(config) + " closed: " + ec.message();
        co_return iscsi::errc::connection_closed;
      }
      rx_pending = std::span<const std::byte>(rx_buffer.get(), n);
    }
  }

  awaitable<std::error_code> write_all(std::span<const std::byte> bytes, std::string& detail) {
    auto [ec, n] =
        co_await asio::async_write(socket, asio::buffer(bytes.data(), bytes.size()), nothrow);
    if (ec) {
      detail = "write to " + describe(config) + " failed: " + ec.message();
      co_return iscsi::errc::connection_closed;
    }
    co_return std::error_code{};
  }

  // ---------------------------------------------------------------- login

  awaitable<std::error_code> login(iscsi::SessionType type, std::string& detail) {
    std::string host = config.portal_host;
    uint16_t port = config.portal_port;
    for (int redirects = 0;; ++redirects) {
      if (auto ec = co_await connect_to(host, port, detail)) co_return ec;
      rx_pending = {};
      iscsi::LoginParams params;
      params.initiator_name = config.initiator_name;
      params.target_name = config.target_name;
      params.type = type;
      params.isid = config.isid;
      params.tsih = iscsi::Tsih{0};
      params.cid = 0;
      params.itt = iscsi::Itt{0x7fff0000u};
      params.cmd_sn = iscsi::CmdSN(1);
      params.chap = config.chap;
      params.chap_algorithms = config.chap_algorithms;
      params.proposal = config.proposal;
      iscsi::LoginExchange exchange(params);
      iscsi::LoginAction action = exchange.start();
      iscsi::PduReader login_reader;  // RFC 7143 §13.12: 8192 bytes, no digests during login
      while (auto* send = std::get_if<iscsi::LoginSend>(&action)) {
        if (auto ec = co_await write_all(send->pdu, detail)) co_return ec;
        if (auto ec = co_await read_pdu(login_reader, detail)) co_return ec;
        iscsi::TargetPdu pdu;
        if (auto ec = iscsi::decode_target_pdu(login_reader.bhs(), pdu, detail)) co_return ec;
        auto* response = std::get_if<iscsi::LoginResponse>(&pdu);
        if (response == nullptr) {
          detail = std::string("expected a Login Response, got ") +
                   iscsi::opcode_name(iscsi::bhs_opcode(login_reader.bhs()));
          co_return iscsi::errc::login_protocol_error;
        }
        action = exchange.on_response(*response, login_reader.data());
        login_reader.next();
      }
      if (auto* done = std::get_if<iscsi::LoginDone>(&action)) {
        negotiated = done->params;
        portal_group_tag = done->target_portal_group_tag;
        iscsi::SessionParams sp;
        sp.negotiated = negotiated;
        sp.cid = 0;
        sp.cmd_sn = done->cmd_sn;
        sp.exp_stat_sn = done->exp_stat_sn;
        sp.exp_cmd_sn = done->exp_cmd_sn;
        sp.max_cmd_sn = done->max_cmd_sn;
        sp.max_tasks = config.max_tasks;
        session = std::make_unique<iscsi::Session>(sp);
        co_return std::error_code{};
      }
      if (auto* redirect = std::get_if<iscsi::LoginRedirect>(&action)) {
        // §6.2 / §11.13.5 status class 1: log in again at the address the target gives.
        if (redirects >= config.max_redirects) {
          detail = "more than " + std::to_string(config.max_redirects) + " login redirections";
          co_return iscsi::errc::login_redirect_loop;
        }
        boost::system::error_code ignored;
        socket.close(ignored);
        host = redirect->portal.host;
        port = redirect->portal.port;
        continue;
      }
      auto& failed_login = std::get<iscsi::LoginFailed>(action);
      // The exchange's detail usually names the status already; do not say it twice.
      const std::string message = failed_login.error.message();
      detail = failed_login.detail.find(message) != std::string::npos ? failed_login.detail
               : failed_login.detail.empty()                          ? message
                                             : message + ": " + failed_login.detail;
      co_return failed_login.error;
    }
  }

  awaitable<std::error_code> login_with_timeout(iscsi::SessionType type, std::string& detail) {
    asio::steady_timer timer(io, config.login_timeout);
    auto result = co_await (login(type, detail) || timer.async_wait(nothrow));
    if (result.index() == 1) {
      boost::system::error_code ignored;
      socket.close(ignored);
      detail = "login to " + describe(config) + " did not complete within " +
               std::to_string(config.login_timeout.count()) + " ms";
      co_return iscsi::errc::login_timeout;
    }
    co_return std::get<0>(result);
  }

  // ---------------------------------------------------------------- full feature phase

  std::chrono::milliseconds tmf_timeout() const {
    return config.noop_out_timeout.count() > 0 ? config.noop_out_timeout : config.command_timeout;
  }

  void start_full_feature_phase() {
    auto self = shared_from_this();
    reader.set_limits(session->reader_limits());
    reader.set_placement(&session->placement());
    session->on_output = [this] { wake.cancel(); };
    session->on_event = [this](const iscsi::SessionEvent& e) { on_session_event(e); };
    session->set_timeouts(
        {.command_timeout = config.command_timeout, .tmf_timeout = tmf_timeout()});
    wake.expires_at(asio::steady_timer::time_point::max());
    loops_running = 2;
    last_received = clock::now();
    asio::co_spawn(io, reader_loop(self), asio::detached);
    asio::co_spawn(io, writer_loop(self), asio::detached);
    start_housekeeping();
  }

  bool housekeeping_needed() const {
    return config.noop_out_interval.count() > 0 || config.command_timeout.count() > 0;
  }

  void start_housekeeping() {
    if (housekeeping_running || !housekeeping_needed()) return;
    housekeeping_running = true;
    asio::co_spawn(io, housekeeping_loop(shared_from_this()), asio::detached);
  }

  // iscsi-mpio reload. In full feature phase the session's command check takes the new policy
  // at once and the housekeeping loop its new tick at its next one (started if pings or
  // command timeouts were off and are on now). Before that, start_full_feature_phase() reads
  // them.
  void set_timeouts(const SessionTimeouts& timeouts) {
    iscsi_io::set_timeouts(config, timeouts);
    if (!session || failed || loops_running == 0) return;
    session->set_timeouts(
        {.command_timeout = config.command_timeout, .tmf_timeout = tmf_timeout()});
    start_housekeeping();
  }

  // Runs inside Session::on_pdu: only session calls that are safe there, owner callbacks posted.
  void on_session_event(const iscsi::SessionEvent& e) {
    using Kind = iscsi::SessionEvent::Kind;
    if (e.kind == Kind::logout_requested) {
      begin_target_logout(e.async.parameter3,
                          "target requested logout (asynchronous event 1, within " +
                              std::to_string(e.async.parameter3) + " s)");
    } else if (e.kind == Kind::negotiation_requested) {
      // §11.9.1 AsyncEvent 4 is honoured by a Text Request or by a Logout Request. We log out
      // and log in again: the new login negotiates every key afresh, with the whole table and
      // its checks, where a Text exchange in full feature phase would need a second, partial
      // negotiation engine. The event sets no deadline; ours is renegotiation_window.
      begin_target_logout(static_cast<uint16_t>(renegotiation_window.count()),
                          "target requested parameter negotiation (asynchronous event 4): "
                          "logging out to negotiate again at the next login");
    } else if (e.kind == Kind::scsi_async_event) {
      ScsiAsyncEvent event{e.async.lun, e.sense, scsi::decode_sense(e.sense)};
      asio::post(io, [self = shared_from_this(), event = std::move(event)] {
        // A copy: a handler may add another.
        auto handlers = self->scsi_event_handlers;
        for (auto& handler : handlers) handler(event);
      });
    }
  }

  static constexpr std::chrono::seconds renegotiation_window{10};

  // §11.9.1 AsyncEvent 1 (and 4, see above): no new commands (they complete as not sent, for
  // the owner to re-issue elsewhere); the Logout Request as soon as the tasks in flight have
  // finished, and no later than `seconds` (Parameter3 for event 1); then the path is down for
  // the owner to log in again.
  void begin_target_logout(uint16_t seconds, std::string why) {
    if (target_logout || failed) return;
    target_logout = true;
    target_logout_detail = std::move(why);
    session->request_logout();
    asio::co_spawn(io, target_logout_window(shared_from_this(), std::chrono::seconds(seconds)),
                   asio::detached);
  }

  awaitable<void> target_logout_window(std::shared_ptr<Impl> self, std::chrono::seconds limit) {
    // Tasks in flight get three quarters of the window to finish; then the Logout goes out
    // regardless, as an immediate command, and its answer gets the rest plus noop_out_timeout.
    if (failed) co_return;
    const auto window = std::chrono::duration_cast<std::chrono::milliseconds>(limit);
    logout_deadline.expires_after(window * 3 / 4);
    co_await logout_deadline.async_wait(nothrow);
    if (failed) co_return;
    if (!session->logout_sent()) session->force_logout();
    logout_deadline.expires_after(
        window / 4 + std::max(config.noop_out_timeout, std::chrono::milliseconds(1000)));
    co_await logout_deadline.async_wait(nothrow);
    if (failed) co_return;
    fail(iscsi::errc::target_requested_logout,
         target_logout_detail + ": no Logout Response from " + describe(config));
  }

  // One timer for the whole session. Liveness: a black-holed connection (no RST, no FIN) gives
  // no socket error for minutes; a NOP-Out ping after noop_out_interval of silence, answered
  // within noop_out_timeout, tells at once. Any PDU from the target counts as a sign of life,
  // not only the ping's answer. Command timeouts: the session scans its outstanding commands
  // and task management requests on each tick.
  // The settings are read on every tick: a reload may change them (set_timeouts). With both
  // off the loop ends; set_timeouts starts it again when one comes on.
  awaitable<void> housekeeping_loop(std::shared_ptr<Impl> self) {
    using std::chrono::milliseconds;
    asio::steady_timer timer(io);
    std::string detail;
    while (!failed && housekeeping_needed()) {
      milliseconds tick(500);
      if (config.noop_out_interval.count() > 0)
        tick = std::min(tick, std::min(config.noop_out_interval, config.noop_out_timeout) / 4);
      if (config.command_timeout.count() > 0)
        tick = std::min(tick, std::min(config.command_timeout, tmf_timeout()) / 4);
      timer.expires_after(std::max(tick, milliseconds(20)));
      co_await timer.async_wait(nothrow);
      if (failed) break;
      const bool pings = config.noop_out_interval.count() > 0;
      const bool timeouts = config.command_timeout.count() > 0;
      const auto now = clock::now();
      if (pings) {
        if (session->ping_outstanding()) {
          if (now - ping_sent >= config.noop_out_timeout &&
              now - last_received >= config.noop_out_timeout) {
            fail(iscsi::errc::connection_timeout,
                 "no answer from " + describe(config) + " to a NOP-Out ping within " +
                     std::to_string(config.noop_out_timeout.count()) + " ms");
            break;
          }
        } else if (now - last_received >= config.noop_out_interval) {
          if (session->send_ping()) ping_sent = now;
        }
      }
      if (timeouts) {
        if (auto ec = session->check_timeouts(detail)) {
          fail(ec, "command timeout on " + describe(config) + ": " + detail);
          break;
        }
      }
    }
    housekeeping_running = false;
  }

  // A PDU the reader finished goes to the session; false once the path has failed.
  bool take_reader_result(iscsi::PduReader::Result res, std::string& detail) {
    if (res.state == iscsi::PduReader::State::error) {
      fail(reader.error(), reader.error_detail());
      return false;
    }
    if (res.state == iscsi::PduReader::State::ready) {
      // After a large placed segment the next read takes just a header (what is missing of it
      // when part came with the segment): the segment behind it is most likely large too, and
      // goes straight into its own buffer (below).
      large_segment_before = reader.data_was_placed() &&
                             reader.data().size() >= direct_read_minimum &&
                             rx_pending.size() < header_bytes();
      auto ec = session->on_pdu(reader.bhs(), reader.data(), detail);
      reader.next();
      if (ec) {
        if (ec == iscsi::errc::command_timeout)
          detail = "command timeout on " + describe(config) + ": " + detail;
        fail(ec, detail);
        return false;
      }
      check_logout_done();
    }
    return !failed;
  }

  // Data-In payloads (placed by the session into the NBD reply buffer) of at least this size are
  // read from the socket straight into that buffer: the kernel's copy is the only one. Smaller
  // ones, and every header, come through rx_buffer, many PDUs per read.
  static constexpr size_t direct_read_minimum = 16 * 1024;
  // The direct read into a placed buffer, while one is waiting for the socket, and how to call
  // it off: its buffer may be given away (discard_data) before any byte arrives. The reactor
  // performs reads on the io_context's thread, so a read called off has written nothing.
  bool direct_read_pending = false;
  bool placement_withdrawn = false;
  asio::cancellation_signal direct_read_cancel;

  // iscsi::Session::discard_data, and the data segment being placed into the task's buffer (a
  // large one read by the socket straight into it, or a small one fed from rx_buffer) moves to
  // the reader's own buffer first.
  bool discard_data(iscsi::ScsiTask& task) {
    if (session == nullptr || failed) return false;
    const auto segment = reader.placed_segment();
    const auto buffer = task.read_buffer;
    if (!segment.empty() && segment.data() >= buffer.data() &&
        segment.data() < buffer.data() + buffer.size()) {
      reader.unplace();
      if (direct_read_pending) {
        placement_withdrawn = true;
        direct_read_cancel.emit(asio::cancellation_type::terminal);
      }
    }
    return session->discard_data(task);
  }
  size_t header_bytes() const {
    return iscsi::bhs_size + (negotiated.header_digest_crc32c ? iscsi::digest_size : 0);
  }
  bool large_segment_before = false;

  awaitable<void> reader_loop(std::shared_ptr<Impl> self) {
    std::string detail;
    while (!failed) {
      while (!rx_pending.empty() && !failed) {
        auto res = reader.feed(rx_pending);
        rx_pending = rx_pending.subspan(res.consumed);
        if (!take_reader_result(res, detail)) break;
      }
      if (failed) break;
      if (auto direct = reader.placed_remainder(); direct.size() >= direct_read_minimum) {
        // One recvmsg takes the segment's tail and, when the target has already queued it, what
        // follows: the data digest and the next PDU's header (into rx_buffer, no further). Read
        // alone, that header cost a recvmsg of its own for every Data-In PDU.
        const size_t trailer_bytes =
            header_bytes() + (negotiated.data_digest_crc32c ? iscsi::digest_size : 0);
        const std::array<asio::mutable_buffer, 2> buffers{
            asio::buffer(direct.data(), direct.size()),
            asio::buffer(rx_buffer.get(), trailer_bytes)};
        direct_read_pending = true;
        auto [ec, n] = co_await socket.async_read_some(
            buffers, asio::bind_cancellation_slot(direct_read_cancel.slot(), nothrow));
        direct_read_pending = false;
        if (ec == asio::error::operation_aborted && std::exchange(placement_withdrawn, false))
          continue;  // nothing read; the segment's rest now goes to the reader's own buffer
        placement_withdrawn = false;
        if (ec) {
          fail(iscsi::errc::connection_closed,
               "connection to " + describe(config) + " lost: " + ec.message());
          break;
        }
        last_received = clock::now();
        const size_t placed = std::min(n, direct.size());
        rx_pending = std::span<const std::byte>(rx_buffer.get(), n - placed);
        if (!take_reader_result(reader.advance_placed(placed), detail)) break;
        continue;
      }
      const size_t want =
          std::exchange(large_segment_before, false) ? header_bytes() : rx_buffer_size;
      auto [ec, n] = co_await socket.async_read_some(asio::buffer(rx_buffer.get(), want), nothrow);
      if (ec) {
        fail(iscsi::errc::connection_closed,
             "connection to " + describe(config) + " lost: " + ec.message());
        break;
      }
      rx_pending = std::span<const std::byte>(rx_buffer.get(), n);
      last_received = clock::now();
    }
    loop_exited();
  }

  awaitable<void> writer_loop(std::shared_ptr<Impl> self) {
    static constexpr std::array<std::byte, 4> zeros{};
    std::vector<asio::const_buffer> buffers;
    while (!failed) {
      auto& out = session->output();
      if (out.empty()) {
        co_await wake.async_wait(nothrow);
        wake.expires_at(asio::steady_timer::time_point::max());
        continue;
      }
      buffers.clear();
      size_t frames = 0;
      // Gather many PDUs into one writev, below the kernel's IOV_MAX of 1024 entries.
      for (auto& f : out) {
        if (buffers.size() + 4 > 1000) break;
        buffers.emplace_back(f.header.data(), f.header_size);
        if (!f.data.empty()) buffers.emplace_back(f.data.data(), f.data.size());
        if (f.padding > 0) buffers.emplace_back(zeros.data(), f.padding);
        if (f.has_data_digest) buffers.emplace_back(f.data_digest.data(), f.data_digest.size());
        ++frames;
      }
      boost::system::error_code ec;
      for (common_asio::GatherCursor cursor(buffers); !cursor.finished() && !ec && !failed;) {
        auto [wec, n] = co_await socket.async_write_some(cursor.window(), nothrow);
        ec = wec;
        cursor.consume(n);
      }
      if (failed) break;
      if (ec) {
        fail(iscsi::errc::connection_closed,
             "write to " + describe(config) + " failed: " + ec.message());
        break;
      }
      session->frames_written(frames);
    }
    loop_exited();
  }

  void check_logout_done() {
    if (!session || !session->logged_out() || failed) return;
    auto done = std::move(logout_done);
    logout_done = nullptr;
    if (target_logout)
      fail(iscsi::errc::target_requested_logout,
           target_logout_detail + ": logged out of " + describe(config));
    else
      fail(iscsi::errc::connection_closed, "logged out");
    if (done) done({});
  }

  // First failure wins: close the socket, wake the writer, and once both loops have stopped
  // touching frames, fail every task and tell the owner.
  void fail(std::error_code ec, const std::string& detail) {
    if (failed) return;
    failed = true;
    failure = ec;
    failure_detail = detail;
    // Whatever ended a logout the target asked for, the owner learns it asked.
    if (target_logout && ec != iscsi::errc::target_requested_logout)
      failure_detail = target_logout_detail + "; then " + detail;
    boost::system::error_code ignored;
    socket.close(ignored);
    wake.cancel();
    logout_deadline.cancel();
    if (loops_running == 0) finish_failure();
  }

  void loop_exited() {
    if (--loops_running == 0 && failed) finish_failure();
  }

  void finish_failure() {
    if (session) session->fail_all(failure, failure_detail);
    if (logout_done) {
      auto done = std::move(logout_done);
      logout_done = nullptr;
      done(failure);
    }
    auto handlers = std::exchange(failure_handlers, {});
    for (auto& handler : handlers) handler(failure, failure_detail);
  }
};

PathSession::PathSession(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PathSession::~PathSession() = default;

std::shared_ptr<PathSession> PathSession::create(asio::io_context& io, PathConfig config) {
  return std::shared_ptr<PathSession>(
      new PathSession(std::make_unique<Impl>(io, std::move(config))));
}

void PathSession::set_timeouts(const SessionTimeouts& timeouts) {
  impl_->set_timeouts(timeouts);
}

const PathConfig& PathSession::config() const {
  return impl_->config;
}
const iscsi::OperationalParams& PathSession::negotiated() const {
  return impl_->negotiated;
}
std::optional<uint16_t> PathSession::target_portal_group_tag() const {
  return impl_->portal_group_tag;
}
bool PathSession::ready() const {
  return impl_->session != nullptr && !impl_->failed && !impl_->session->logout_requested();
}
void PathSession::on_failure(FailureHandler handler) {
  impl_->failure_handlers.push_back(std::move(handler));
}
void PathSession::on_scsi_event(ScsiEventHandler handler) {
  impl_->scsi_event_handlers.push_back(std::move(handler));
}

iscsi::AbortStart PathSession::abort_task(iscsi::ScsiTask& task, iscsi::TmfHandler done) {
  if (impl_->session == nullptr || impl_->failed) return iscsi::AbortStart::not_outstanding;
  return impl_->session->abort_task(task, std::move(done));
}

bool PathSession::discard_data(iscsi::ScsiTask& task) {
  return impl_->discard_data(task);
}

bool PathSession::reset_lun(iscsi::Lun lun, iscsi::TmfHandler done) {
  if (impl_->session == nullptr || impl_->failed) return false;
  return impl_->session->reset_lun(lun, std::move(done));
}

void PathSession::start(LoginHandler done) {
  auto impl = impl_;
  asio::co_spawn(
      impl->io,
      [impl, done = std::move(done)]() -> awaitable<void> {
        std::string detail;
        auto ec = co_await impl->login_with_timeout(iscsi::SessionType::normal, detail);
        if (ec) {
          boost::system::error_code ignored;
          impl->socket.close(ignored);
          done(ec, detail);
          co_return;
        }
        impl->start_full_feature_phase();
        done({}, {});
      },
      asio::detached);
}

void PathSession::submit(iscsi::ScsiTask& task) {
  if (!ready()) {
    // Never sent, so the owner may re-issue it on any path at once.
    task.transport_error = iscsi::errc::task_not_sent;
    task.transport_detail = "path " + describe(impl_->config) +
                            (impl_->session == nullptr ? " is not logged in"
                             : impl_->failed           ? " is down"
                                                       : " is logging out");
    if (task.on_complete) task.on_complete(task);
    return;
  }
  impl_->session->submit(task);
}

void PathSession::logout(std::chrono::milliseconds timeout,
                         std::function<void(std::error_code)> done) {
  auto impl = impl_;
  if (impl->session == nullptr || impl->failed) {
    done({});
    return;
  }
  impl->logout_done = std::move(done);
  impl->session->request_logout();
  auto timer = std::make_shared<asio::steady_timer>(impl->io, timeout);
  timer->async_wait([impl, timer](boost::system::error_code ec) {
    if (!ec && impl->logout_done)
      impl->fail(iscsi::errc::logout_failed, "no Logout Response within the timeout");
  });
}

void PathSession::close() {
  impl_->fail(iscsi::errc::connection_closed, "closed by the initiator");
  if (!impl_->session) {
    boost::system::error_code ignored;
    impl_->socket.close(ignored);
  }
}

void PathSession::discover(
    std::function<void(std::error_code, const std::string&, std::vector<iscsi::DiscoveredTarget>)>
        done) {
  auto impl = impl_;
  asio::co_spawn(
      impl->io,
      [impl, done = std::move(done)]() -> awaitable<void> {
        std::string detail;
        auto ec = co_await impl->login_with_timeout(iscsi::SessionType::discovery, detail);
        if (ec) {
          done(ec, detail, {});
          co_return;
        }
        // §11.10: one Text Request with SendTargets=All; the answer may span several Text
        // Responses (C bit), each continued by an empty Text Request echoing the TTT.
        iscsi::PduReader text_reader(impl->session->reader_limits());
        std::vector<std::byte> answer;
        iscsi::TextRequest req;
        req.immediate = true;
        req.final = true;
        req.itt = iscsi::Itt{1};
        req.ttt = iscsi::Ttt{iscsi::Ttt::reserved};
        req.cmd_sn = impl->session->exp_cmd_sn();
        iscsi::StatSN exp_stat_sn = impl->session->exp_stat_sn();
        req.exp_stat_sn = exp_stat_sn;
        std::vector<std::byte> payload;
        iscsi::append_text(payload, "SendTargets", "All");
        for (int round = 0; round < 64; ++round) {
          req.data_segment_length = static_cast<uint32_t>(payload.size());
          auto bhs = iscsi::encode_bhs(req);
          std::vector<std::byte> wire(bhs.begin(), bhs.end());
          wire.insert(wire.end(), payload.begin(), payload.end());
          wire.resize(iscsi::bhs_size + iscsi::padded_length(req.data_segment_length));
          if (auto wec = co_await impl->write_all(wire, detail)) {
            done(wec, detail, {});
            co_return;
          }
          if (auto rec = co_await impl->read_pdu(text_reader, detail)) {
            done(rec, detail, {});
            co_return;
          }
          iscsi::TargetPdu pdu;
          if (auto dec = iscsi::decode_target_pdu(text_reader.bhs(), pdu, detail)) {
            done(dec, detail, {});
            co_return;
          }
          auto* rsp = std::get_if<iscsi::TextResponse>(&pdu);
          if (rsp == nullptr) {
            done(iscsi::errc::protocol_violation, "expected a Text Response", {});
            co_return;
          }
          exp_stat_sn = rsp->stat_sn.next();
          auto data = text_reader.data();
          answer.insert(answer.end(), data.begin(), data.end());
          text_reader.next();
          if (rsp->final) break;
          payload.clear();
          req.ttt = rsp->ttt;
          req.exp_stat_sn = exp_stat_sn;
        }
        std::vector<iscsi::TextPair> pairs;
        if (auto pec = iscsi::parse_text(answer, pairs)) {
          done(pec, "malformed SendTargets response", {});
          co_return;
        }
        auto targets = iscsi::parse_send_targets(pairs);
        // Log out politely; the answer is ours either way.
        iscsi::LogoutRequest logout;
        logout.immediate = true;
        logout.itt = iscsi::Itt{2};
        logout.cmd_sn = impl->session->exp_cmd_sn();
        logout.exp_stat_sn = exp_stat_sn;
        auto bhs = iscsi::encode_bhs(logout);
        std::string ignored_detail;
        if (!co_await impl->write_all(bhs, ignored_detail))
          (void)co_await impl->read_pdu(text_reader, ignored_detail);
        boost::system::error_code ignored;
        impl->socket.close(ignored);
        done({}, {}, std::move(targets));
      },
      asio::detached);
}

}  // namespace iscsi_io
