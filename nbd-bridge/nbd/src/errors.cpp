#include "nbd/errors.hpp"

#include <cerrno>
#include <string>

#include "nbd/wire.hpp"

namespace nbd {
namespace {

// errno values without a std::errc name: libstdc++'s system_category keeps them in its own
// category instead of mapping them to generic_category, so accept either.
bool is_errno(const std::error_condition& cond, int value) {
  return cond.value() == value &&
         (cond.category() == std::generic_category() || cond.category() == std::system_category());
}

class NbdCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "nbd"; }
  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::bad_option_magic:
        return "option header without IHAVEOPT magic";
      case errc::unknown_client_flags:
        return "client sent flags the server did not offer";
      case errc::option_too_large:
        return "option data too large";
      case errc::unknown_export:
        return "unknown export name";
      case errc::too_many_options:
        return "too many options during handshake";
      case errc::bad_request_magic:
        return "request header without NBD_REQUEST_MAGIC";
      case errc::payload_too_large:
        return "write payload too large";
      case errc::client_aborted:
        return "client aborted the handshake";
      case errc::refused:
        return "client refused by the server";
      case errc::tls_required:
        return "client did not start TLS, which the server requires";
      case errc::tls_failed:
        return "TLS handshake failed";
    }
    return "unknown nbd error";
  }
};

}  // namespace

const std::error_category& nbd_category() noexcept {
  static const NbdCategory category;
  return category;
}

uint32_t error_for(std::error_code ec) noexcept {
  if (!ec) return 0;
  const std::error_condition cond = ec.default_error_condition();
  using std::errc;
  if (cond == errc::io_error) return kEio;
  if (cond == errc::invalid_argument) return kEinval;
  // proto.md "Error values": EDQUOT and EFBIG SHOULD map to NBD_ENOSPC.
  if (cond == errc::no_space_on_device || cond == errc::file_too_large) return kEnospc;
#ifdef EDQUOT
  if (is_errno(cond, EDQUOT)) return kEnospc;
#endif
  if (cond == errc::read_only_file_system || cond == errc::permission_denied ||
      cond == errc::operation_not_permitted) {
    return kEperm;
  }
  if (cond == errc::not_enough_memory) return kEnomem;
  if (cond == errc::not_supported || cond == errc::operation_not_supported) return kEnotsup;
  if (cond == errc::value_too_large) return kEoverflow;
  if (cond == errc::timed_out) return kEio;
    // Only an explicit shutdown condition: a lost path (connection_aborted, ...) is an I/O error
    // to the client, whereas ESHUTDOWN tells it to disconnect (proto.md, "Terminating the
    // transmission phase").
#ifdef ESHUTDOWN
  if (is_errno(cond, ESHUTDOWN)) return kEshutdown;
#endif
  return kEio;
}

std::string_view nbd_error_name(uint32_t nbd_error) noexcept {
  switch (nbd_error) {
    case 0:
      return "OK";
    case kEperm:
      return "EPERM";
    case kEio:
      return "EIO";
    case kEnomem:
      return "ENOMEM";
    case kEinval:
      return "EINVAL";
    case kEnospc:
      return "ENOSPC";
    case kEoverflow:
      return "EOVERFLOW";
    case kEnotsup:
      return "ENOTSUP";
    case kEshutdown:
      return "ESHUTDOWN";
  }
  return "E?";
}

}  // namespace nbd
