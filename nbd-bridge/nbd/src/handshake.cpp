#include "nbd/handshake.hpp"

#include <algorithm>
#include <array>
#include <utility>

#include "common/bytes.hpp"
#include "nbd/errors.hpp"
#include "nbd/wire.hpp"

namespace nbd {
namespace {

void append(std::vector<std::byte>& out, std::span<const std::byte> bytes) {
  out.insert(out.end(), bytes.begin(), bytes.end());
}

// The message of every NBD_REP_ERR_TLS_REQD: clients show it to the user.
constexpr std::string_view kTlsRequiredMessage =
    "TLS is required on this server: negotiate NBD_OPT_STARTTLS first";

template <size_t N>
std::array<std::byte, N> zeroed() {
  return std::array<std::byte, N>{};
}

}  // namespace

ServerHandshake::ServerHandshake(ExportDescription export_description, TlsMode tls)
    : ServerHandshake(std::make_shared<const ExportList>(std::move(export_description)), tls) {}

ServerHandshake::ServerHandshake(std::shared_ptr<const ExportCatalog> exports, TlsMode tls)
    : exports_(std::move(exports)), tls_mode_(tls) {
  // Greeting (proto.md, "Newstyle negotiation"): NBDMAGIC, IHAVEOPT, handshake flags.
  auto greeting = zeroed<kServerGreetingSize>();
  common::store_be64(greeting, 0, kNbdMagic);
  common::store_be64(greeting, 8, kIHaveOptMagic);
  common::store_be16(greeting, 16, kFlagFixedNewstyle | kFlagNoZeroes);
  append(output_, greeting);
  expect(State::client_flags, kClientFlagsSize);
}

std::span<const std::byte> ServerHandshake::pending_output() const noexcept {
  return std::span<const std::byte>(output_).subspan(output_sent_);
}

void ServerHandshake::consume_output(size_t n) noexcept {
  output_sent_ += std::min(n, output_.size() - output_sent_);
  if (output_sent_ == output_.size()) {
    output_.clear();
    output_sent_ = 0;
  }
}

size_t ServerHandshake::bytes_needed() const noexcept {
  switch (state_) {
    case State::finished:
    case State::tls_handshake:
      return 0;
    case State::discard_data:
      return static_cast<size_t>(std::min<uint64_t>(discard_left_, kMaxOptionData));
    default:
      return need_ - input_.size();
  }
}

void ServerHandshake::expect(State state, size_t bytes) {
  state_ = state;
  need_ = bytes;
  input_.clear();
}

size_t ServerHandshake::feed(std::span<const std::byte> bytes) {
  size_t consumed = 0;
  while (consumed < bytes.size() && state_ != State::finished && state_ != State::tls_handshake) {
    auto rest = bytes.subspan(consumed);
    if (state_ == State::discard_data) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(discard_left_, rest.size()));
      discard_left_ -= n;
      consumed += n;
      if (discard_left_ == 0) {
        if (tls_required() && current_option_ != kOptStartTls && current_option_ != kOptAbort) {
          append_error(current_option_, kRepErrTlsReqd, kTlsRequiredMessage);
        } else {
          append_error(current_option_, kRepErrTooBig, "option data too large");
        }
        expect(State::option_header, kOptionHeaderSize);
      }
      continue;
    }
    const size_t n = std::min(need_ - input_.size(), rest.size());
    input_.insert(input_.end(), rest.begin(), rest.begin() + static_cast<ptrdiff_t>(n));
    consumed += n;
    if (input_.size() < need_) break;
    switch (state_) {
      case State::client_flags:
        on_client_flags();
        break;
      case State::option_header:
        on_option_header();
        break;
      case State::option_data: {
        std::vector<std::byte> data = std::move(input_);
        expect(State::option_header, kOptionHeaderSize);
        on_option(current_option_, data);
        break;
      }
      default:
        break;
    }
  }
  return consumed;
}

