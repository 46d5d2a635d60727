#pragma once
// The iscsi-mpio configuration file (config/example.yaml, config/README.md): typed values,
// loading with every error collected, and a printable form with the CHAP secrets removed.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <blockdev/no_path_retry.hpp>
#include <mpio/hedged_read.hpp>
#include <mpio/marginal_path.hpp>
#include <mpio/path_group.hpp>

#include "config/error.hpp"
#include "config/names.hpp"

namespace config {

struct Initiator {
  std::string name;             // iSCSI name; generate_initiator_name() when the file has none
  bool name_generated = false;  // true when `name` did not come from the file
};

struct Mutual {
  std::string username;  // CHAP_N the target answers with (iscsid.conf username_in)
  std::string secret;    // never printed: see redacted()
  // Where `secret` was read from, when the file gave `secret_file` instead of `secret`.
  std::optional<std::string> secret_file;
};

// CHAP_A algorithms (RFC 7143 §12.1.3; IANA PPP authentication algorithms 5, 6, 7, 8).
enum class ChapAlgorithm { md5, sha1, sha256, sha3_256 };

struct Auth {
  enum class Method { none, chap };
  Method method = Method::none;
  std::string username;  // meaningful when method == chap
  std::string secret;    // never printed: see redacted()
  // Where `secret` was read from (the file's first line, trailing newline removed) when the file
  // gave `secret_file` instead of `secret`. Read only for method chap.
  std::optional<std::string> secret_file;
  std::optional<Mutual> mutual;  // the initiator also authenticates the target
  // Offered in this order of preference; the target takes the first it supports. Strongest
  // first, but without SHA-256: tgtd (1.0.85) reads CHAP_A=7 as SHA-1, not SHA-256 as LIO and
  // open-iscsi do, and fails the login when 7 comes before 5 (checked on this test bed).
  std::vector<ChapAlgorithm> algorithms{ChapAlgorithm::sha3_256, ChapAlgorithm::sha1,
                                        ChapAlgorithm::md5};
};

// target.digests: CRC32C over headers and data segments (RFC 7143 §13.1). `crc32c` requires
// it (a target that refuses fails the login), `prefer_crc32c` falls back to none.
enum class Digest { none, crc32c, prefer_crc32c };

struct Digests {
  Digest header = Digest::none;
  Digest data = Digest::none;
  friend bool operator==(const Digests&, const Digests&) = default;
};

// nbd.device: also attach the export to the kernel's nbd driver as a block device.
struct NbdDevice {
  enum class Mode { none, any, index };  // none | auto (the first free device) | /dev/nbdN
  Mode mode = Mode::none;
  std::uint32_t index = 0;  // Mode::index
  friend bool operator==(const NbdDevice&, const NbdDevice&) = default;
};

// One entry of target.luns: a LUN and, as multipath.conf's multipaths { multipath { wwid;
// alias } } does for a map, what its export is called and which device it must be.
struct LunEntry {
  std::uint16_t lun = 0;
  std::optional<std::string> export_name;  // `export`; default: nbd.export with {lun} filled in
  std::string wwid;                        // as target.wwid, for this LUN
  std::optional<NbdDevice> device;         // default: nbd.device
  friend bool operator==(const LunEntry&, const LunEntry&) = default;
};

// target.luns: the LUNs one attach serves over the same sessions, each its own multipath map
// and NBD export.
struct LunSelection {
  bool all = false;               // `all`: every block-device LUN REPORT LUNS lists
  std::vector<LunEntry> entries;  // the listed LUNs in file order (empty for `all`)
  friend bool operator==(const LunSelection&, const LunSelection&) = default;
};

struct Target {
  std::string iqn;
  std::uint16_t lun = 0;  // SAM flat space addressing: 0..16383
  // Several LUNs instead of `lun` (giving both is an error); nullopt: `lun` alone.
  std::optional<LunSelection> luns;
  Auth auth;
  std::uint32_t login_timeout = 15;  // seconds; iscsid.conf node.conn[0].timeo.login_timeout
  // The device every path must present (multipath.conf multipaths { wwid }): the WWID that
  // `status` shows. Empty: the first path in the file that logs in defines it.
  std::string wwid;
  Digests digests;
  // Seconds a SCSI command may be outstanding before ABORT TASK (then LOGICAL UNIT RESET, then
  // a new connection); 0: never. Linux: /sys/block/sdX/device/timeout.
  std::uint32_t command_timeout = 30;
  // CHAP on the discovery sessions of `discover:` path entries and of the `discover` verb
  // (iscsid.conf discovery.sendtargets.auth.*); the same keys as `auth`. Method none: none.
  Auth discovery_auth;
};

struct Path {
  Portal portal;  // host empty when the entry gives `discover` instead
  // A SendTargets portal (iscsiadm -m discovery -t st -p): at attach, one session per portal it
  // reports for target.iqn that is reachable from this entry's source / interface, each with the
  // entry's other settings. Exactly one of `portal` and `discover` is given.
  std::optional<Portal> discover;
  std::optional<std::string> source;     // local IPv4/IPv6 literal to bind before connecting
  std::optional<std::string> interface;  // SO_BINDTODEVICE; open-iscsi iface.net_ifacename
  // path_grouping_policy failover: higher is used first; default: earlier in the file first.
  std::optional<std::uint32_t> priority;
};

// nbd.tls: TLS for NBD clients (proto.md "TLS support") with GnuTLS, as qemu-nbd and nbdkit
// offer it. Checked at load: the files it names exist.
struct NbdTls {
  // off: NBD_OPT_STARTTLS refused; on: offered, plaintext clients served too; require: no
  // export without TLS.
  enum class Mode { off, on, require };
  Mode mode = Mode::off;
  // X.509 credentials in qemu's layout: ca-cert.pem, server-cert.pem, server-key.pem.
  std::optional<std::string> x509_dir;
  // X.509 only: the client must present a certificate signed by x509_dir/ca-cert.pem.
  bool verify_peer = false;
  // PSK keys in psktool's format, "username:hexkey" per line.
  std::optional<std::string> psk_file;
};

struct Nbd {
  NbdTls tls;
  Listen listen;  // default unix:/run/iscsi-mpio/<export_name>.sock
  // Default "lun<N>" with N = target.lun; "{lun}" in it becomes the LUN number. With
  // target.luns it stays a template (default "lun{lun}") that names each LUN's export.
  std::string export_name;
  NbdDevice device;  // default none; with target.luns each LUN's default (auto: one each)
  // Microseconds the serving thread keeps polling for the next event (a client's request, the
  // target's answer) before it sleeps, while at most a few requests are in flight; 0: never.
  std::uint32_t busy_poll_us = 0;
  // Advertise NBD_FLAG_READ_ONLY and refuse writes, trims and write-zeroes with EPERM even when
  // the LU is writable (qemu-nbd --read-only, nbdkit -r).
  bool read_only = false;
  // NBD_INFO_DESCRIPTION (qemu-nbd --description). Absent: "<vendor> <product> <iqn> LUN <n>".
  std::optional<std::string> description;
  // Clients served at once (handshake or transmission); further ones are told so and closed.
  // 0: no limit. qemu-nbd --shared=N (default 1); nbdkit has no limit.
  std::uint32_t max_clients = 100;
  // Seconds a client may take from connecting to the end of the handshake; 0: no limit.
  // qemu-nbd --handshake-limit (default 10 since CVE-2024-7409).
  std::uint32_t handshake_timeout = 10;
  // READ and WRITE payload in flight per client, in MiB: a client at the budget is read no
  // further until replies go out, and the buffers kept for reuse stay within twice it, so it
  // bounds a client's memory (one that never reads its replies included).
  std::uint32_t client_buffer_mib = 8;
  // READ and WRITE payload buffers of every client of every export together, in MiB (in
  // flight and kept for reuse): a client whose next request would go above it is read no
  // further until buffers come back (a client with nothing else in flight always gets one
  // request). 0: no limit. No qemu-nbd or open-iscsi counterpart: each qemu-nbd serves one
  // export in its own process. 16: 8 LUNs read at once (1 MiB, QD8 each) peaked at 25 MiB
  // VmRSS against 74 MiB without it, at the same throughput (config/README.md).
  std::uint32_t total_buffer_mib = 16;
};

// Path health and failover. Timeouts are named after their open-iscsi / multipath.conf keys.
// The option types are the components' own, declared once: no_path_retry ("fail", "queue",
// or a number of polling intervals) at the block-device boundary, path_grouping_policy and
// failback in mpio's path grouping.
using blockdev::NoPathRetry;
using mpio::Failback;
using mpio::Grouping;
using mpio::HedgedReadPolicy;
using mpio::MarginalPathPolicy;

struct Multipath {
  Grouping path_grouping_policy = Grouping::multibus;
  Failback failback;
  // multipath.conf path_selector without the trailing " 0": round-robin | queue-length |
  // service-time.
  std::string path_selector = "round-robin";
  std::uint32_t rr_min_io = 1;         // commands per path before round-robin moves on
  std::uint32_t polling_interval = 1;  // seconds between login attempts on a failed path
  NoPathRetry no_path_retry;           // while no path is usable
  // Seconds of silence on a connection before a NOP-Out ping (0: never ping);
  // iscsid.conf node.conn[0].timeo.noop_out_interval.
  std::uint32_t noop_out_interval = 5;
  // Seconds to wait for the ping's answer before the connection is declared dead;
  // iscsid.conf node.conn[0].timeo.noop_out_timeout.
  std::uint32_t noop_out_timeout = 5;
  // The largest SCSI command sent, in KiB (multipath.conf max_sectors_kb); larger block requests
  // are split. Absent: one MaxBurstLength as negotiated, within the LUN's MAXIMUM TRANSFER LENGTH.
  std::optional<std::uint32_t> max_sectors_kb;
  // Shaky paths: a path that fails more than san_path_err_threshold times, forgetting one
  // failure per san_path_err_forget_rate polling intervals up, is held out of use until it has
  // stayed good for san_path_err_recovery_time seconds (multipath.conf's san_path_err_*, all
  // three required). Absent: every path is reinstated on its next good login.
  std::optional<MarginalPathPolicy> marginal_path;
  // A read outstanding on one path longer than latency_factor times the path's recent slow
  // latency (at least floor_ms) is sent again on another usable path; the first good answer is
  // the reply. No multipath.conf counterpart (dm-multipath cannot send a bio twice). On by
  // default: a black-holed path otherwise stalls reads until the NOP-Out timeout.
  HedgedReadPolicy hedged_reads;
};

// The running attach's control socket: `iscsi-mpio status` talks to it.
struct Control {
  std::string socket;  // default /run/iscsi-mpio/<export>.control; created with mode 0600
};

// metrics.listen: where Prometheus scrapes GET /metrics (HTTP). Absent: no metrics endpoint.
struct Metrics {
  std::optional<Portal> listen;  // "HOST:PORT"; the port is required
};

// log.level: what the attach logs (spdlog's levels). `iscsi-mpio --log-level` given on the
// command line wins at attach; `iscsi-mpio reload` applies a changed one (and `reload
// --log-level LEVEL` wins over the file for that reload). No open-iscsi counterpart (iscsid -d).
struct Log {
  std::string level = "info";  // trace, debug, info, warn, error, critical, off
};

struct Config {
  Initiator initiator;
  Target target;
  std::vector<Path> paths;  // at least one
  Multipath multipath;
  Control control;
  Nbd nbd;
  Metrics metrics;
  Log log;
};

// Either a complete, validated Config or the list of everything wrong with the file; either way
// the warnings (problems that do not stop loading, e.g. a secret file others can read).
class Result {
 public:
  explicit Result(Config config, std::vector<ConfigError> warnings = {})
      : value_(std::move(config)), warnings_(std::move(warnings)) {}
  explicit Result(std::vector<ConfigError> errors, std::vector<ConfigError> warnings = {})
      : value_(std::move(errors)), warnings_(std::move(warnings)) {}

