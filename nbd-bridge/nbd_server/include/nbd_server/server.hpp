// The NBD server: listens on a unix socket or TCP, runs the handshake state machine
// (nbd/handshake.hpp) per client, then serves requests from the blockdev::BlockDevice of the
// export the client chose, with several in flight per connection and replies in completion
// order. It serves several exports (one per LUN), added and removed while it runs. Asio stays
// in server.cpp.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <variant>
#include <vector>

#include "nbd/handshake.hpp"

namespace boost::asio {
class io_context;
}
namespace blockdev {
class BlockDevice;
}

namespace nbd {

struct UnixEndpoint {
  std::string path;
};
struct TcpEndpoint {
  std::string host = "127.0.0.1";
  uint16_t port = 10809;  // 0 = any free port (endpoint_uri() reports the one chosen)
};

// TLS for the clients of start()'s listener (proto.md "TLS support"), with GnuTLS. Exactly one
// of x509_dir and psk_file is set unless mode is off. Connections given to serve_connected()
// (the kernel's socketpair) never use TLS.
struct TlsOptions {
  TlsMode mode = TlsMode::off;
  std::string x509_dir;      // ca-cert.pem, server-cert.pem, server-key.pem (qemu's layout)
  bool verify_peer = false;  // clients must present a certificate signed by ca-cert.pem
  std::string psk_file;      // psktool's "username:hexkey" lines
};

// One export: a name clients ask for (NBD_OPT_GO, nbd://host/NAME) and the device behind it.
struct ExportOptions {
  std::string name;
  std::string description;  // NBD_INFO_DESCRIPTION and NBD_OPT_LIST detail
  // Advertise NBD_FLAG_READ_ONLY and refuse writes with EPERM whatever the device says.
  bool read_only = false;
  // Must outlive the export: until remove_export()'s on_released has run, or the Server is
  // destroyed. info() is read for each new client, so a resized device is advertised with
  // its new size to the clients that come after.
  blockdev::BlockDevice& device;
};

struct ServerOptions {
  std::variant<UnixEndpoint, TcpEndpoint> listen;
  // A stream socket already bound and listening, handed over by whoever owns the address
  // (systemd socket activation: clients that connect while no server runs wait in its backlog
  // instead of being refused). start() accepts on it instead of binding `listen`, after
  // checking that it is a listening stream socket of `listen`'s kind whose address is
  // `listen`'s unix path (or TCP port, unless that is 0). The server takes ownership of the
  // descriptor (closed at stop() or on a refused start()) but never unlinks the socket file:
  // its owner keeps it across our restarts.
  std::optional<int> listening_fd;
  TlsOptions tls;
  // The export of Server(io, device, options); unused by Server(io, options).
  std::string export_name;
  std::string description;
  // Backpressure: a connection stops reading requests while this many are in flight, or
  // while READ/WRITE payloads in flight would exceed the byte budget.
  size_t max_requests_per_connection = 128;
  // 8 MiB keeps 8 requests of 1 MiB in flight; at queue depth 128 of 1 MiB a budget of 32 MiB
  // measured a peak VmHWM of 46 MiB against 22 MiB at 8 MiB, with no loss of throughput
  // against tgtd on loopback.
  size_t max_bytes_per_connection = 8u << 20;
  // Backpressure across connections: the payload buffers of every connection of every export
  // (in flight, kept for reuse, held by idle ones) share this budget (nbd/buffer_budget.hpp).
  // A connection whose next buffer would take the server above it reads no further request
  // until enough comes back; kept buffers are freed first. A connection with nothing else in
  // use is never held back, so a request larger than the budget still runs and one client that
  // stops reading its replies cannot stall the others. 0: no limit (each connection within
  // max_bytes_per_connection only). 16 MiB, nbd.total_buffer_mib's default: with 8 exports
  // read at once (1 MiB, 8 in flight each) it measured a peak VmRSS of 25 MiB against 74 MiB
  // without it, at the same throughput (32 MiB: 41 MiB; 8 MiB: 17 MiB, but slower).
  size_t max_bytes_total = 16u << 20;
  // A connection that read no request for this long, with none in flight, frees the payload
  // buffers it keeps for reuse: an idle client (a mounted filesystem between bursts, a VM disk
  // at rest) costs its socket and a few small objects, not the max_bytes_per_connection it
  // used at its busiest. Checked once per period while buffers are kept. 0: kept until the
  // client disconnects.
  std::chrono::milliseconds idle_buffer_release{5000};
  // Advertise NBD_FLAG_READ_ONLY and refuse writes with EPERM whatever the device says
  // (the export of Server(io, device, options); each add_export() says its own).
  bool read_only = false;
  // After remove_export(), how long its connections in transmission stay open answering every
  // new request NBD_EIO (with the removal reason in structured replies) before they are closed
  // like at stop(): a client idle at the removal learns why from its next request rather
  // than from a bare disconnect. 0: close as soon as the requests in flight have completed.
  std::chrono::milliseconds removed_export_linger{2000};
  // Accepted clients served at once; the next one is refused in the handshake
  // (ServerHandshake::refuse) with a message naming the limit. 0: no limit. Connections
  // handed over by serve_connected() are not counted.
  size_t max_clients = 0;
  // From accept to the end of the handshake; a client still negotiating is disconnected.
  // 0: no limit.
  std::chrono::milliseconds handshake_timeout{0};
  // File descriptors kept free for everything but clients (iSCSI paths reconnecting, the
  // control socket, metrics): accepting pauses while fewer than this many are left below
  // RLIMIT_NOFILE, and resumes when clients have gone.
  size_t fd_reserve = 64;
  // How long the server trusts its last count of /proc/self/fd: in between it adds one
  // descriptor per client accepted since (a directory walk per accept would cost a client
  // storm more than the accepts). A client that costs more (a test's clients, in this process
  // too) is seen at the next count. 0: count before every accept.
  std::chrono::milliseconds fd_recount_interval{1000};
};

// Whether `fd` is a listening stream socket at `listen` (its unix path; its TCP port unless that
// is 0): the check start() makes of ServerOptions::listening_fd, for a caller that refuses a
// wrong socket before anything else. std::errc::invalid_argument (or getsockname's error) with
// `detail` naming both addresses. `fd` stays open.
std::error_code check_listening_socket(int fd,
                                       const std::variant<UnixEndpoint, TcpEndpoint>& listen,
                                       std::string& detail);

// Threading: the server runs on one io_context; the device's `done` callbacks may come on any
// thread (they are posted back). start(), endpoint_uri(), connection_count() and counters()
// may be called from any thread; add_export(), remove_export() and serve_connected() on the
// io_context's thread, or before it runs. stop() may be called from any thread and completes
// on the io_context. Destroy the Server only after on_drained has run or the io_context has
// stopped.
//
// Exports: the default export, which clients asking for the empty name get, is the first one
// ever added (nbd/export_catalog.hpp); once removed, the empty name gets its removal reason,
// never another LUN.
class Server {
 public:
  // One export, from options.export_name, description and read_only, as the default.
  Server(boost::asio::io_context& io, blockdev::BlockDevice& device, ServerOptions options);
  // No export yet: add_export() adds them, the first becomes the default.
  Server(boost::asio::io_context& io, ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and listens (or takes options.listening_fd), then accepts on the io_context. A unix
  // socket path left over by a dead process is replaced; one with a live listener is refused
  // (std::errc::address_in_use), as is a path that is not a socket. A listening_fd that is not
  // a listening stream socket, or listens elsewhere than `listen`, is refused
  // (std::errc::invalid_argument, detail names both addresses). TLS credentials are loaded here: a
  // file that does not parse fails the start. `detail` (optional) receives a human-readable reason.
  std::error_code start(std::string& detail);

  // Serves `export_options.device` under its name, for clients that come after. Refused with
  // std::errc::file_exists when an export of that name is served already (detail names it).
  // A name that was removed may be added again.
  std::error_code add_export(ExportOptions export_options, std::string& detail);

  // Stops serving export `name`: clients asking for it (NBD_OPT_INFO, GO, EXPORT_NAME, meta
  // contexts) get NBD_REP_ERR_UNKNOWN "export NAME was removed: REASON"; its connections in
  // transmission answer every new request NBD_EIO and are closed after
  // ServerOptions::removed_export_linger, once the requests in flight have completed (the
  // device gets no request after this call). Other exports are untouched. `on_released`
  // (optional) runs on the io_context thread once no connection uses the device any more,
  // which may be before remove_export returns: then the device may go. Refused with
  // std::errc::no_such_device when no export of that name is served (detail names it).
  std::error_code remove_export(const std::string& name, std::string reason, std::string& detail,
                                std::function<void()> on_released = {});

  // Serves `fd`, a connected stream socket whose peer already knows the export (the kernel's
  // nbd driver, nbd_kernel/kernel_device.hpp): no handshake, straight to the transmission phase
  // (proto.md "Transmission") on export `export_name` with simple replies, size
  // device.info().size_bytes and transmission flags nbd::transmission_flags(info, false).
  // Takes ownership of `fd`, also on error. `peer` names the connection in logs. Call on the
  // io_context's thread (or before it runs); refused with std::errc::operation_canceled once
  // stop() was called, std::errc::no_such_device when the export is not served.
  std::error_code serve_connected(int fd, const std::string& export_name, std::string peer,
                                  std::string& detail);
  // The same on the default export.
  std::error_code serve_connected(int fd, std::string peer, std::string& detail);

  // A restart that keeps /dev/nbdN configured (nbd::KernelDevice::leave): ends every
  // connection serve_connected() serves on one of `export_names` so that the kernel is left no
  // request it sent without getting its reply. The driver requeues a request whose send fails and
  // holds it for the next connection (NBD_CMD_RECONFIGURE), but one it sent and got no reply to
  // waits for the block layer's timer (/sys/block/nbdN/queue/io_timeout, 30 s) before it is sent
  // again. So each connection goes on serving until a quiet moment (nothing unanswered, nothing
  // unread), then shuts its receive side down (the kernel's next send fails and is requeued) and
  // serves what slipped in before that until EOF. Without a quiet moment within `quiet_within`, it
  // shuts down anyway: the requests then unanswered are sent again after the timer. `done` runs on
  // the io_context thread once every such connection is closed. Other clients are untouched (stop()
  // ends them).
  struct Released {
    size_t quiet = 0;   // connections closed at a quiet moment: nothing left unanswered
    size_t forced = 0;  // connections closed at `quiet_within` with requests possibly unanswered
  };
  void release_connected(std::vector<std::string> export_names,
                         std::chrono::milliseconds quiet_within,
                         std::function<void(Released)> done);

  // Stops accepting, stops reading requests, waits until every request already read has
  // completed on the device and its reply is written, closes the connections, then runs
  // on_drained on the io_context thread. Clients still in the handshake are closed at once.
  void stop(std::function<void()> on_drained);

  // nbd+unix:///EXPORT?socket=PATH or nbd://HOST:PORT/EXPORT (empty before start()), for the
  // default export (EXPORT empty while there is none).
  std::string endpoint_uri() const;
  // The same for export `export_name`, whether served or not.
  std::string endpoint_uri(const std::string& export_name) const;

  // Connections currently open (handshake or transmission).
  size_t connection_count() const;

  // Totals since construction, for status and metrics. Any thread.
  struct Counters {
    uint64_t requests = 0;  // read from clients, NBD_CMD_DISC excluded
    uint64_t errors = 0;    // of those, answered with an error (invalid or failed on the device)
    // Payload buffers held by all connections, in flight and kept for reuse: at most twice
    // max_bytes_per_connection per connection, none kept by one idle for idle_buffer_release,
    // and within max_bytes_total but for one request per connection that held nothing else.
    uint64_t buffer_bytes = 0;
    // Payload buffers allocated so far: a client whose request sizes repeat stops adding to it
    // once its connection has buffers for its queue (they are reused request to request).
    uint64_t buffer_allocations = 0;
    uint64_t refused_max_clients = 0;  // refused in the handshake: max_clients reached
    uint64_t handshake_timeouts = 0;   // disconnected: handshake_timeout passed
    uint64_t fd_reserve_pauses = 0;    // times accepting paused to keep fd_reserve free
    // Connections open now: all of them (handshake or transmission) in the totals, those in
    // transmission on the export in counters(export_name).
    uint64_t connections = 0;
    // Times a connection stopped reading requests to wait for max_bytes_total.
    uint64_t buffer_waits = 0;
  };
  Counters counters() const;
  // One export's requests and errors since it was added and its connections now, for the
  // metrics' `lun` label; all zero when no export of that name is served. The server-wide
  // fields (buffer_bytes, refused_max_clients, ...) are left zero.
  Counters counters(const std::string& export_name) const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace nbd
