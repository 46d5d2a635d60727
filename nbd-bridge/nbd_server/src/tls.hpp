// TLS for NBD connections with GnuTLS (proto.md "TLS support"): credentials loaded once per
// server, one session per connection that sent NBD_OPT_STARTTLS. No Asio here: each call is
// non-blocking and says what the socket must become ready for before it is called again
// (GnuTLS's GNUTLS_E_AGAIN with gnutls_record_get_direction); server.cpp does the waiting.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <system_error>

#include "nbd_server/server.hpp"

// gnutls_session_t without <gnutls/gnutls.h> in server.cpp.
struct gnutls_session_int;

namespace nbd::tls {

// GnuTLS's error codes (negative in GnuTLS, positive here), named by gnutls_strerror.
const std::error_category& gnutls_category() noexcept;

// The outcome of one non-blocking call: `bytes` done, or the readiness to wait for, or an
// error (std::errc::connection_aborted-like EOF is reported as eof).
struct IoResult {
  enum class Want { nothing, read, write };
  size_t bytes = 0;
  Want want = Want::nothing;
  bool eof = false;  // the peer closed (close_notify, or a premature close)
  std::error_code error;
};

class Credentials;

class Session {
 public:
  // A server session over `fd`, which must be in non-blocking mode. Precondition for every
  // call: the previous one did not fail.
  Session(std::shared_ptr<const Credentials> credentials, int fd);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Construction failed (out of memory, bad priority string).
  std::error_code init_error() const noexcept { return init_error_; }

  IoResult handshake();
  // Who the peer is once the handshake is done: the PSK username or the certificate's DN,
  // with the negotiated protocol and cipher, for logs.
  std::string describe_peer() const;

  IoResult recv(void* data, size_t size);
  // Records are only formed by uncork(): send() copies into GnuTLS's buffer, so a batch of
  // replies goes out in as few records as fit.
  void cork();
  IoResult send(const void* data, size_t size);
  IoResult uncork();
  // Best effort close_notify; never waits.
  void bye();

 private:
  IoResult result(long long code) const;

  std::shared_ptr<const Credentials> credentials_;
  ::gnutls_session_int* session_ = nullptr;
  std::error_code init_error_;
};

// Loads the credentials the options name (TlsOptions::mode must not be off). Returns null
// with `ec` and `detail` set when a file is missing or does not parse.
std::shared_ptr<const Credentials> load_credentials(const TlsOptions& options, std::error_code& ec,
                                                    std::string& detail);

}  // namespace nbd::tls