void ServerHandshake::on_client_flags() {
  const uint32_t flags = common::load_be32(input_, 0);
  // proto.md "Client flags": the server MUST drop the connection on an unknown flag. A client
  // without NBD_FLAG_C_FIXED_NEWSTYLE is still served fixed newstyle ("Servers MAY choose to
  // honour fixed newstyle from clients that didn't set this bit").
  if ((flags & ~kKnownClientFlags) != 0) {
    finish(HandshakeOutcome::Kind::protocol_error, errc::unknown_client_flags,
           "client flags " + std::to_string(flags) + " include bits the server did not offer");
    return;
  }
  outcome_.no_zeroes = (flags & kClientFlagNoZeroes) != 0;
  expect(State::option_header, kOptionHeaderSize);
}

void ServerHandshake::on_option_header() {
  const uint64_t magic = common::load_be64(input_, 0);
  current_option_ = common::load_be32(input_, 8);
  const uint32_t length = common::load_be32(input_, 12);
  if (magic != kIHaveOptMagic) {
    finish(HandshakeOutcome::Kind::protocol_error, errc::bad_option_magic,
           "option header without IHAVEOPT magic");
    return;
  }
  if (++options_seen_ > kMaxOptions) {
    finish(HandshakeOutcome::Kind::protocol_error, errc::too_many_options,
           "more than " + std::to_string(kMaxOptions) + " options");
    return;
  }
  if (length > kMaxOptionData) {
    // NBD_OPT_EXPORT_NAME has no error reply: the only answer is to terminate the session.
    if (current_option_ == kOptExportName) {
      finish(HandshakeOutcome::Kind::protocol_error, errc::option_too_large,
             "NBD_OPT_EXPORT_NAME with " + std::to_string(length) + " bytes of name");
      return;
    }
    state_ = State::discard_data;
    discard_left_ = length;
    input_.clear();
    return;
  }
  if (length == 0) {
    expect(State::option_header, kOptionHeaderSize);
    on_option(current_option_, {});
    return;
  }
  expect(State::option_data, length);
}

void ServerHandshake::tls_started() {
  if (state_ != State::tls_handshake) return;
  // proto.md NBD_OPT_STARTTLS: after the TLS handshake option haggling goes on inside TLS;
  // nothing negotiated in plaintext (structured replies, metadata contexts) carries over.
  outcome_.tls_active = true;
  outcome_.structured_replies = false;
  meta_context_export_.reset();
  expect(State::option_header, kOptionHeaderSize);
}

bool ServerHandshake::tls_required() const noexcept {
  return tls_mode_ == TlsMode::require && !outcome_.tls_active;
}

void ServerHandshake::refuse(std::string message) {
  refusal_ = std::move(message);
  refusal_.resize(std::min(refusal_.size(), kMaxStringLength));
  if (refusal_.empty()) refusal_ = "refused";
}

