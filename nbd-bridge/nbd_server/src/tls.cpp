#include "tls.hpp"

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include <sys/socket.h>
#include <sys/uio.h>

#include <cctype>
#include <cstdint>
#include <fstream>
#include <utility>

#include <common_dl/shared_library.hpp>

namespace nbd::tls {
namespace {

// GnuTLS is opened with dlopen when the first credentials are loaded, not linked: linking it
// maps it and the libraries it needs (p11-kit, nettle, hogweed, gmp, tasn1, unistring, idn2,
// ffi) into every attach and runs its implicit global initialisation, about 2.3 MiB of resident
// memory in an attach whose NBD side has TLS off (issue 25: measured with /proc/PID/smaps,
// 11.4 MiB idle before). The declarations still come from <gnutls/gnutls.h>, so every call is
// type-checked against the header; the soname is the ABI that header describes.
constexpr const char* kGnutlsSoname = "libgnutls.so.30";

// One line per function: the list is read by the struct below and by open_gnutls().
// clang-format off
#define NBD_GNUTLS_FUNCTIONS(X) \
  X(bye) \
  X(certificate_allocate_credentials) \
  X(certificate_free_credentials) \
  X(certificate_get_peers) \
  X(certificate_server_set_request) \
  X(certificate_set_x509_key_file) \
  X(certificate_set_x509_trust_file) \
  X(credentials_set) \
  X(deinit) \
  X(handshake) \
  X(init) \
  X(priority_deinit) \
  X(priority_init) \
  X(priority_set) \
  X(psk_allocate_server_credentials) \
  X(psk_free_server_credentials) \
  X(psk_server_get_username) \
  X(psk_set_server_credentials_file) \
  X(record_cork) \
  X(record_get_direction) \
  X(record_recv) \
  X(record_send) \
  X(record_uncork) \
  X(session_get_desc) \
  X(session_set_verify_cert) \
  X(strerror) \
  X(transport_set_int2) \
  X(transport_set_vec_push_function) \
  X(x509_crt_deinit) \
  X(x509_crt_get_dn3) \
  X(x509_crt_import) \
  X(x509_crt_init)
// clang-format on

struct GnutlsLibrary {
#define NBD_GNUTLS_POINTER(name) decltype(&::gnutls_##name) name = nullptr;
  NBD_GNUTLS_FUNCTIONS(NBD_GNUTLS_POINTER)
#undef NBD_GNUTLS_POINTER
  // gnutls_free is a variable holding the deallocator (gnutls.h), not a function.
  gnutls_free_function free = nullptr;
  std::string error;  // non-empty: the library or one of its symbols is missing
};

GnutlsLibrary open_gnutls() {
  GnutlsLibrary lib;
  // Left open when it goes out of scope: sessions and credentials may live until exit.
  common_dl::SharedLibrary library(kGnutlsSoname, "Debian package libgnutls30");
#define NBD_GNUTLS_RESOLVE(name) library.resolve(lib.name, "gnutls_" #name);
  NBD_GNUTLS_FUNCTIONS(NBD_GNUTLS_RESOLVE)
#undef NBD_GNUTLS_RESOLVE
  gnutls_free_function* free_variable = nullptr;
  library.resolve(free_variable, "gnutls_free");
  if (free_variable != nullptr) lib.free = *free_variable;
  if (!library.error().empty()) lib.error = "TLS needs GnuTLS: " + library.error();
  return lib;
}

// Opened on first use, once; thread-safe by the function-local static.
const GnutlsLibrary& gnutls() {
  static const GnutlsLibrary lib = open_gnutls();
  return lib;
}

class GnutlsCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "gnutls"; }
  std::string message(int value) const override {
    // Codes of this category come from GnuTLS calls, so the library is open; the fallback only
    // guards a code made up elsewhere.
    if (gnutls().strerror == nullptr) return "GnuTLS error " + std::to_string(-value);
    return gnutls().strerror(-value);
  }
};

std::error_code gnutls_error(int code) {
  return {-code, gnutls_category()};
}

// What nbdkit and libnbd use: certificates with GnuTLS's defaults; for PSK the (EC)DHE-PSK
// key exchanges first, plain PSK last (TLS 1.3 negotiates PSK with (EC)DHE anyway).
constexpr const char* kX509Priority = "NORMAL";
constexpr const char* kPskPriority = "NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK";
// The server's cipher order over the client's, with CHACHA20-POLY1305 moved behind AES-GCM. GnuTLS
// 3.7's NORMAL lets a GnuTLS client (libnbd, qemu) pick CHACHA20-POLY1305 even where the CPU has
// AES instructions and AES-GCM is far cheaper: on the test machine `gnutls-cli
// --benchmark-ciphers` gives 4.4 GB/s for AES-128-GCM against 0.26 GB/s for CHACHA20-POLY1305,
// and every byte of a LUN read goes through it on our side.
constexpr const char* kPreferAesGcm = ":%SERVER_PRECEDENCE:-CHACHA20-POLY1305:+CHACHA20-POLY1305";

