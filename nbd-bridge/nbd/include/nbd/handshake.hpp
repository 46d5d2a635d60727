// Sans-IO server side of the fixed newstyle handshake (proto.md, "Fixed newstyle negotiation",
// "Option types", "Option reply types", "Metadata querying"). The driver sends pending_output(),
// reads bytes_needed() bytes, feeds them, and repeats until finished(); then outcome() says whether
// to enter transmission, close after an abort, or drop a misbehaving client.
//
// TLS (proto.md, "TLS support", NBD_OPT_STARTTLS): the machine only decides. When it has
// acknowledged NBD_OPT_STARTTLS, tls_pending() is true and it waits: the driver sends the ACK,
// runs the TLS handshake on the connection, then calls tls_started() and carries on feeding
// and sending the decrypted option stream. The TLS library itself stays out of this layer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "nbd/export.hpp"
#include "nbd/export_catalog.hpp"

namespace nbd {

// How the server treats NBD_OPT_STARTTLS (proto.md, "TLS support"): off is NOTLS mode, on is
// "TLS optional" (plaintext clients are served too), require is "FORCEDTLS" mode.
enum class TlsMode { off, on, require };

struct HandshakeOutcome {
  enum class Kind {
    transmission,    // NBD_OPT_GO acknowledged or NBD_OPT_EXPORT_NAME answered
    client_aborted,  // NBD_OPT_ABORT acknowledged: send the output, then close
    protocol_error,  // hard disconnect (proto.md: no error reply is possible or the peer broke
                     // a MUST); send any output, then close
  };
  Kind kind = Kind::protocol_error;
  bool structured_replies = false;  // NBD_OPT_STRUCTURED_REPLY acknowledged
  bool no_zeroes = false;           // client set NBD_FLAG_C_NO_ZEROES
  // The client's last NBD_OPT_SET_META_CONTEXT selected "base:allocation"
  // (kBaseAllocationContextId) for the export it entered transmission with: only then is
  // NBD_CMD_BLOCK_STATUS valid (proto.md NBD_OPT_SET_META_CONTEXT).
  bool base_allocation = false;
  uint16_t transmission_flags = 0;  // as sent to the client
  std::string export_name;          // as the client asked for it ("" = default export)
  // The export entered, as advertised to the client: its own name ("" resolved to the default
  // export's), size and device as the catalog reported them at that option.
  ExportDescription selected_export;
  bool tls_active = false;  // the option stream that ended was over TLS
  std::error_code error;    // nbd::errc for protocol_error / client_aborted
  std::string message;      // human-readable detail for logs
};

class ServerHandshake {
 public:
  // Options are small (names and strings are at most 4096 bytes); anything longer is drained
  // without buffering and answered NBD_REP_ERR_TOO_BIG.
  static constexpr size_t kMaxOptionData = 64 * 1024;
  // Option haggling that goes on longer than this is treated as denial of service (proto.md,
  // "Termination of the session during option haggling").
  static constexpr size_t kMaxOptions = 1024;

  // Serves the exports of `exports`, asked on every option that names one (the catalog may
  // change between options). Not null.
  explicit ServerHandshake(std::shared_ptr<const ExportCatalog> exports,
                           TlsMode tls = TlsMode::off);
  // One export, which is also the default.
  explicit ServerHandshake(ExportDescription export_description, TlsMode tls = TlsMode::off);

  // A client the server will not serve (nbd.max_clients reached): every option but
  // NBD_OPT_ABORT is answered NBD_REP_ERR_POLICY with `message`, which the client can show
  // (proto.md "Option reply types": "forbidden by server policy"); NBD_OPT_EXPORT_NAME, which
  // has no error reply, ends the session. Call before feeding any bytes.
  void refuse(std::string message);

  // Bytes to send, in order (starting with the greeting). The driver sends them, then calls
  // consume_output() with the count sent.
  std::span<const std::byte> pending_output() const noexcept;
  void consume_output(size_t n) noexcept;

  // Consumes client bytes; stops consuming once finished, so nothing after the final option
  // is swallowed. Returns the number of bytes consumed.
  size_t feed(std::span<const std::byte> bytes);

  // Bytes needed to make progress (0 once finished). Reading exactly this many never reads
  // past the end of the handshake.
  size_t bytes_needed() const noexcept;

  bool finished() const noexcept { return state_ == State::finished; }

  // NBD_OPT_STARTTLS was acknowledged: once pending_output() (ending with that ACK) is sent,
  // the driver runs the TLS handshake. Nothing is consumed meanwhile (bytes_needed() is 0).
  bool tls_pending() const noexcept { return state_ == State::tls_handshake; }
  // The TLS handshake succeeded: option haggling starts over inside TLS, with what was
  // negotiated in plaintext forgotten. Precondition: tls_pending().
  void tls_started();
  bool tls_active() const noexcept { return outcome_.tls_active; }
  const HandshakeOutcome& outcome() const noexcept { return outcome_; }

 private:
  enum class State {
    client_flags,
    option_header,
    option_data,
    discard_data,
    tls_handshake,
    finished
  };

  void on_client_flags();
  void on_option_header();
  void on_option(uint32_t option, std::span<const std::byte> data);
  void on_info_or_go(uint32_t option, std::span<const std::byte> data);
  void on_meta_context(uint32_t option, std::span<const std::byte> data);
  void on_starttls(std::span<const std::byte> data);
  bool tls_required() const noexcept;  // FORCEDTLS and TLS not yet up
  void enter_transmission(const std::string& name, ExportDescription selected, uint16_t flags);
  void append_reply(uint32_t option, uint32_t type, std::span<const std::byte> data);
  void append_error(uint32_t option, uint32_t type, std::string_view message);
  void append_info(uint32_t option, uint16_t info_type, std::span<const std::byte> payload);
  void finish(HandshakeOutcome::Kind kind, std::error_code ec, std::string message);
  void expect(State state, size_t bytes);

  std::shared_ptr<const ExportCatalog> exports_;
  TlsMode tls_mode_;
  State state_ = State::client_flags;
  std::vector<std::byte> input_;  // bytes of the current field, up to need_
  size_t need_ = 0;
  uint64_t discard_left_ = 0;
  uint32_t current_option_ = 0;
  size_t options_seen_ = 0;
  std::string refusal_;  // non-empty: refuse(), the message every option is answered with
  // The export name (as sent) of the last NBD_OPT_SET_META_CONTEXT, if it selected
  // base:allocation.
  std::optional<std::string> meta_context_export_;
  std::vector<std::byte> output_;
  size_t output_sent_ = 0;
  HandshakeOutcome outcome_;
};

}  // namespace nbd