void ServerHandshake::on_option(uint32_t option, std::span<const std::byte> data) {
  // A client the server will not serve (too many clients) learns why from every option, TLS
  // or not: nothing it negotiates could change the answer.
  if (!refusal_.empty() && option != kOptAbort) {
    if (option == kOptExportName) {
      finish(HandshakeOutcome::Kind::protocol_error, errc::refused, refusal_);
    } else {
      append_error(option, kRepErrPolicy, refusal_);
    }
    return;
  }
  // proto.md "TLS support", FORCEDTLS: before TLS every option but NBD_OPT_STARTTLS and
  // NBD_OPT_ABORT gets NBD_REP_ERR_TLS_REQD; NBD_OPT_EXPORT_NAME has no error reply, so the
  // server MUST close the connection.
  if (tls_required() && option != kOptStartTls && option != kOptAbort) {
    if (option == kOptExportName) {
      finish(HandshakeOutcome::Kind::protocol_error, errc::tls_required,
             "NBD_OPT_EXPORT_NAME without TLS, which this server requires");
      return;
    }
    append_error(option, kRepErrTlsReqd, kTlsRequiredMessage);
    return;
  }
  switch (option) {
    case kOptExportName: {
      const std::string name(common::as_chars(data));
      ExportLookup lookup = exports_->find(name);
      if (!lookup.found) {
        // No error reply exists for NBD_OPT_EXPORT_NAME: "the server MUST terminate the
        // session". The reason (unknown, or removed and why) is for the server's log.
        outcome_.export_name = name;
        finish(HandshakeOutcome::Kind::protocol_error, errc::unknown_export,
               "NBD_OPT_EXPORT_NAME: " + lookup.reason);
        return;
      }
      const blockdev::DeviceInfo& device = lookup.found->device;
      const uint16_t flags = transmission_flags(device, outcome_.structured_replies);
      auto reply = zeroed<kExportNameReplySize>();
      common::store_be64(reply, 0, device.size_bytes);
      common::store_be16(reply, 8, flags);
      append(output_, reply);
      if (!outcome_.no_zeroes) output_.resize(output_.size() + kExportNameZeroPadding);
      enter_transmission(name, std::move(*lookup.found), flags);
      return;
    }
    case kOptAbort:
      // "The server MUST reply with NBD_REP_ACK"; data, if any, SHOULD be ignored.
      append_reply(option, kRepAck, {});
      finish(HandshakeOutcome::Kind::client_aborted, errc::client_aborted, "NBD_OPT_ABORT");
      return;
    case kOptList: {
      if (!data.empty()) {
        append_error(option, kRepErrInvalid, "NBD_OPT_LIST takes no data");
        return;
      }
      // One NBD_REP_SERVER per export: name length, name, then implementation-specific
      // detail (the description); the default export first.
      for (const ExportSummary& listed : exports_->list()) {
        std::vector<std::byte> payload(4);
        common::store_be32(payload, 0, static_cast<uint32_t>(listed.name.size()));
        append(payload, common::as_bytes(listed.name));
        append(payload, common::as_bytes(listed.description));
        append_reply(option, kRepServer, payload);
      }
      append_reply(option, kRepAck, {});
      return;
    }
    case kOptStartTls:
      on_starttls(data);
      return;
    case kOptInfo:
    case kOptGo:
      on_info_or_go(option, data);
      return;
    case kOptListMetaContext:
    case kOptSetMetaContext:
      on_meta_context(option, data);
      return;
    case kOptStructuredReply:
      if (!data.empty()) {
        append_error(option, kRepErrInvalid, "NBD_OPT_STRUCTURED_REPLY takes no data");
        return;
      }
      outcome_.structured_replies = true;
      append_reply(option, kRepAck, {});
      return;
    default:
      // Baseline: unknown options get NBD_REP_ERR_UNSUP and negotiation continues.
      append_error(option, kRepErrUnsup, "option " + std::to_string(option) + " not supported");
      return;
  }
}

void ServerHandshake::on_starttls(std::span<const std::byte> data) {
  if (tls_mode_ == TlsMode::off) {
    // NOTLS mode: "NBD_REP_ERR_POLICY (if it does not support TLS for policy reasons)"; TLS is
    // built in, only not configured.
    append_error(kOptStartTls, kRepErrPolicy, "TLS is not enabled on this server");
    return;
  }
  if (outcome_.tls_active) {
    // A second NBD_OPT_STARTTLS once TLS is up: "SHOULD send NBD_REP_ERR_INVALID".
    append_error(kOptStartTls, kRepErrInvalid, "TLS is already active");
    return;
  }
  if (!data.empty()) {
    append_error(kOptStartTls, kRepErrInvalid, "NBD_OPT_STARTTLS takes no data");
    return;
  }
  append_reply(kOptStartTls, kRepAck, {});
  state_ = State::tls_handshake;
  need_ = 0;
  input_.clear();
}

