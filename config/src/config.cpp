#include "config/config.hpp"

#include <cstdio>
#include <functional>

#include <fstream>
#include <sstream>

#include "schema.hpp"

namespace config {
namespace detail {
namespace {

// ---- parsers for this file's value types

struct iscsi_name {
  bool operator()(Context& ctx, const YAML::Node& node, const std::string& path,
                  std::string& out) const {
    const std::string* name = scalar_or_error(ctx, node, path, "an iSCSI name");
    if (name == nullptr) {
      return false;
    }
    if (auto problem = iscsi_name_problem(*name)) {
      ctx.error(node, path, config_errc::invalid_value,
                "invalid iSCSI name " + quoted(*name) + ": " + *problem);
      return false;
    }
    out = *name;
    return true;
  }
  void emit(YAML::Emitter& out, const std::string& value) const { out << value; }
};

struct portal {
  bool operator()(Context& ctx, const YAML::Node& node, const std::string& path,
                  Portal& out) const {
    const std::string* text = scalar_or_error(ctx, node, path, "a portal 'host[:port]'");
    if (text == nullptr) {
      return false;
    }
    auto parsed = parse_portal(*text);
    if (auto* problem = std::get_if<std::string>(&parsed)) {
      ctx.error(node, path, config_errc::invalid_value,
                "invalid portal " + quoted(*text) + ": " + *problem);
      return false;
    }
    out = std::get<Portal>(std::move(parsed));
    return true;
  }
  void emit(YAML::Emitter& out, const Portal& value) const { out << to_string(value); }
};

struct ip_address {
  bool operator()(Context& ctx, const YAML::Node& node, const std::string& path,
                  std::string& out) const {
    const std::string* text = scalar_or_error(ctx, node, path, "an IPv4 or IPv6 address");
    if (text == nullptr) {
      return false;
    }
    if (!ip_literal_family(*text)) {
      ctx.error(node, path, config_errc::invalid_value,
                quoted(*text) + " is not an IPv4 or IPv6 address");
      return false;
    }
    out = *text;
    return true;
  }
  void emit(YAML::Emitter& out, const std::string& value) const { out << value; }
};

struct listen_address {
  bool operator()(Context& ctx, const YAML::Node& node, const std::string& path,
                  Listen& out) const {
    const std::string* text = scalar_or_error(ctx, node, path, "a listen address");
    if (text == nullptr) {
      return false;
    }
    auto parsed = parse_listen(*text);
    if (auto* problem = std::get_if<std::string>(&parsed)) {
      ctx.error(node, path, config_errc::invalid_value,
                "invalid listen address " + quoted(*text) + ": " + *problem);
      return false;
    }
    out = std::get<Listen>(std::move(parsed));
    return true;
  }
  void emit(YAML::Emitter& out, const Listen& value) const { out << to_string(value); }
};

// NBD proto.md ("Option types", NBD_OPT_INFO): servers may reject export names over 4096 bytes.
constexpr std::size_t max_export_name = 4096;
// SAM-5 §4.7.7 flat space addressing: the largest LUN a 14-bit single-level address holds.
constexpr std::uint16_t max_flat_lun = 16383;
constexpr std::string_view default_socket_dir = "/run/iscsi-mpio/";

void check_auth(Context& ctx, const YAML::Node& map, const std::string& path, Auth& auth) {
  if (auth.method != Auth::Method::chap) {
    return;  // like iscsid.conf, credentials left in place under `method: none` are ignored
  }
  for (const auto& [key, value] :
       {std::pair{"username", &auth.username}, std::pair{"secret", &auth.secret}}) {
    if (value->empty() && !find_value(map, key)) {
      ctx.error_in_section(
          map, join_key(path, key), config_errc::missing_key,
          "missing required key '" + std::string(key) + "' (method chap needs it)");
    }
  }
  // RFC 7143 §12.1.3: a secret used to authenticate the initiator must not also authenticate
  // a target, or a rogue target can replay the initiator's own response.
  if (auth.mutual && !auth.secret.empty() && auth.mutual->secret == auth.secret) {
    const auto mutual = find_value(map, "mutual");
    const auto secret = mutual ? find_value(*mutual, "secret") : std::nullopt;
    ctx.error(secret ? *secret : map, join_key(path, "mutual.secret"), config_errc::invalid_value,
              "must differ from the secret the initiator uses (RFC 7143 §12.1.3)");
  }
}

void check_path(Context& ctx, const YAML::Node& map, const std::string& path, Path& entry) {
  if (!entry.source) {
    return;
  }
  const auto portal_family = ip_literal_family(entry.portal.host);
  const auto source_family = ip_literal_family(*entry.source);
  if (portal_family && source_family && portal_family != source_family) {
    const auto node = find_value(map, "source");
    ctx.error(node ? *node : map, join_key(path, "source"), config_errc::invalid_value,
              std::string("is an ") + (*source_family == AddressFamily::ipv4 ? "IPv4" : "IPv6") +
                  " address but the portal is " +
                  (*portal_family == AddressFamily::ipv4 ? "IPv4" : "IPv6"));
  }
}

// Characters that are awkward in a file name become '_' in the default socket path.
std::string socket_file_stem(std::string_view export_name) {
  std::string out(export_name);
  for (char& c : out) {
    const bool safe = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_' || c == '.';
    if (!safe) {
      c = '_';
    }
  }
  return out;
}

void check_config(Context& ctx, const YAML::Node& root, const std::string&, Config& config) {
  if (config.nbd.export_name.empty()) {
    config.nbd.export_name = "lun" + std::to_string(config.target.lun);
  }
  if (config.nbd.listen.path_or_host.empty()) {
    const std::string path =
        std::string(default_socket_dir) + socket_file_stem(config.nbd.export_name) + ".sock";
    if (path.size() > max_unix_socket_path) {
      const auto nbd = find_value(root, "nbd");
      const auto name = nbd ? find_value(*nbd, "export") : std::nullopt;
      ctx.error(name ? *name : root, "nbd.export", config_errc::invalid_value,
                "too long to derive the default socket path; set nbd.listen");
    } else {
      config.nbd.listen =
          Listen{.kind = Listen::Kind::unix_socket, .path_or_host = path, .port = 0};
    }
  }
  if (config.control.socket.empty()) {
    // A long export name is shortened and made unique again with a hash, so the default always
    // fits sockaddr_un.
    std::string stem = socket_file_stem(config.nbd.export_name);
    if (stem.size() > 64) {
      char hash[16];
      std::snprintf(hash, sizeof hash, "-%08zx",
                    std::hash<std::string>{}(config.nbd.export_name) & 0xffffffffu);
      stem = stem.substr(0, 64) + hash;
    }
    config.control.socket = std::string(default_socket_dir) + stem + ".control";
  }
  if (config.control.socket.size() > max_unix_socket_path || config.control.socket.front() != '/') {
    const auto control = find_value(root, "control");
    ctx.error(control ? *control : root, "control.socket", config_errc::invalid_value,
              "must be an absolute path of at most " + std::to_string(max_unix_socket_path) +
                  " bytes");
  }

  // Two identical paths would be one path counted twice by the path selector.
  const auto path_nodes = find_value(root, "paths");
  for (std::size_t i = 0; i < config.paths.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      const Path& a = config.paths[i];
      const Path& b = config.paths[j];
      if (a.portal == b.portal && a.source == b.source && !a.portal.host.empty()) {
        const YAML::Node at = path_nodes && path_nodes->IsSequence() ? (*path_nodes)[i] : root;
        ctx.error(at, "paths[" + std::to_string(i) + "]", config_errc::invalid_value,
                  "same portal and source as paths[" + std::to_string(j) + "]");
        break;
      }
    }
  }

