#include "config/config.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cctype>
#include <cerrno>
#include <cstring>

#include <charconv>
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

// metrics.listen: "HOST:PORT" as a portal is written, but the port is required: there is no
// well-known metrics port to default to.
struct metrics_address {
  bool operator()(Context& ctx, const YAML::Node& node, const std::string& path,
                  Portal& out) const {
    const std::string* text = scalar_or_error(ctx, node, path, "an address 'host:port'");
    if (text == nullptr) {
      return false;
    }
    auto parsed = parse_portal(*text);
    const auto colon = text->rfind(':');
    const auto bracket = text->rfind(']');
    const bool has_port =
        colon != std::string::npos && (bracket == std::string::npos || colon > bracket);
    if (auto* problem = std::get_if<std::string>(&parsed)) {
      ctx.error(node, path, config_errc::invalid_value,
                "invalid address " + quoted(*text) + ": " + *problem);
      return false;
    }
    if (!has_port) {
      ctx.error(node, path, config_errc::invalid_value,
                "address " + quoted(*text) + " needs a port, e.g. 127.0.0.1:9469");
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

// A Linux interface name as SO_BINDTODEVICE takes it: 1 to 15 bytes (IFNAMSIZ - 1), no '/',
// ':' or white space (dev_valid_name in the kernel).
struct interface_name {
  bool operator()(Context& ctx, const YAML::Node& node, const std::string& path,
                  std::string& out) const {
    const std::string* text = scalar_or_error(ctx, node, path, "a network interface name");
    if (text == nullptr) {
      return false;
    }
    const bool valid = !text->empty() && text->size() <= 15 && *text != "." && *text != ".." &&
                       text->find_first_of("/: \t\n") == std::string::npos;
    if (!valid) {
      ctx.error(node, path, config_errc::invalid_value,
                quoted(*text) +
                    " is not a network interface name (1 to 15 characters, no '/', "
                    "':' or spaces)");
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

// nbd.device: "none", "auto" or "/dev/nbdN" (N plain decimal, below 2^20: the minor number
// space the block layer has).
struct nbd_device {
  bool operator()(Context& ctx, const YAML::Node& node, const std::string& path,
                  NbdDevice& out) const {
    const std::string expected = "none, auto or /dev/nbdN";
    const std::string* text = scalar_or_error(ctx, node, path, expected);
    if (text == nullptr) {
      return false;
    }
    if (*text == "none" || *text == "auto") {
      out = NbdDevice{*text == "none" ? NbdDevice::Mode::none : NbdDevice::Mode::any, 0};
      return true;
    }
    constexpr std::string_view prefix = "/dev/nbd";
    const std::string_view digits = std::string_view(*text).substr(
        std::string_view(*text).starts_with(prefix) ? prefix.size() : text->size());
    std::uint32_t index = 0;
    const auto [stop, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
    const bool plain = !digits.empty() && digits.size() <= 7 &&
                       (digits.size() == 1 || digits[0] != '0') && ec == std::errc{} &&
                       stop == digits.data() + digits.size() && index < (1u << 20);
    if (!plain) {
      ctx.error(node, path, config_errc::invalid_value,
                "expected " + expected + ", got " + quoted(*text));
      return false;
    }
    out = NbdDevice{NbdDevice::Mode::index, index};
    return true;
  }
  void emit(YAML::Emitter& out, const NbdDevice& value) const {
    switch (value.mode) {
      case NbdDevice::Mode::none:
        out << "none";
        break;
      case NbdDevice::Mode::any:
        out << "auto";
        break;
      case NbdDevice::Mode::index:
        out << "/dev/nbd" + std::to_string(value.index);
        break;
    }
  }
};

// SAM-5 §4.7.7 flat space addressing: the largest LUN a 14-bit single-level address holds.
constexpr std::uint16_t max_flat_lun = 16383;

const Section<LunEntry>& lun_entry_section();

// target.luns: the word `all`, or a list whose items are LUN numbers or `{lun: N, export: NAME,
// wwid: ..., device: ...}` mappings (lun_entry_section). A LUN listed twice is an error.
struct lun_selection {
  static constexpr bool is_list = true;
  const SectionSchema* schema = &lun_entry_section();

  bool operator()(Context& ctx, const YAML::Node& node, const std::string& path,
                  LunSelection& out) const {
    const std::string expected = "a list of LUNs (numbers or {lun: N, ...} entries) or 'all'";
    if (node.IsScalar() && node.Scalar() == "all") {
      out = LunSelection{.all = true, .entries = {}};
      return true;
    }
    if (!node.IsSequence()) {
      ctx.error(node, path, config_errc::wrong_type,
                "expected " + expected + ", got " + describe_node(node));
      return false;
    }
    if (node.size() == 0) {
      ctx.error(node, path, config_errc::invalid_value, "the list needs at least 1 entry");
      return false;
    }
    LunSelection parsed;
    bool ok = true;
    for (const auto& item : node) {
      const std::string item_path = path + "[" + std::to_string(parsed.entries.size()) + "]";
      LunEntry entry{};
      if (item.IsMap()) {
        Context::KeyScope scope(ctx, item.Mark());
        const auto before = ctx.error_count();
        lun_entry_section().parse(ctx, item, item_path, entry);
        ok = ok && ctx.error_count() == before;
      } else if (item.IsScalar()) {
        ok = integer<std::uint16_t>{0, max_flat_lun}(ctx, item, item_path, entry.lun) && ok;
      } else {
        ctx.error(item, item_path, config_errc::wrong_type,
                  "expected a LUN number or a {lun: N, ...} mapping, got " + describe_node(item));
        ok = false;
      }
      for (std::size_t i = 0; i < parsed.entries.size(); ++i) {
        if (ok && parsed.entries[i].lun == entry.lun) {
          ctx.error(item, item_path, config_errc::invalid_value,
                    "LUN " + std::to_string(entry.lun) + " is listed twice (first as " + path +
                        "[" + std::to_string(i) + "])");
          ok = false;
        }
      }
      parsed.entries.push_back(std::move(entry));
    }
    if (ok) {
      out = std::move(parsed);
    }
    return ok;
  }
  void emit(YAML::Emitter& out, const LunSelection& value) const {
    if (value.all) {
      out << "all";
      return;
    }
    out << YAML::BeginSeq;
    for (const LunEntry& entry : value.entries) {
      if (!entry.export_name && entry.wwid.empty() && !entry.device) {
        out << static_cast<unsigned long long>(entry.lun);
      } else {
        static_cast<const Section<LunEntry>*>(schema)->emit(out, entry);
      }
    }
    out << YAML::EndSeq;
  }
};

// secret_file: an absolute path (the daemon's working directory is no place to look for a
// secret). The file itself is read by check_auth(), and only for method chap.
struct file_path {
  bool operator()(Context& ctx, const YAML::Node& node, const std::string& path,
                  std::string& out) const {
    const std::string* text = scalar_or_error(ctx, node, path, "an absolute file path");
    if (text == nullptr) {
      return false;
    }
    if (text->empty() || text->front() != '/' || text->size() > 4096 ||
        text->find('\0') != std::string::npos) {
      ctx.error(node, path, config_errc::invalid_value,
                "expected an absolute file path, got " + quoted(*text));
      return false;
    }
    out = *text;
    return true;
  }
  void emit(YAML::Emitter& out, const std::string& value) const { out << value; }
};

// CHAP_A preference list: a non-empty list of distinct algorithm names.
struct chap_algorithm_list {
  static constexpr std::array<std::pair<std::string_view, ChapAlgorithm>, 4> names{{
      {"sha3-256", ChapAlgorithm::sha3_256},
      {"sha256", ChapAlgorithm::sha256},
      {"sha1", ChapAlgorithm::sha1},
      {"md5", ChapAlgorithm::md5},
  }};

  bool operator()(Context& ctx, const YAML::Node& node, const std::string& path,
                  std::vector<ChapAlgorithm>& out) const {
    std::string choices;
    for (const auto& [name, value] : names) {
      choices += (choices.empty() ? "" : ", ") + std::string(name);
    }
    if (!node.IsSequence() || node.size() == 0) {
      ctx.error(node, path, config_errc::wrong_type,
                "expected a non-empty list of CHAP algorithms (" + choices + "), got " +
                    (node.IsSequence() ? std::string("an empty list") : describe_node(node)));
      return false;
    }
    std::vector<ChapAlgorithm> parsed;
    bool ok = true;
    for (const auto& item : node) {
      const std::string* word = scalar_or_error(ctx, item, path, "a CHAP algorithm name");
      if (word == nullptr) {
        ok = false;
        continue;
      }
      const auto found = std::find_if(names.begin(), names.end(),
                                      [&](const auto& entry) { return entry.first == *word; });
      if (found == names.end()) {
        ctx.error(item, path, config_errc::invalid_value,
                  "unknown CHAP algorithm " + quoted(*word) + "; expected one of: " + choices);
        ok = false;
      } else if (std::find(parsed.begin(), parsed.end(), found->second) != parsed.end()) {
        ctx.error(item, path, config_errc::invalid_value, quoted(*word) + " is listed twice");
        ok = false;
      } else {
        parsed.push_back(found->second);
      }
    }
    if (ok) {
      out = std::move(parsed);
    }
    return ok;
  }
  void emit(YAML::Emitter& out, const std::vector<ChapAlgorithm>& value) const {
    out << YAML::Flow << YAML::BeginSeq;
    for (const ChapAlgorithm algorithm : value) {
      for (const auto& [name, choice] : names) {
        if (choice == algorithm) {
          out << std::string(name);
        }
      }
    }
    out << YAML::EndSeq;
  }
};

// NBD proto.md ("Option types", NBD_OPT_INFO): servers may reject export names over 4096 bytes.
constexpr std::size_t max_export_name = 4096;
constexpr std::string_view default_socket_dir = "/run/iscsi-mpio/";

// A CHAP secret is at most 255 bytes (as `secret:` allows); a file much larger than that is
// not a secret file.
constexpr std::size_t max_secret_length = 255;
constexpr std::size_t max_secret_file_size = 4096;

// Reads a secret file: one line, the trailing newline removed. Errors name the file, never
// what it holds; a file its group or others may read gets a warning (RFC 7143 §12.1.3 wants
// secrets kept from anyone else).
bool read_secret_file(Context& ctx, const YAML::Node& at, const std::string& key_path,
                      const std::string& file, std::string& secret) {
  const std::string name = "secret file '" + file + "'";
  // Only regular files are opened: opening a device or FIFO named by mistake can block or have
  // side effects (a watchdog starts ticking). The file is checked again once open.
  struct stat before {};
  if (::stat(file.c_str(), &before) != 0) {
    ctx.error(at, key_path, config_errc::io_error,
              "cannot open " + name + ": " + std::strerror(errno));
    return false;
  }
  if (!S_ISREG(before.st_mode)) {
    ctx.error(at, key_path, config_errc::io_error, name + " is not a regular file");
    return false;
  }
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    ctx.error(at, key_path, config_errc::io_error,
              "cannot open " + name + ": " + std::strerror(errno));
    return false;
  }
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ctx.error(at, key_path, config_errc::io_error, name + " is not a regular file");
    return false;
  }
  std::string content(max_secret_file_size + 1, '\0');
  std::size_t filled = 0;
  while (filled < content.size()) {
    const ssize_t n = ::read(fd, content.data() + filled, content.size() - filled);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      ctx.error(at, key_path, config_errc::io_error,
                "cannot read " + name + ": " + std::strerror(errno));
      return false;
    }
    if (n == 0) {
      break;
    }
    filled += static_cast<std::size_t>(n);
  }
  content.resize(filled);
  if (content.size() > max_secret_file_size) {
    ctx.error(at, key_path, config_errc::invalid_value,
              name + " is larger than " + std::to_string(max_secret_file_size) +
                  " bytes; it should hold the CHAP secret alone");
    return false;
  }
  if (content.ends_with('\n')) {
    content.pop_back();
    if (content.ends_with('\r')) {
      content.pop_back();
    }
  }
  if (content.empty()) {
    ctx.error(at, key_path, config_errc::invalid_value, name + " is empty");
    return false;
  }
  if (content.find_first_of(std::string_view("\n\0", 2)) != std::string::npos) {
    ctx.error(at, key_path, config_errc::invalid_value,
              name +
                  " holds more than one line (or a NUL byte); put the secret alone on the "
                  "first line");
    return false;
  }
  if (content.size() > max_secret_length) {
    ctx.error(at, key_path, config_errc::invalid_value,
              name + " holds a secret of " + std::to_string(content.size()) + " bytes; at most " +
                  std::to_string(max_secret_length) + " are allowed");
    return false;
  }
  if ((info.st_mode & (S_IRGRP | S_IROTH)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(info.st_mode & 07777));
    ctx.warning(at, key_path, config_errc::insecure_file,
                name + " is readable by " +
                    ((info.st_mode & S_IROTH) != 0 ? "every user" : "its group") + " (mode " +
                    mode + "); chmod 600 it");
  }
  secret = std::move(content);
  return true;
}

// `secret` or `secret_file`, never both (in `auth` and in `auth.mutual` alike).
void check_one_secret_source(Context& ctx, const YAML::Node& map, const std::string& path) {
  if (find_value(map, "secret") && find_value(map, "secret_file")) {
    ctx.error(*find_key(map, "secret_file"), join_key(path, "secret_file"),
              config_errc::invalid_value, "give either 'secret' or 'secret_file', not both");
  }
}

void check_mutual(Context& ctx, const YAML::Node& map, const std::string& path, Mutual& mutual) {
  check_one_secret_source(ctx, map, path);
  if (!find_value(map, "secret") && !find_value(map, "secret_file")) {
    ctx.error_in_section(map, join_key(path, "secret"), config_errc::missing_key,
                         "missing required key 'secret' (or 'secret_file')");
  }
}

void check_auth(Context& ctx, const YAML::Node& map, const std::string& path, Auth& auth) {
  check_one_secret_source(ctx, map, path);
  if (auth.method != Auth::Method::chap) {
    return;  // like iscsid.conf, credentials left in place under `method: none` are ignored
  }
  if (auth.username.empty() && !find_value(map, "username")) {
    ctx.error_in_section(map, join_key(path, "username"), config_errc::missing_key,
                         "missing required key 'username' (method chap needs it)");
  }
  if (auth.secret.empty() && !find_value(map, "secret") && !find_value(map, "secret_file")) {
    ctx.error_in_section(map, join_key(path, "secret"), config_errc::missing_key,
                         "missing required key 'secret' or 'secret_file' (method chap needs one)");
  }
  // Secret files are opened only here: for method chap, and when no `secret` competes.
  const auto mutual_map = find_value(map, "mutual");
  if (auth.secret_file && !find_value(map, "secret")) {
    read_secret_file(ctx, *find_value(map, "secret_file"), join_key(path, "secret_file"),
                     *auth.secret_file, auth.secret);
  }
  if (auth.mutual && auth.mutual->secret_file && mutual_map && !find_value(*mutual_map, "secret")) {
    read_secret_file(ctx, *find_value(*mutual_map, "secret_file"),
                     join_key(path, "mutual.secret_file"), *auth.mutual->secret_file,
                     auth.mutual->secret);
  }
  // RFC 7143 §12.1.3: a secret used to authenticate the initiator must not also authenticate
  // a target, or a rogue target can replay the initiator's own response.
  if (auth.mutual && !auth.secret.empty() && auth.mutual->secret == auth.secret) {
    const bool from_file = auth.mutual->secret_file.has_value();
    const auto node =
        mutual_map ? find_value(*mutual_map, from_file ? "secret_file" : "secret") : std::nullopt;
    const std::string key = from_file ? "mutual.secret_file" : "mutual.secret";
    ctx.error(node ? *node : map, join_key(path, key), config_errc::invalid_value,
              "must differ from the secret the initiator uses (RFC 7143 §12.1.3)");
  }
}

// A file the TLS library will open at attach: checked now so that a typo fails the load (and
// `check-config`) with the file's name rather than the first client's handshake.
bool check_readable_file(Context& ctx, const YAML::Node& at, const std::string& key_path,
                         const std::string& file, std::string_view what) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) {
    ctx.error(at, key_path, config_errc::io_error,
              std::string(what) + " '" + file + "': " + std::strerror(errno));
    return false;
  }
  if (!S_ISREG(st.st_mode)) {
    ctx.error(at, key_path, config_errc::io_error,
              std::string(what) + " '" + file + "' is not a regular file");
    return false;
  }
  if (::access(file.c_str(), R_OK) != 0) {
    ctx.error(at, key_path, config_errc::io_error,
              std::string(what) + " '" + file + "': " + std::strerror(errno));
    return false;
  }
  return true;
}

void check_tls(Context& ctx, const YAML::Node& map, const std::string& path, NbdTls& tls) {
  const auto x509_node = find_value(map, "x509_dir");
  const auto psk_node = find_value(map, "psk_file");
  if (tls.x509_dir && tls.psk_file) {
    ctx.error(*psk_node, join_key(path, "psk_file"), config_errc::invalid_value,
              "give either 'x509_dir' or 'psk_file', not both");
    return;
  }
  if (tls.verify_peer && !tls.x509_dir) {
    const auto node = find_value(map, "verify_peer");
    ctx.error(node ? *node : map, join_key(path, "verify_peer"), config_errc::invalid_value,
              "needs 'x509_dir' (client certificates are checked against its ca-cert.pem)");
  }
  if (tls.mode == NbdTls::Mode::off) {
    return;  // credentials left in place are not opened
  }
  if (!tls.x509_dir && !tls.psk_file) {
    ctx.error_in_section(map, join_key(path, "x509_dir"), config_errc::missing_key,
                         "missing required key 'x509_dir' or 'psk_file' (mode " +
                             std::string(tls.mode == NbdTls::Mode::on ? "on" : "require") +
                             " needs credentials)");
    return;
  }
  if (tls.psk_file) {
    check_readable_file(ctx, *psk_node, join_key(path, "psk_file"), *tls.psk_file, "PSK file");
    return;
  }
  // qemu's tls-creds-x509 directory layout; ca-cert.pem only matters for verify_peer.
  const std::string& dir = *tls.x509_dir;
  const std::string key = join_key(path, "x509_dir");
  check_readable_file(ctx, *x509_node, key, dir + "/server-cert.pem", "certificate");
  check_readable_file(ctx, *x509_node, key, dir + "/server-key.pem", "private key");
  if (tls.verify_peer) {
    check_readable_file(ctx, *x509_node, key, dir + "/ca-cert.pem", "CA certificate");
  }
}

bool is_loopback_host(const std::string& host) {
  if (host == "localhost" || host == "::1") return true;
  in_addr v4{};
  return ::inet_pton(AF_INET, host.c_str(), &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127;
}

// A path entry names the portal to log in to, or the portal to ask for them (`discover`):
// exactly one of the two.
void check_portal_or_discover(Context& ctx, const YAML::Node& map, const std::string& path) {
  const auto portal_key = find_key(map, "portal");
  const auto discover_key = find_key(map, "discover");
  if (portal_key && discover_key) {
    ctx.error(*discover_key, join_key(path, "discover"), config_errc::invalid_value,
              "give either 'portal' or 'discover', not both (discover: the portals come from "
              "the target's SendTargets answer)");
  } else if (!portal_key && !discover_key) {
    ctx.error_in_section(map, join_key(path, "portal"), config_errc::missing_key,
                         "missing required key 'portal' (or 'discover')");
  }
}

void check_path(Context& ctx, const YAML::Node& map, const std::string& path, Path& entry) {
  check_portal_or_discover(ctx, map, path);
  if (!entry.source) {
    return;
  }
  const auto portal_family =
      ip_literal_family(entry.discover ? entry.discover->host : entry.portal.host);
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

constexpr std::string_view lun_placeholder = "{lun}";

std::string replace_lun_placeholder(std::string_view name, std::string_view by) {
  std::string out;
  for (std::size_t at = 0;;) {
    const auto found = name.find(lun_placeholder, at);
    out += name.substr(at, found - at);
    if (found == std::string_view::npos) {
      return out;
    }
    out += by;
    at = found + lun_placeholder.size();
  }
}

// The node of `key` in the mapping at `section` under the root, or the root.
YAML::Node node_or_root(const YAML::Node& root, std::string_view section, std::string_view key) {
  const auto map = find_value(root, section);
  const auto value = map ? find_value(*map, key) : std::nullopt;
  return value ? *value : root;
}

// nbd.export: the default, and "{lun}" filled in when one LUN is served.
void settle_export_name(Config& config) {
  if (config.target.luns) {
    if (config.nbd.export_name.empty()) {
      config.nbd.export_name = "lun" + std::string(lun_placeholder);
    }
    return;
  }
  if (config.nbd.export_name.empty()) {
    config.nbd.export_name = "lun" + std::to_string(config.target.lun);
  }
  config.nbd.export_name =
      replace_lun_placeholder(config.nbd.export_name, std::to_string(config.target.lun));
}

// What the default socket paths are named after: the export, or with several LUNs the export
// template with "{lun}" read as "s" ("lun{lun}" gives luns.sock).
std::string socket_name_source(const Config& config) {
  return config.target.luns ? replace_lun_placeholder(config.nbd.export_name, "s")
                            : config.nbd.export_name;
}

// target.luns against the keys that name one LUN's things (target.lun, target.wwid,
// nbd.device /dev/nbdN), and each LUN's export name and device unique.
void check_lun_selection(Context& ctx, const YAML::Node& root, Config& config) {
  if (!config.target.luns) {
    return;
  }
  const auto target = find_value(root, "target");
  const YAML::Node luns_node = node_or_root(root, "target", "luns");
  if (target && find_value(*target, "lun")) {
    ctx.error(*find_key(*target, "luns"), "target.luns", config_errc::invalid_value,
              "give either 'lun' or 'luns', not both");
  }
  if (target && find_value(*target, "wwid")) {
    ctx.error(*find_value(*target, "wwid"), "target.wwid", config_errc::invalid_value,
              "names one LUN's device; with 'luns' give each LUN its own: "
              "luns: [{lun: N, wwid: ...}]");
  }
  const LunSelection& selection = *config.target.luns;
  const bool one_lun = !selection.all && selection.entries.size() == 1;
  if (config.nbd.device.mode == NbdDevice::Mode::index && !one_lun) {
    ctx.error(node_or_root(root, "nbd", "device"), "nbd.device", config_errc::invalid_value,
              "/dev/nbd" + std::to_string(config.nbd.device.index) +
                  " is one device for several LUNs; use auto, or give each LUN its own: "
                  "luns: [{lun: N, device: /dev/nbdM}]");
  }
  const bool has_placeholder = config.nbd.export_name.find(lun_placeholder) != std::string::npos;
  if (selection.all && !has_placeholder) {
    ctx.error(node_or_root(root, "nbd", "export"), "nbd.export", config_errc::invalid_value,
              "must contain {lun} with 'luns: all': every LUN needs its own export name");
  }
  // Each entry against the ones before it: the later one is the error.
  for (std::size_t i = 0; i < selection.entries.size(); ++i) {
    const LunEntry& entry = selection.entries[i];
    const YAML::Node entry_node = luns_node.IsSequence() ? luns_node[i] : luns_node;
    const std::string entry_path = "target.luns[" + std::to_string(i) + "]";
    const std::string name = export_name_for(config, entry.lun);
    for (std::size_t j = 0; j < i; ++j) {
      const LunEntry& other = selection.entries[j];
      const std::string other_text =
          "LUN " + std::to_string(other.lun) + " (target.luns[" + std::to_string(j) + "])";
      if (export_name_for(config, other.lun) == name) {
        const auto key = find_value(entry_node, "export");
        ctx.error(key ? *key : entry_node, entry_path + (key ? ".export" : ""),
                  config_errc::invalid_value,
                  "export name " + quoted(name) + " is also the export of " + other_text);
        break;
      }
      if (entry.device && other.device && entry.device->mode == NbdDevice::Mode::index &&
          *entry.device == *other.device) {
        ctx.error(*find_value(entry_node, "device"), entry_path + ".device",
                  config_errc::invalid_value,
                  "/dev/nbd" + std::to_string(entry.device->index) + " is also the device of " +
                      other_text);
        break;
      }
    }
  }
}

void check_config(Context& ctx, const YAML::Node& root, const std::string&, Config& config) {
  settle_export_name(config);
  check_lun_selection(ctx, root, config);
  if (config.nbd.listen.path_or_host.empty()) {
    const std::string path =
        std::string(default_socket_dir) + socket_file_stem(socket_name_source(config)) + ".sock";
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
    const std::string source = socket_name_source(config);
    std::string stem = socket_file_stem(source);
    if (stem.size() > 64) {
      char hash[16];
      std::snprintf(hash, sizeof hash, "-%08zx", std::hash<std::string>{}(source)&0xffffffffu);
      stem = stem.substr(0, 64) + hash;
    }
    config.control.socket = std::string(default_socket_dir) + stem + ".control";
  }
  if (config.control.socket.size() > max_unix_socket_path || config.control.socket.front() != '/') {
    const auto control = find_value(root, "control");
    ctx.error(
        control ? *control : root, "control.socket", config_errc::invalid_value,
        "must be an absolute path of at most " + std::to_string(max_unix_socket_path) + " bytes");
  }

  // Two identical paths would be one path counted twice by the path selector.
  const auto path_nodes = find_value(root, "paths");
  for (std::size_t i = 0; i < config.paths.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      const Path& a = config.paths[i];
      const Path& b = config.paths[j];
      const bool same_portal = a.portal == b.portal && !a.portal.host.empty();
      if ((same_portal || (a.discover && a.discover == b.discover)) && a.source == b.source) {
        const YAML::Node at = path_nodes && path_nodes->IsSequence() ? (*path_nodes)[i] : root;
        ctx.error(at, "paths[" + std::to_string(i) + "]", config_errc::invalid_value,
                  std::string(same_portal ? "same portal" : "same discovery portal") +
                      " and source as paths[" + std::to_string(j) + "]");
        break;
      }
    }
  }

  // NBD carries the disk's contents and takes writes from anyone who connects.
  if (config.nbd.listen.kind == Listen::Kind::tcp && config.nbd.tls.mode == NbdTls::Mode::off &&
      !is_loopback_host(config.nbd.listen.path_or_host)) {
    const auto nbd = find_value(root, "nbd");
    const auto listen = nbd ? find_value(*nbd, "listen") : std::nullopt;
    ctx.warning(listen ? *listen : root, "nbd.listen", config_errc::plaintext_nbd,
                "serves the LUN over TCP on " + config.nbd.listen.path_or_host +
                    " without TLS: anyone who can reach it reads and writes the disk; set "
                    "nbd.tls.mode: require");
  }

  // Generated last and only for a usable file: it costs a random_device read.
  if (config.initiator.name.empty() && !ctx.has_errors()) {
    config.initiator.name = generate_initiator_name();
    config.initiator.name_generated = true;
  }
}

// ---- the schema. Adding a key: one line in the section's table, a member with its default
// in config.hpp, a line in example.yaml and a row in README.md (tests check the last two).

// `secret:` prints as "<redacted>"; a secret read from `secret_file:` prints as that key alone,
// so that the printed form loads again.
template <class S>
Field<S> secret_field(std::string S::*secret, std::optional<std::string> S::*file) {
  Field<S> field =
      optional("secret", secret, text{.max_length = max_secret_length, .secret = true});
  field.emit = [secret, file](YAML::Emitter& out, const S& value) {
    if (!(value.*secret).empty() && !(value.*file)) {
      out << YAML::Key << "secret" << YAML::Value << "<redacted>";
    }
  };
  return field;
}

const Section<Mutual>& mutual_section() {
  static const Section<Mutual> section(
      {
          required("username", &Mutual::username, text{.max_length = 255}),
          secret_field(&Mutual::secret, &Mutual::secret_file),
          optional("secret_file", &Mutual::secret_file, file_path{}),
      },
      check_mutual);
  return section;
}

const Section<Auth>& auth_section() {
  static const Section<Auth> section(
      {
          required(
              "method", &Auth::method,
              one_of<Auth::Method>{{{"none", Auth::Method::none}, {"chap", Auth::Method::chap}}}),
          optional("username", &Auth::username, text{.max_length = 255}),
          secret_field(&Auth::secret, &Auth::secret_file),
          optional("secret_file", &Auth::secret_file, file_path{}),
          optional("mutual", &Auth::mutual, nested<Mutual>{&mutual_section()}),
          optional("algorithms", &Auth::algorithms, chap_algorithm_list{}),
      },
      check_auth);
  return section;
}

const Section<Digests>& digests_section() {
  static const one_of<Digest> choice{{{"none", Digest::none},
                                      {"crc32c", Digest::crc32c},
                                      {"prefer-crc32c", Digest::prefer_crc32c}}};
  static const Section<Digests> section({
      optional("header", &Digests::header, choice),
      optional("data", &Digests::data, choice),
  });
  return section;
}

const Section<Initiator>& initiator_section() {
  static const Section<Initiator> section({
      optional("name", &Initiator::name, iscsi_name{}),
  });
  return section;
}

// target.lun, left out of the printed form when target.luns replaces it.
Field<Target> single_lun_field() {
  Field<Target> field = optional("lun", &Target::lun, integer<std::uint16_t>{0, max_flat_lun});
  field.emit = [emit = field.emit](YAML::Emitter& out, const Target& target) {
    if (!target.luns) {
      emit(out, target);
    }
  };
  return field;
}

const Section<LunEntry>& lun_entry_section() {
  static const Section<LunEntry> section({
      required("lun", &LunEntry::lun, integer<std::uint16_t>{0, max_flat_lun}),
      optional("export", &LunEntry::export_name, text{.max_length = max_export_name}),
      optional("wwid", &LunEntry::wwid, text{.max_length = 256}),
      optional("device", &LunEntry::device, nbd_device{}),
  });
  return section;
}

const Section<Target>& target_section() {
  static const Section<Target> section({
      required("iqn", &Target::iqn, iscsi_name{}),
      single_lun_field(),
      optional("luns", &Target::luns, lun_selection{}),
      optional("auth", &Target::auth, nested<Auth>{&auth_section()}),
      optional("login_timeout", &Target::login_timeout, integer<std::uint32_t>{1, 3600}),
      optional("wwid", &Target::wwid, text{.max_length = 256}),
      optional("digests", &Target::digests, nested<Digests>{&digests_section()}),
      optional("command_timeout", &Target::command_timeout, integer<std::uint32_t>{0, 3600}),
      optional("discovery_auth", &Target::discovery_auth, nested<Auth>{&auth_section()}),
  });
  return section;
}

// `portal` of an entry that gives `discover` instead stays unset and is not printed.
Field<Path> path_portal_field() {
  Field<Path> field = optional("portal", &Path::portal, portal{});
  field.emit = [](YAML::Emitter& out, const Path& value) {
    if (!value.portal.host.empty()) {
      out << YAML::Key << "portal" << YAML::Value << to_string(value.portal);
    }
  };
  return field;
}

const Section<Path>& path_section() {
  static const Section<Path> section(
      {
          path_portal_field(),
          optional("discover", &Path::discover, portal{}),
          optional("source", &Path::source, ip_address{}),
          optional("interface", &Path::interface, interface_name{}),
          optional("priority", &Path::priority, integer<std::uint32_t>{0, 1000000}),
      },
      check_path);
  return section;
}

const Section<NbdTls>& tls_section() {
  static const Section<NbdTls> section(
      {
          optional("mode", &NbdTls::mode,
                   one_of<NbdTls::Mode>{{{"off", NbdTls::Mode::off},
                                         {"on", NbdTls::Mode::on},
                                         {"require", NbdTls::Mode::require}}}),
          optional("x509_dir", &NbdTls::x509_dir, file_path{}),
          optional("verify_peer", &NbdTls::verify_peer, boolean{}),
          optional("psk_file", &NbdTls::psk_file, file_path{}),
      },
      check_tls);
  return section;
}

const Section<Nbd>& nbd_section() {
  static const Section<Nbd> section({
      optional("listen", &Nbd::listen, listen_address{}),
      optional("tls", &Nbd::tls, nested<NbdTls>{&tls_section()}),
      optional("export", &Nbd::export_name, text{.max_length = max_export_name}),
      optional("device", &Nbd::device, nbd_device{}),
      optional("busy_poll_us", &Nbd::busy_poll_us, integer<std::uint32_t>{0, 1000}),
      optional("read_only", &Nbd::read_only, boolean{}),
      // proto.md "Option types": strings in option replies are at most 4096 bytes.
      optional("description", &Nbd::description, text{.max_length = 4096}),
      optional("max_clients", &Nbd::max_clients, integer<std::uint32_t>{0, 100000}),
      optional("handshake_timeout", &Nbd::handshake_timeout, integer<std::uint32_t>{0, 3600}),
      optional("client_buffer_mib", &Nbd::client_buffer_mib, integer<std::uint32_t>{1, 1024}),
      optional("total_buffer_mib", &Nbd::total_buffer_mib, integer<std::uint32_t>{0, 65536}),
  });
  return section;
}

// multipath.conf keys that take a word or a number of units (no_path_retry, failback): a word
// that is none of the choices gets the list of choices, a number out of range gets the range.
template <class T>
struct word_or_number {
  std::vector<std::pair<std::string_view, typename T::Mode>> words;
  typename T::Mode numeric_mode;  // the mode a number selects
  std::uint32_t T::*number;       // where the number goes
  std::string_view units;         // "polling intervals", "seconds"

  bool operator()(Context& ctx, const YAML::Node& node, const std::string& path, T& out) const {
    std::string expected;
    for (const auto& [word, mode] : words) expected += std::string(word) + ", ";
    expected += "or a number of " + std::string(units) + " from 1 to 86400";
    const std::string* word = scalar_or_error(ctx, node, path, expected);
    if (word == nullptr) return false;
    for (const auto& [name, mode] : words) {
      if (*word == name) {
        out = T{};
        out.mode = mode;
        return true;
      }
    }
    const bool numeric = !word->empty() && (std::isdigit(static_cast<unsigned char>((*word)[0])) ||
                                            (*word)[0] == '-');
    if (!numeric) {
      ctx.error(node, path, config_errc::invalid_value,
                "expected " + expected + ", got " + quoted(*word));
      return false;
    }
    std::uint32_t n = 0;
    if (!integer<std::uint32_t>{1, 86400}(ctx, node, path, n)) return false;
    out = T{};
    out.mode = numeric_mode;
    out.*number = n;
    return true;
  }
  void emit(YAML::Emitter& out, const T& value) const {
    if (value.mode == numeric_mode) {
      out << static_cast<unsigned long long>(value.*number);
      return;
    }
    for (const auto& [word, mode] : words)
      if (mode == value.mode) out << std::string(word);
  }
};

// multipath.conf's san_path_err_* under their own names. multipathd turns the feature off
// unless all three are greater than 0; here each is required, so a forgotten one is an error
// naming it rather than a setting that silently does nothing. The marginal_path_* family (I/O
// sampled at 10 Hz for at least 120 s) is not offered: see README, "multipath.conf".
const Section<MarginalPathPolicy>& marginal_path_section() {
  static const Section<MarginalPathPolicy> section({
      required("san_path_err_threshold", &MarginalPathPolicy::san_path_err_threshold,
               integer<std::uint32_t>{1, 1000}),
      required("san_path_err_forget_rate", &MarginalPathPolicy::san_path_err_forget_rate,
               integer<std::uint32_t>{1, 86400}),
      required("san_path_err_recovery_time", &MarginalPathPolicy::san_path_err_recovery_time,
               integer<std::uint32_t>{1, 86400}),
  });
  return section;
}

// multipath.hedged_reads. The floor stays above a healthy path's queueing at a deep queue (a
// hedge below it mostly duplicates reads that were only waiting their turn) and below a second
// (above it, the NOP-Out ping catches a black hole about as soon).
const Section<HedgedReadPolicy>& hedged_reads_section() {
  static const Section<HedgedReadPolicy> section({
      optional("enabled", &HedgedReadPolicy::enabled, boolean{}),
      optional("floor_ms", &HedgedReadPolicy::floor_ms, integer<std::uint32_t>{10, 10000}),
      optional("latency_factor", &HedgedReadPolicy::latency_factor, integer<std::uint32_t>{1, 100}),
  });
  return section;
}

const Section<Multipath>& multipath_section() {
  static const Section<Multipath> section({
      optional("path_grouping_policy", &Multipath::path_grouping_policy,
               one_of<Grouping>{{{"failover", Grouping::failover},
                                 {"multibus", Grouping::multibus},
                                 {"group_by_prio", Grouping::group_by_prio}}}),
      optional("failback", &Multipath::failback,
               word_or_number<Failback>{
                   {{"immediate", Failback::Mode::immediate}, {"manual", Failback::Mode::manual}},
                   Failback::Mode::delayed,
                   &Failback::seconds,
                   "seconds"}),
      optional("path_selector", &Multipath::path_selector,
               one_of<std::string>{{{"round-robin", "round-robin"},
                                    {"queue-length", "queue-length"},
                                    {"service-time", "service-time"}}}),
      optional("rr_min_io", &Multipath::rr_min_io, integer<std::uint32_t>{1, 1000000}),
      optional("polling_interval", &Multipath::polling_interval, integer<std::uint32_t>{1, 3600}),
      optional("no_path_retry", &Multipath::no_path_retry,
               word_or_number<NoPathRetry>{
                   {{"fail", NoPathRetry::Mode::fail}, {"queue", NoPathRetry::Mode::queue}},
                   NoPathRetry::Mode::intervals,
                   &NoPathRetry::intervals,
                   "polling intervals"}),
      optional("noop_out_interval", &Multipath::noop_out_interval, integer<std::uint32_t>{0, 3600}),
      optional("noop_out_timeout", &Multipath::noop_out_timeout, integer<std::uint32_t>{1, 3600}),
      optional("max_sectors_kb", &Multipath::max_sectors_kb, integer<std::uint32_t>{4, 32768}),
      optional("marginal_path", &Multipath::marginal_path,
               nested<MarginalPathPolicy>{&marginal_path_section()}),
      optional("hedged_reads", &Multipath::hedged_reads,
               nested<HedgedReadPolicy>{&hedged_reads_section()}),
  });
  return section;
}

const Section<Control>& control_section() {
  static const Section<Control> section({
      optional("socket", &Control::socket, text{.max_length = max_unix_socket_path}),
  });
  return section;
}

const Section<Metrics>& metrics_section() {
  static const Section<Metrics> section({
      optional("listen", &Metrics::listen, metrics_address{}),
  });
  return section;
}

const Section<Log>& log_section() {
  static const Section<Log> section({
      optional("level", &Log::level,
               one_of<std::string>{{{"trace", "trace"},
                                    {"debug", "debug"},
                                    {"info", "info"},
                                    {"warn", "warn"},
                                    {"error", "error"},
                                    {"critical", "critical"},
                                    {"off", "off"}}}),
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
          optional("metrics", &Config::metrics, nested<Metrics>{&metrics_section()}),
          optional("log", &Config::log, nested<Log>{&log_section()}),
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
      auto errors = ctx.take_errors();
      return Result(std::move(errors), ctx.take_warnings());
    }
    return Result(std::move(config), ctx.take_warnings());
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

std::vector<std::uint16_t> listed_luns(const Config& config) {
  if (!config.target.luns) {
    return {config.target.lun};
  }
  std::vector<std::uint16_t> out;
  for (const LunEntry& entry : config.target.luns->entries) {
    out.push_back(entry.lun);
  }
  return out;
}

const LunEntry* lun_entry(const Config& config, std::uint16_t lun) {
  if (!config.target.luns) {
    return nullptr;
  }
  for (const LunEntry& entry : config.target.luns->entries) {
    if (entry.lun == lun) {
      return &entry;
    }
  }
  return nullptr;
}

std::string export_name_for(const Config& config, std::uint16_t lun) {
  const LunEntry* entry = lun_entry(config, lun);
  if (entry != nullptr && entry->export_name) {
    return *entry->export_name;
  }
  return detail::replace_lun_placeholder(config.nbd.export_name, std::to_string(lun));
}

std::string redacted(const Config& config) {
  YAML::Emitter out;
  detail::config_section().emit(out, config);
  return std::string(out.c_str()) + "\n";
}

}  // namespace config