  bool ok() const { return std::holds_alternative<Config>(value_); }
  explicit operator bool() const { return ok(); }
  // Precondition: ok().
  const Config& config() const { return std::get<Config>(value_); }
  Config& config() { return std::get<Config>(value_); }
  // Empty when ok().
  const std::vector<ConfigError>& errors() const;
  // One ConfigError::to_string() per line; empty when ok().
  std::string error_report() const;
  // To be shown to the admin (e.g. logged at warning level) whether or not ok().
  const std::vector<ConfigError>& warnings() const { return warnings_; }

 private:
  std::variant<Config, std::vector<ConfigError>> value_;
  std::vector<ConfigError> warnings_;
};

// Never throw for any file content; errors are sorted by position. A missing initiator.name is
// filled with generate_initiator_name() (Initiator::name_generated tells).
Result load_file(const std::string& path);
Result load_string(std::string_view yaml, std::string_view name_for_messages);

// "iqn.2026-11.org.iscsi-mpio:<hostname>-<8 hex digits>": the host name lower-cased, characters
// an iSCSI name cannot hold replaced by '-', shortened to keep the name within 223 bytes.
std::string generate_initiator_name();
// Deterministic core of the above, for tests.
std::string generate_initiator_name(std::string_view hostname, std::uint32_t random);

// The LUNs the file selects: target.lun alone, or target.luns' entries in file order; empty
// for `luns: all` (the target says which).
std::vector<std::uint16_t> listed_luns(const Config& config);
// nbd.export for `lun`: its target.luns[].export when it has one, else the template with every
// "{lun}" replaced by the number.
std::string export_name_for(const Config& config, std::uint16_t lun);
// The entry of target.luns for `lun`, if listed.
const LunEntry* lun_entry(const Config& config, std::uint16_t lun);

// The effective configuration as YAML (defaults filled in), CHAP secrets replaced by
// "<redacted>" (a secret read from secret_file prints as that key and path, never as its
// value): the only printable form of a Config. Apart from the secrets, load_string() reads
// it back to the same Config.
std::string redacted(const Config& config);

// Where each key of a document is: its 1-based line by key path as ConfigError::key_path
// writes it ("target.iqn", "paths[1].portal"; a list item's own path, "paths[1]", is the line
// of its first key). Empty when the text does not parse. For messages about a file that
// loaded (iscsi-mpio reload names the line of each key it refuses).
using KeyLines = std::map<std::string, int, std::less<>>;
KeyLines key_lines(std::string_view yaml);

// Every key the schema knows, as key paths ("target.auth.mutual.secret", "paths[].portal"),
// in schema order. Tests use it to keep example.yaml and README.md complete.
std::vector<std::string> known_key_paths();

}  // namespace config