  // Generated last and only for a usable file: it costs a random_device read.
  if (config.initiator.name.empty() && !ctx.has_errors()) {
    config.initiator.name = generate_initiator_name();
    config.initiator.name_generated = true;
  }
}

// ---- the schema. Adding a key: one line in the section's table, a member with its default
// in config.hpp, a line in example.yaml and a row in README.md (tests check the last two).

const Section<Mutual>& mutual_section() {
  static const Section<Mutual> section({
      required("username", &Mutual::username, text{.max_length = 255}),
      required("secret", &Mutual::secret, text{.max_length = 255, .secret = true}),
  });
  return section;
}

const Section<Auth>& auth_section() {
  static const Section<Auth> section(
      {
          required(
              "method", &Auth::method,
              one_of<Auth::Method>{{{"none", Auth::Method::none}, {"chap", Auth::Method::chap}}}),
          optional("username", &Auth::username, text{.max_length = 255}),
          optional("secret", &Auth::secret, text{.max_length = 255, .secret = true}),
          optional("mutual", &Auth::mutual, nested<Mutual>{&mutual_section()}),
      },
      check_auth);
  return section;
}

const Section<Initiator>& initiator_section() {
  static const Section<Initiator> section({
      optional("name", &Initiator::name, iscsi_name{}),
  });
  return section;
}

const Section<Target>& target_section() {
  static const Section<Target> section({
      required("iqn", &Target::iqn, iscsi_name{}),
      optional("lun", &Target::lun, integer<std::uint16_t>{0, max_flat_lun}),
      optional("auth", &Target::auth, nested<Auth>{&auth_section()}),
      optional("login_timeout", &Target::login_timeout, integer<std::uint32_t>{1, 3600}),
  });
  return section;
}

const Section<Path>& path_section() {
  static const Section<Path> section(
      {
          required("portal", &Path::portal, portal{}),
          optional("source", &Path::source, ip_address{}),
      },
      check_path);
  return section;
}

const Section<Nbd>& nbd_section() {
  static const Section<Nbd> section({
      optional("listen", &Nbd::listen, listen_address{}),
      optional("export", &Nbd::export_name, text{.max_length = max_export_name}),
  });
  return section;
}

// no_path_retry (multipath.conf): "fail", "queue" or a positive number of polling intervals.
struct no_path_retry_value {
  bool operator()(Context& ctx, const YAML::Node& node, const std::string& path,
                  NoPathRetry& out) const {
    const std::string expected = "fail, queue, or a number of polling intervals from 1 to 86400";
    const std::string* word = scalar_or_error(ctx, node, path, expected);
    if (word == nullptr) return false;
    if (*word == "fail" || *word == "queue") {
      out = {*word == "fail" ? NoPathRetry::Mode::fail : NoPathRetry::Mode::queue, 0};
      return true;
    }
    std::uint32_t n = 0;
    if (!integer<std::uint32_t>{1, 86400}(ctx, node, path, n)) return false;
    out = {NoPathRetry::Mode::intervals, n};
    return true;
  }
  void emit(YAML::Emitter& out, const NoPathRetry& value) const {
    if (value.mode == NoPathRetry::Mode::intervals)
      out << static_cast<unsigned long long>(value.intervals);
    else
      out << (value.mode == NoPathRetry::Mode::fail ? "fail" : "queue");
  }
};

const Section<Multipath>& multipath_section() {
  static const Section<Multipath> section({
      optional("path_selector", &Multipath::path_selector,
               one_of<std::string>{{{"round-robin", "round-robin"},
                                    {"queue-length", "queue-length"},
                                    {"service-time", "service-time"}}}),
      optional("rr_min_io", &Multipath::rr_min_io, integer<std::uint32_t>{1, 1000000}),
      optional("polling_interval", &Multipath::polling_interval, integer<std::uint32_t>{1, 3600}),
      optional("no_path_retry", &Multipath::no_path_retry, no_path_retry_value{}),
      optional("noop_out_interval", &Multipath::noop_out_interval, integer<std::uint32_t>{0, 3600}),
      optional("noop_out_timeout", &Multipath::noop_out_timeout, integer<std::uint32_t>{1, 3600}),
  });
  return section;
}

const Section<Control>& control_section() {
  static const Section<Control> section({
      optional("socket", &Control::socket, text{.max_length = max_unix_socket_path}),
  });
  return section;
}

const Section<Config>& config_section() {
  static const Section<Config> section(
      {
          optional("initiator", &Config::initiator, nested<Initiator>{&initiator_section()}),
          required("target", &Config::target, nested<Target>{&target_section()}),
          required("paths", &Config::paths, list_of<Path>{&path_section(), 1}),
          optional("multipath", &Config::multipath, nested<Multipath>{&multipath_section()}),
          optional("nbd", &Config::nbd, nested<Nbd>{&nbd_section()}),
          optional("control", &Config::control, nested<Control>{&control_section()}),
      },
      check_config);
  return section;
}

ConfigError whole_file_error(std::string_view file, config_errc code, const YAML::Mark& mark,
                             std::string message) {
  const bool positioned = !mark.is_null();
  return ConfigError{.code = code,
                     .file = std::string(file),
                     .line = positioned ? mark.line + 1 : 0,
                     .column = positioned ? mark.column + 1 : 0,
                     .key_path = {},
                     .message = std::move(message)};
}

}  // namespace
}  // namespace detail

