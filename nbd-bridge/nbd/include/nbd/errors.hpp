// NBD-side error codes (protocol violations by a client) and the one mapping from internal
// errors to the NBD error values a reply may carry (proto.md, "Error values").
#pragma once

#include <cstdint>
#include <string_view>
#include <system_error>

namespace nbd {

// Why a connection ended during the handshake or transmission phase because of the peer.
enum class errc {
  bad_option_magic = 1,  // option header without IHAVEOPT
  unknown_client_flags,  // client flags we did not offer ("Client flags": MUST drop)
  option_too_large,      // NBD_OPT_EXPORT_NAME longer than we buffer (no error reply exists)
  unknown_export,        // NBD_OPT_EXPORT_NAME for an export we do not serve
  too_many_options,      // option haggling that never ends (treated as denial of service)
  bad_request_magic,     // transmission request without NBD_REQUEST_MAGIC
  payload_too_large,     // NBD_CMD_WRITE payload beyond the denial-of-service bound
  client_aborted,        // NBD_OPT_ABORT
  refused,               // ServerHandshake::refuse(): the server does not serve this client
  tls_required,          // NBD_OPT_EXPORT_NAME before NBD_OPT_STARTTLS where TLS is required
  tls_failed,            // the TLS handshake after NBD_OPT_STARTTLS failed
};

const std::error_category& nbd_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), nbd_category()};
}

// The one place that turns an internal error into an NBD error value. Looks at
// ec.default_error_condition() so errors from any category (SCSI, iSCSI, system) that map to a
// std::errc land on the right NBD value; anything unrecognised is NBD_EIO. Success is 0.
uint32_t error_for(std::error_code ec) noexcept;

// "EINVAL", "EIO", ...: for logs and tests.
std::string_view nbd_error_name(uint32_t nbd_error) noexcept;

}  // namespace nbd

template <>
struct std::is_error_code_enum<nbd::errc> : std::true_type {};