void ServerHandshake::on_info_or_go(uint32_t option, std::span<const std::byte> data) {
  // Data: u32 name length (<= option length - 6), name, u16 count, count x u16 info types.
  if (data.size() < 6) {
    append_error(option, kRepErrInvalid, "option data shorter than 6 bytes");
    return;
  }
  const uint32_t name_length = common::load_be32(data, 0);
  if (name_length > data.size() - 6) {
    append_error(option, kRepErrInvalid, "export name length exceeds option length");
    return;
  }
  const std::string name(common::as_chars(data.subspan(4, name_length)));
  const size_t count_offset = 4 + size_t{name_length};
  const uint16_t count = common::load_be16(data, count_offset);
  if (data.size() != count_offset + 2 + size_t{count} * 2) {
    append_error(option, kRepErrInvalid, "information request count does not match length");
    return;
  }
  ExportLookup lookup = exports_->find(name);
  if (!lookup.found) {
    append_error(option, kRepErrUnknown, lookup.reason);
    return;
  }
  const ExportDescription& selected = *lookup.found;
  bool want_name = false;
  bool want_description = false;
  for (uint16_t i = 0; i < count; ++i) {
    const uint16_t info = common::load_be16(data, count_offset + 2 + size_t{i} * 2);
    if (info == kInfoName) want_name = true;
    if (info == kInfoDescription) want_description = true;
  }

  const uint16_t flags = transmission_flags(selected.device, outcome_.structured_replies);
  std::array<std::byte, 10> export_info{};
  common::store_be64(export_info, 0, selected.device.size_bytes);
  common::store_be16(export_info, 8, flags);
  append_info(option, kInfoExport, export_info);

  // Sent even when not requested (the server "MAY send information requests back which are
  // not explicitly requested"): clients that understand it avoid unaligned requests.
  const BlockSizes sizes = block_sizes(selected.device);
  std::array<std::byte, 12> block_size_info{};
  common::store_be32(block_size_info, 0, sizes.minimum);
  common::store_be32(block_size_info, 4, sizes.preferred);
  common::store_be32(block_size_info, 8, sizes.maximum);
  append_info(option, kInfoBlockSize, block_size_info);

  if (want_name) append_info(option, kInfoName, common::as_bytes(selected.name));
  if (want_description && !selected.description.empty()) {
    append_info(option, kInfoDescription, common::as_bytes(selected.description));
  }
  append_reply(option, kRepAck, {});

  if (option == kOptGo) enter_transmission(name, std::move(*lookup.found), flags);
}

void ServerHandshake::enter_transmission(const std::string& name, ExportDescription selected,
                                         uint16_t flags) {
  outcome_.export_name = name;
  outcome_.selected_export = std::move(selected);
  outcome_.transmission_flags = flags;
  // proto.md NBD_OPT_SET_META_CONTEXT: block status needs the final SET_META_CONTEXT to have
  // "referred to the same export name that was ultimately selected for transmission": the
  // name as sent, so a context set on one export never carries over to another one (nor
  // from "" to the default export's own name).
  outcome_.base_allocation = meta_context_export_ && *meta_context_export_ == name;
  finish(HandshakeOutcome::Kind::transmission, {}, {});
}