bool cpu_has_aes_instructions() {
#if defined(__x86_64__) || defined(__i386__)
  return __builtin_cpu_supports("aes") && __builtin_cpu_supports("pclmul");
#else
  return false;  // elsewhere GnuTLS's own order stands
#endif
}

// psktool's keys file: "username:hexkey" lines. GnuTLS reads it at each handshake and only
// says "unknown user" for a malformed one: check it now so a bad file stops the attach.
bool valid_psk_file(const std::string& file, std::string& detail) {
  std::ifstream in(file);
  if (!in) {
    detail = "cannot open PSK file '" + file + "'";
    return false;
  }
  std::string line;
  size_t number = 0;
  size_t keys = 0;
  while (std::getline(in, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    const size_t colon = line.find(':');
    const std::string_view key =
        colon == std::string::npos ? std::string_view{} : std::string_view(line).substr(colon + 1);
    bool hex = !key.empty() && key.size() % 2 == 0;
    for (const char c : key) hex = hex && std::isxdigit(static_cast<unsigned char>(c));
    if (colon == 0 || !hex) {
      detail = "PSK file '" + file + "' line " + std::to_string(number) +
               ": expected username:hexkey (as psktool writes)";
      return false;
    }
    ++keys;
  }
  if (keys == 0) {
    detail = "PSK file '" + file + "' holds no key";
    return false;
  }
  return true;
}

// GnuTLS's own push may write with plain writev: a peer gone away would raise SIGPIPE, which
// Asio's sends suppress with MSG_NOSIGNAL and so does this one.
ssize_t push_nosignal(gnutls_transport_ptr_t transport, const giovec_t* iov, int count) {
  msghdr message{};
  message.msg_iov = reinterpret_cast<iovec*>(const_cast<giovec_t*>(iov));
  message.msg_iovlen = static_cast<size_t>(count);
  return ::sendmsg(static_cast<int>(reinterpret_cast<intptr_t>(transport)), &message, MSG_NOSIGNAL);
}

}  // namespace

const std::error_category& gnutls_category() noexcept {
  static const GnutlsCategory category;
  return category;
}

class Credentials {
 public:
  Credentials() = default;
  ~Credentials() {
    if (x509_) gnutls().certificate_free_credentials(x509_);
    if (psk_) gnutls().psk_free_server_credentials(psk_);
    if (priority_) gnutls().priority_deinit(priority_);
  }
  Credentials(const Credentials&) = delete;
  Credentials& operator=(const Credentials&) = delete;

  gnutls_certificate_credentials_t x509_ = nullptr;
  gnutls_psk_server_credentials_t psk_ = nullptr;
  gnutls_priority_t priority_ = nullptr;
  bool verify_peer_ = false;
};

std::shared_ptr<const Credentials> load_credentials(const TlsOptions& options, std::error_code& ec,
                                                    std::string& detail) {
  if (!gnutls().error.empty()) {
    detail = gnutls().error;
    ec = std::make_error_code(std::errc::function_not_supported);
    return nullptr;
  }
  auto credentials = std::make_shared<Credentials>();
  int rc = 0;
  if (!options.psk_file.empty()) {
    if (!valid_psk_file(options.psk_file, detail)) {
      ec = std::make_error_code(std::errc::invalid_argument);
      return nullptr;
    }
    rc = gnutls().psk_allocate_server_credentials(&credentials->psk_);
    if (rc == GNUTLS_E_SUCCESS)
      rc = gnutls().psk_set_server_credentials_file(credentials->psk_, options.psk_file.c_str());
    if (rc != GNUTLS_E_SUCCESS) detail = "PSK file '" + options.psk_file + "': ";
  } else {
    // qemu's layout (tls-creds-x509 dir=): server-cert.pem, server-key.pem, ca-cert.pem.
    const std::string cert = options.x509_dir + "/server-cert.pem";
    const std::string key = options.x509_dir + "/server-key.pem";
    const std::string ca = options.x509_dir + "/ca-cert.pem";
    rc = gnutls().certificate_allocate_credentials(&credentials->x509_);
    if (rc == GNUTLS_E_SUCCESS) {
      rc = gnutls().certificate_set_x509_key_file(credentials->x509_, cert.c_str(), key.c_str(),
                                                  GNUTLS_X509_FMT_PEM);
      if (rc != GNUTLS_E_SUCCESS) detail = "certificate '" + cert + "' with key '" + key + "': ";
    }
    if (rc == GNUTLS_E_SUCCESS && options.verify_peer) {
      // Returns the number of certificates read.
      rc = gnutls().certificate_set_x509_trust_file(credentials->x509_, ca.c_str(),
                                                    GNUTLS_X509_FMT_PEM);
      if (rc == 0) rc = GNUTLS_E_NO_CERTIFICATE_FOUND;
      if (rc > 0) rc = GNUTLS_E_SUCCESS;
      if (rc != GNUTLS_E_SUCCESS) detail = "CA certificate '" + ca + "': ";
    }
    credentials->verify_peer_ = options.verify_peer;
  }
  if (rc == GNUTLS_E_SUCCESS) {
    std::string priority = credentials->psk_ ? kPskPriority : kX509Priority;
    if (cpu_has_aes_instructions()) priority += kPreferAesGcm;
    rc = gnutls().priority_init(&credentials->priority_, priority.c_str(), nullptr);
    if (rc != GNUTLS_E_SUCCESS) detail = std::string("priority '") + priority + "': ";
  }
  if (rc != GNUTLS_E_SUCCESS) {
    detail += gnutls().strerror(rc);
    ec = gnutls_error(rc);
    return nullptr;
  }
  return credentials;
}