const std::vector<ConfigError>& Result::errors() const {
  static const std::vector<ConfigError> none;
  const auto* errors = std::get_if<std::vector<ConfigError>>(&value_);
  return errors != nullptr ? *errors : none;
}

std::string Result::error_report() const {
  std::string out;
  for (const auto& error : errors()) {
    out += error.to_string() + "\n";
  }
  return out;
}

Result load_string(std::string_view yaml, std::string_view name_for_messages) {
  using namespace detail;
  const std::string file(name_for_messages);
  try {
    YAML::Node root;
    try {
      root = YAML::Load(std::string(yaml));
    } catch (const YAML::ParserException& e) {
      // Includes yaml-cpp's DeepRecursion for absurdly nested input.
      return Result(std::vector{whole_file_error(file, config_errc::syntax_error, e.mark, e.msg)});
    }
    Context ctx(file, config_section());
    if (!root.IsMap() && !root.IsNull()) {
      ctx.error(root, "", config_errc::wrong_type,
                "the document must be a mapping of keys, got " + describe_node(root));
      return Result(ctx.take_errors());
    }
    Config config;
    config_section().parse(ctx, root, "", config);
    if (ctx.has_errors()) {
      return Result(ctx.take_errors());
    }
    return Result(std::move(config));
  } catch (const YAML::Exception& e) {
    // Defensive: the parsers above avoid yaml-cpp's throwing accessors.
    return Result(std::vector{whole_file_error(file, config_errc::invalid_value, e.mark, e.msg)});
  } catch (const std::exception& e) {
    return Result(std::vector{
        whole_file_error(file, config_errc::invalid_value, YAML::Mark::null_mark(), e.what())});
  }
}