// proto.md NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT. Data: u32 export name length,
// name, u32 query count, then per query a u32 length and the query ("namespace:leaf"). We know
// one namespace, "base", with one context, "base:allocation".
void ServerHandshake::on_meta_context(uint32_t option, std::span<const std::byte> data) {
  const bool set = option == kOptSetMetaContext;
  // "Issuing this command replaces all previously-set metadata contexts (including when this
  // command fails)".
  if (set) meta_context_export_.reset();
  if (set && !outcome_.structured_replies) {
    // "MUST NOT be requested unless structured replies have been negotiated first ... a server
    // SHOULD send NBD_REP_ERR_INVALID".
    append_error(option, kRepErrInvalid, "NBD_OPT_SET_META_CONTEXT before structured replies");
    return;
  }
  // A query length that would read beyond the option data: "MUST fail the request with
  // NBD_REP_ERR_INVALID".
  if (data.size() < 8) {
    append_error(option, kRepErrInvalid, "option data shorter than 8 bytes");
    return;
  }
  const uint32_t name_length = common::load_be32(data, 0);
  if (name_length > data.size() - 8) {
    append_error(option, kRepErrInvalid, "export name length exceeds option length");
    return;
  }
  const std::string name(common::as_chars(data.subspan(4, name_length)));
  size_t at = 4 + size_t{name_length};
  const uint32_t count = common::load_be32(data, at);
  at += 4;
  if (count > kMaxMetaContextQueries) {
    append_error(option, kRepErrTooBig, "too many metadata context queries");
    return;
  }
  bool matched = false;
  for (uint32_t i = 0; i < count; ++i) {
    if (data.size() - at < 4) {
      append_error(option, kRepErrInvalid, "query count exceeds option length");
      return;
    }
    const uint32_t length = common::load_be32(data, at);
    at += 4;
    if (length > data.size() - at) {
      append_error(option, kRepErrInvalid, "query length exceeds option length");
      return;
    }
    const std::string_view query = common::as_chars(data.subspan(at, length));
    at += length;
    const size_t colon = query.find(':');
    if (colon == std::string_view::npos) {
      // "lacking the required colon that delimits the namespace": MAY be ERR_INVALID.
      append_error(option, kRepErrInvalid, "metadata context query without a namespace");
      return;
    }
    // Unknown namespaces "MUST" be ignored; in "base", SET selects only base:allocation and
    // LIST also takes the empty leaf name as a wildcard for every context of the namespace.
    if (query == kBaseAllocation || (!set && query == "base:")) matched = true;
  }
  if (at != data.size()) {
    append_error(option, kRepErrInvalid, "option data longer than its queries");
    return;
  }
  if (const ExportLookup lookup = exports_->find(name); !lookup.found) {
    append_error(option, kRepErrUnknown, lookup.reason);
    return;
  }
  // LIST with no query lists every context; SET with no query selects none.
  if (count == 0 && !set) matched = true;
  if (matched) {
    // LIST's context ids are "reserved and SHOULD be set to zero".
    std::vector<std::byte> payload(4);
    common::store_be32(payload, 0, set ? kBaseAllocationContextId : 0);
    append(payload, common::as_bytes(kBaseAllocation));
    append_reply(option, kRepMetaContext, payload);
    if (set) meta_context_export_ = name;
  }
  append_reply(option, kRepAck, {});
}

void ServerHandshake::append_reply(uint32_t option, uint32_t type,
                                   std::span<const std::byte> data) {
  auto header = zeroed<kOptionReplyHeaderSize>();
  common::store_be64(header, 0, kOptionReplyMagic);
  common::store_be32(header, 8, option);
  common::store_be32(header, 12, type);
  common::store_be32(header, 16, static_cast<uint32_t>(data.size()));
  append(output_, header);
  append(output_, data);
}

void ServerHandshake::append_error(uint32_t option, uint32_t type, std::string_view message) {
  // Error replies MAY carry a message "suitable for display to the user" (max string length).
  append_reply(option, type, common::as_bytes(message.substr(0, kMaxStringLength)));
}

void ServerHandshake::append_info(uint32_t option, uint16_t info_type,
                                  std::span<const std::byte> payload) {
  std::vector<std::byte> data(2);
  common::store_be16(data, 0, info_type);
  append(data, payload);
  append_reply(option, kRepInfo, data);
}

void ServerHandshake::finish(HandshakeOutcome::Kind kind, std::error_code ec, std::string message) {
  state_ = State::finished;
  need_ = 0;
  input_.clear();
  outcome_.kind = kind;
  outcome_.error = ec;
  outcome_.message = std::move(message);
}

}  // namespace nbd
