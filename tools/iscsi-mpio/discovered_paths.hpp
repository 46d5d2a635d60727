// Path entries that name a discovery portal (`paths: [{discover: HOST[:PORT], source: ...}]`)
// become one path per portal the target reports for target.iqn and the entry's source reaches,
// as `iscsiadm -m discovery -t st -p HOST -I IFACE` followed by a login to every node record.
//
// The choice is pure (choose_portals, expand_paths: tested without a network); the SendTargets
// exchange and the routing-table questions are the driver: discover_paths(), which attach calls
// once before the LUN devices are opened, and rediscover(), at every rescan.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <config/config.hpp>
#include <iscsi/discovery.hpp>
#include <iscsi_io/path_session.hpp>

namespace boost::asio {
class io_context;
}

namespace iscsi_mpio::discovery {

// Why `portal` cannot be used from the entry's source or interface; nullopt when it can.
using ReachabilityCheck = std::function<std::optional<std::string>(const config::Portal& portal)>;

// What one discovery entry's SendTargets answer leaves to log in to.
struct PortalChoice {
  std::vector<config::Portal> usable;  // in the answer's order, each host:port once
  std::vector<std::string> skipped;    // "198.18.2.1:3260 (leaves through ini2, ...)"
  // Set when `usable` is empty: names the target, the source and what the answer held.
  std::string problem;
};

// "source 198.18.1.2", "interface eth2", "source 198.18.1.2 on interface eth2", or "the
// default route": how an entry's connections leave this host, for messages.
std::string entry_origin(const config::Path& entry);

// The portals of `target_iqn` in a SendTargets answer (RFC 7143 Appendix C) that `reachable`
// accepts. iSCSI names compare without regard to case (RFC 7143 §4.2.7.1: names are
// normalized to lower case). A target record without TargetAddress is reached at the discovery
// portal itself. A portal whose address family differs from the source's, or an unspecified
// address (0.0.0.0, ::), is skipped without asking `reachable`.
PortalChoice choose_portals(const std::vector<iscsi::DiscoveredTarget>& answer,
                            std::string_view target_iqn, const config::Path& entry,
                            const ReachabilityCheck& reachable);

// The paths attach logs in on, in file order: each `discover` entry replaced by one path per
// usable portal of its choice (choices[i] belongs to entries[i]; ignored for portal entries),
// with the entry's source, interface and priority. A discovered portal that another path
// already reaches from the same source and interface is used once. `origins` runs parallel to
// the result: empty for a path written in the file, "discovered via HOST:PORT" otherwise.
std::vector<config::Path> expand_paths(const std::vector<config::Path>& entries,
                                       const std::vector<PortalChoice>& choices,
                                       std::vector<std::string>& origins);

// The discovery session of a `discover` entry: its portal, source and interface, the file's
// initiator name, target.login_timeout, digests, and target.discovery_auth for CHAP; no
// TargetName (RFC 7143 §4.3: SessionType=Discovery).
iscsi_io::PathConfig discovery_path_config(const config::Config& cfg, const config::Path& entry);

// What attach keeps of the discovery for logs and `status`.
struct Outcome {
  // Path name (iscsi_io::describe) -> "discovered via HOST:PORT"; paths from the file are absent.
  std::vector<std::pair<std::string, std::string>> origin_of_path;
  // "via 198.18.1.1:3260 from source 198.18.1.2: skipped 198.18.2.1:3260 (...)"
  std::vector<std::string> skipped;
  // Entries that gave no path: their discovery failed or found no usable portal.
  std::vector<std::string> problems;
};

// The driver: SendTargets through every `discover` entry of `cfg` (target.discovery_auth,
// target.login_timeout), all at once, then cfg.paths replaced by expand_paths(). Blocks (its
// own io_context) for at most about target.login_timeout. An entry whose discovery fails (a
// refused login names discovery authentication) or leaves no usable portal is a problem that
// names the entry, the target, the source and the reason; as with a portal that does not
// answer at attach, the other paths go on. False (with the problems in `detail`) only when no
// path is left at all. A file without `discover` entries is left as it is.
bool discover_paths(config::Config& cfg, Outcome& outcome, std::string& detail);

// The same SendTargets questions again, on a running attach's io_context (every rescan, as
// `iscsiadm -m discovery` run again): `entries` are the file's path entries, `done` gets the
// paths they expand to now and the outcome, on the io_context, within about
// target.login_timeout + 10 s. Nothing is logged and nothing blocks: what changed is the
// caller's to say.
using RediscoverHandler = std::function<void(std::vector<config::Path> paths, Outcome outcome)>;
void rediscover(boost::asio::io_context& io, const config::Config& cfg,
                std::vector<config::Path> entries, RediscoverHandler done);

// Whether any entry names a discovery portal.
bool has_discover_entry(const std::vector<config::Path>& entries);

}  // namespace iscsi_mpio::discovery