Result load_file(const std::string& path) {
  // A config file is a few hundred bytes; refusing huge ones keeps a wrong path (a disk image,
  // /dev/zero) from being read into memory.
  static constexpr std::streamsize max_size = 1 << 20;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Result(std::vector{
        detail::whole_file_error(path, config_errc::io_error, YAML::Mark::null_mark(),
                                 "cannot open: " + std::generic_category().message(errno))});
  }
  std::string content(static_cast<std::size_t>(max_size) + 1, '\0');
  in.read(content.data(), max_size + 1);
  if (in.bad()) {
    return Result(std::vector{detail::whole_file_error(path, config_errc::io_error,
                                                       YAML::Mark::null_mark(), "read error")});
  }
  content.resize(static_cast<std::size_t>(in.gcount()));
  if (content.size() > static_cast<std::size_t>(max_size)) {
    return Result(std::vector{
        detail::whole_file_error(path, config_errc::io_error, YAML::Mark::null_mark(),
                                 "larger than 1 MiB; is this really the configuration file?")});
  }
  return load_string(content, path);
}

std::vector<std::string> known_key_paths() {
  std::vector<std::string> out;
  detail::append_key_paths(detail::config_section(), "", out);
  return out;
}

std::string redacted(const Config& config) {
  YAML::Emitter out;
  detail::config_section().emit(out, config);
  return std::string(out.c_str()) + "\n";
}

}  // namespace config