Session::Session(std::shared_ptr<const Credentials> credentials, int fd)
    : credentials_(std::move(credentials)) {
  int rc = gnutls().init(&session_, GNUTLS_SERVER | GNUTLS_NONBLOCK);
  if (rc == GNUTLS_E_SUCCESS) rc = gnutls().priority_set(session_, credentials_->priority_);
  if (rc == GNUTLS_E_SUCCESS) {
    if (credentials_->psk_) {
      rc = gnutls().credentials_set(session_, GNUTLS_CRD_PSK, credentials_->psk_);
    } else {
      rc = gnutls().credentials_set(session_, GNUTLS_CRD_CERTIFICATE, credentials_->x509_);
      if (rc == GNUTLS_E_SUCCESS && credentials_->verify_peer_) {
        // No certificate, or one that does not chain to ca-cert.pem, fails the handshake.
        gnutls().certificate_server_set_request(session_, GNUTLS_CERT_REQUIRE);
        gnutls().session_set_verify_cert(session_, nullptr, 0);
      }
    }
  }
  if (rc != GNUTLS_E_SUCCESS) {
    init_error_ = gnutls_error(rc);
    return;
  }
  gnutls().transport_set_int2(session_, fd, fd);
  gnutls().transport_set_vec_push_function(session_, push_nosignal);
}

Session::~Session() {
  if (session_) gnutls().deinit(session_);
}

IoResult Session::result(long long code) const {
  IoResult r;
  if (code >= 0) {
    r.bytes = static_cast<size_t>(code);
    return r;
  }
  const int rc = static_cast<int>(code);
  if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED) {
    // gnutls_record_get_direction: 0 = it was reading, 1 = writing.
    r.want =
        gnutls().record_get_direction(session_) == 0 ? IoResult::Want::read : IoResult::Want::write;
    return r;
  }
  // A client that closes the TCP connection without close_notify (as most NBD clients do
  // after NBD_CMD_DISC) is an ordinary disconnect.
  if (rc == GNUTLS_E_PREMATURE_TERMINATION) {
    r.eof = true;
    return r;
  }
  r.error = gnutls_error(rc);
  return r;
}

IoResult Session::handshake() {
  return result(gnutls().handshake(session_));
}

std::string Session::describe_peer() const {
  std::string out;
  if (char* desc = gnutls().session_get_desc(session_)) {
    out = desc;
    gnutls().free(desc);
  }
  if (credentials_->psk_) {
    if (const char* user = gnutls().psk_server_get_username(session_))
      out += std::string(", PSK user '") + user + "'";
    return out;
  }
  unsigned count = 0;
  const gnutls_datum_t* chain = gnutls().certificate_get_peers(session_, &count);
  if (chain == nullptr || count == 0) return out;
  gnutls_x509_crt_t crt = nullptr;
  if (gnutls().x509_crt_init(&crt) != GNUTLS_E_SUCCESS) return out;
  gnutls_datum_t dn{};
  if (gnutls().x509_crt_import(crt, &chain[0], GNUTLS_X509_FMT_DER) == GNUTLS_E_SUCCESS &&
      gnutls().x509_crt_get_dn3(crt, &dn, 0) == GNUTLS_E_SUCCESS) {
    out += ", client certificate " + std::string(reinterpret_cast<const char*>(dn.data), dn.size);
    gnutls().free(dn.data);
  }
  gnutls().x509_crt_deinit(crt);
  return out;
}

IoResult Session::recv(void* data, size_t size) {
  IoResult r = result(gnutls().record_recv(session_, data, size));
  if (!r.error && !r.eof && r.want == IoResult::Want::nothing && r.bytes == 0) r.eof = true;
  return r;
}

void Session::cork() {
  gnutls().record_cork(session_);
}

IoResult Session::send(const void* data, size_t size) {
  return result(gnutls().record_send(session_, data, size));
}

IoResult Session::uncork() {
  return result(gnutls().record_uncork(session_, 0));
}

void Session::bye() {
  gnutls().bye(session_, GNUTLS_SHUT_WR);
}

}  // namespace nbd::tls
