#include "control.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <variant>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include "errors.hpp"
#include "json_text.hpp"

namespace iscsi_mpio::control {
namespace {

constexpr std::string_view known_requests =
    "tree, json, paths [table], stats, fail-path ID, reinstate-path ID, rescan, reload [LEVEL], "
    "detach";

// A client's bytes as an answer quotes them: at most 64, control characters and bytes above
// ASCII as '?', so that an answer stays one printable line on the operator's terminal.
std::string shown(std::string_view text) {
  std::string out(text.substr(0, 64));
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
  if (text.size() > 64) out += "...";
  return out;
}

// A path number: plain decimal digits, no sign, no leading zero.
std::optional<size_t> path_number(std::string_view id) {
  if (id.empty() || id.size() > 9 || id[0] == '0' ||
      !std::all_of(id.begin(), id.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  size_t n = 0;
  std::from_chars(id.data(), id.data() + id.size(), n);
  return n;
}

// A portal with its port written out: "HOST:PORT" or "[V6]:PORT".
std::optional<config::Portal> portal_with_port(std::string_view id) {
  const auto colon = id.rfind(':');
  const auto bracket = id.rfind(']');
  if (colon == std::string_view::npos || (bracket != std::string_view::npos && colon < bracket))
    return std::nullopt;
  auto parsed = config::parse_portal(id);
  if (const auto* portal = std::get_if<config::Portal>(&parsed)) return *portal;
  return std::nullopt;
}

// "1 127.0.0.1:3260 from 10.0.0.1, 2 ...": what the operator can choose from.
std::string path_list(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i)
    out += (i == 0 ? "" : ", ") + std::to_string(i + 1) + " " + names[i];
  return out;
}

std::string path_command(std::string_view verb, std::string_view id, const Backend& backend) {
  if (id.empty())
    return "error: " + std::string(verb) +
           " needs a path: its number as `paths` shows it, or its portal HOST:PORT\n";
  std::vector<std::string> names;
  for (const auto& p : backend.snapshot().paths) names.push_back(p.name);
  size_t index = 0;
  std::string detail;
  if (const auto ec = resolve_path_id(id, names, backend.portals, index, detail))
    return "error: " + error_text(ec, detail) + "\n";
  const auto ec = verb == "fail-path" ? backend.fail_path(index, detail)
                                      : backend.reinstate_path(index, detail);
  if (ec) return "error: " + error_text(ec, detail) + "\n";
  return "ok: " + (detail.empty() ? std::string("done") : detail) + "\n";
}

// Returns the listener's pid from SO_PEERCRED, read on a connected unix socket: the
// credentials of the process that called listen() (unix(7)).
std::optional<pid_t> peer_pid(int fd) {
  struct ucred cred {};
  socklen_t size = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &size) != 0 || cred.pid <= 0)
    return std::nullopt;
  return cred.pid;
}

std::string describe_process(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!cmdline.empty() && cmdline.back() == '\0') cmdline.pop_back();
  std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
  if (cmdline.size() > 200) cmdline = cmdline.substr(0, 200) + "...";
  return "pid " + std::to_string(pid) + (cmdline.empty() ? "" : ": " + cmdline);
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

bool fill_address(const std::string& path, sockaddr_un& address) {
  address = {};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof address.sun_path) return false;
  std::memcpy(address.sun_path, path.data(), path.size());
  return true;
}

// Waits until `fd` is ready for `events` or the deadline passes; false on timeout.
bool wait_for(int fd, short events, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return true;  // let the next call report the error
  }
}

// One LUN's paths as JSON objects; with `map`, each names its LUN and export first.
void append_paths_json(boost::json::array& out, const std::vector<mpio::PathStatus>& paths,
                       const std::vector<config::Portal>& portals, const status::Snapshot* map) {
  using json_text::utf8;
  for (size_t i = 0; i < paths.size(); ++i) {
    const auto& p = paths[i];
    boost::json::object entry;
    if (map) {
      entry["lun"] = map->lun;
      entry["export"] = utf8(map->export_name);
    }
    entry["index"] = i + 1;
    entry["name"] = utf8(p.name);
    entry["portal"] = i < portals.size() ? config::to_string(portals[i]) : "";
    entry["state"] = mpio::path_state_name(p.state);
    entry["group"] = p.group;
    entry["priority"] = p.priority;
    entry["group_in_use"] = p.group_in_use;
    entry["in_flight"] = p.in_flight;
    entry["iops"] = p.iops;
    entry["commands"] = p.commands;
    entry["bytes"] = p.bytes;
    entry["errors"] = p.errors;
    entry["alua_state"] = utf8(p.alua_state);
    entry["alua_activation"] = utf8(p.alua_activation);
    entry["marginal"] = p.marginal;
    entry["marginal_failures"] = p.marginal_failures;
    entry["marginal_ms_left"] = p.marginal_time_left.count();
    entry["hedges_sent"] = p.hedges_sent;
    entry["hedges_won"] = p.hedges_won;
    entry["last_error"] = utf8(p.last_error);
    out.push_back(std::move(entry));
  }
}

}  // namespace

std::string render_paths_json(const std::vector<mpio::PathStatus>& paths,
                              const std::vector<config::Portal>& portals) {
  boost::json::array out;
  append_paths_json(out, paths, portals, nullptr);
  return json_text::line(out);
}

std::string render_paths_json(const std::vector<status::Snapshot>& maps,
                              const std::vector<config::Portal>& portals) {
  boost::json::array out;
  for (const auto& map : maps) append_paths_json(out, map.paths, portals, &map);
  return json_text::line(out);
}

std::string render_paths_table(const std::vector<status::Snapshot>& maps) {
  std::string out;
  for (const auto& map : maps) {
    out += (out.empty() ? "" : "\n") + std::string("LUN ") + std::to_string(map.lun) +
           "  export '" + map.export_name + "'  WWID " +
           (map.info.wwid.empty() ? "-" : map.info.wwid) + "\n";
    out += render_paths_table(map.paths);
  }
  return out;
}

std::string render_paths_table(const std::vector<mpio::PathStatus>& paths) {
  std::string out =
      "  #  state       group  prio  in-flight   iops    commands      bytes  errors  path\n";
  for (size_t i = 0; i < paths.size(); ++i) {
    const auto& p = paths[i];
    char line[512];
    std::snprintf(line, sizeof line, "%3zu  %-10s %6u %5u %10u %6llu %11llu %10s %7llu  %s\n",
                  i + 1, std::string(mpio::path_state_name(p.state)).c_str(), p.group, p.priority,
                  p.in_flight, static_cast<unsigned long long>(p.iops),
                  static_cast<unsigned long long>(p.commands), status::size_text(p.bytes).c_str(),
                  static_cast<unsigned long long>(p.errors), p.name.c_str());
    out += line;
    if (p.marginal) out += "    " + status::marginal_text(p) + "\n";
    if (!p.last_error.empty() && p.state != mpio::PathState::active)
      out += "     last error: " + p.last_error + "\n";
    if (!p.alua_activation.empty()) out += "     " + p.alua_activation + "\n";
  }
  return out;
}

std::error_code check_path_id(std::string_view id, std::string& detail) {
  if (path_number(id) || portal_with_port(id)) return {};
  detail = id == "0"
               ? "path numbers start at 1"
               : "'" + shown(id) + "' is neither a path number (1, 2, ...) nor a portal HOST:PORT";
  return std::make_error_code(std::errc::invalid_argument);
}

std::error_code resolve_path_id(std::string_view id, const std::vector<std::string>& names,
                                const std::vector<config::Portal>& portals, size_t& index,
                                std::string& detail) {
  const size_t count = names.size();
  if (const auto n = path_number(id)) {
    if (*n > count) {
      detail = "no path " + shown(id) + " (paths: " + path_list(names) + ")";
      return std::make_error_code(std::errc::no_such_device);
    }
    index = *n - 1;
    return {};
  }
  const auto portal = portal_with_port(id);
  if (!portal) return check_path_id(id, detail);
  std::vector<size_t> matches;
  for (size_t i = 0; i < std::min(count, portals.size()); ++i)
    if (portals[i] == *portal) matches.push_back(i);
  if (matches.empty()) {
    detail = "no path to portal " + shown(id) + " (paths: " + path_list(names) + ")";
    return std::make_error_code(std::errc::no_such_device);
  }
  if (matches.size() > 1) {
    std::string which;
    for (size_t i = 0; i < matches.size(); ++i)
      which += (i == 0                    ? ""
                : i + 1 == matches.size() ? " and "
                                          : ", ") +
               std::to_string(matches[i] + 1);
    detail = "portal " + shown(id) + " is used by paths " + which + ": give the path number";
    return std::make_error_code(std::errc::invalid_argument);
  }
  index = matches.front();
  return {};
}

std::string respond(std::string_view request, const Backend& backend) {
  // Tolerate a CR from a client that ends lines with CRLF, and surrounding blanks.
  while (!request.empty() && (request.back() == '\r' || request.back() == ' '))
    request.remove_suffix(1);
  while (!request.empty() && request.front() == ' ') request.remove_prefix(1);
  const auto space = request.find(' ');
  const std::string_view verb = request.substr(0, space);
  std::string_view argument = space == std::string_view::npos ? "" : request.substr(space + 1);
  while (!argument.empty() && argument.front() == ' ') argument.remove_prefix(1);

  if (verb == "fail-path" || verb == "reinstate-path") return path_command(verb, argument, backend);
  if (verb == "rescan" && argument.empty())
    return backend.rescan ? backend.rescan() + "\n"
                          : "error: rescan needs target.luns: this attach serves one LUN\n";
  if (verb == "reload")
    return backend.reload ? backend.reload(std::string(argument))
                          : "error: this attach does not take reloads yet (it is starting)\n";
  // Several LUNs: every map, each the same paths in the same order (path numbers are shared).
  if (verb == "paths" && argument == "table")
    return backend.snapshots ? render_paths_table(backend.snapshots())
                             : render_paths_table(backend.snapshot().paths);
  if (verb == "detach" && argument.empty())
    return backend.detach ? backend.detach() + "\n" : "error: the attach is not serving yet\n";
  if (!argument.empty())
    return "error: request '" + shown(verb) +
           "' takes no argument (requests: " + std::string(known_requests) + ")\n";
  if (verb == "tree")
    return backend.snapshots ? status::render_trees(backend.snapshots())
                             : status::render_tree(backend.snapshot());
  if (verb == "json")
    return backend.snapshots ? status::render_json(backend.snapshots())
                             : status::render_json(backend.snapshot());
  if (verb == "paths")
    return backend.snapshots ? render_paths_json(backend.snapshots(), backend.portals)
                             : render_paths_json(backend.snapshot().paths, backend.portals);
  if (verb == "stats") return backend.stats_json();
  return "error: unknown request '" + shown(request) +
         "' (requests: " + std::string(known_requests) + ")\n";
}

std::error_code ask(const std::string& path, std::string_view request, std::string& answer,
                    std::string& detail, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  answer.clear();
  sockaddr_un address{};
  if (!fill_address(path, address)) {
    detail = "control socket path '" + path + "' is empty or too long";
    return std::make_error_code(std::errc::filename_too_long);
  }
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (fd.get() < 0) {
    detail = std::string("socket: ") + std::strerror(errno);
    return {errno, std::system_category()};
  }
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    const int error = errno;
    // EAGAIN: the listener's backlog is full; it is there but busy.
    detail = "no running attach answers on " + path + ": " + std::strerror(error);
    return {error, std::system_category()};
  }
  std::string line(request);
  line += '\n';
  size_t sent = 0;
  while (sent < line.size()) {
    if (!wait_for(fd.get(), POLLOUT, deadline)) {
      detail = "the attach on " + path + " did not take the request in time";
      return std::make_error_code(std::errc::timed_out);
    }
    const ssize_t n = ::send(fd.get(), line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n < 0) {
      detail = "sending to " + path + ": " + std::strerror(errno);
      return {errno, std::system_category()};
    }
    sent += static_cast<size_t>(n);
  }
  char buffer[16384];
  for (;;) {
    if (!wait_for(fd.get(), POLLIN, deadline)) {
      detail = "the attach on " + path + " gave no complete answer in time";
      return std::make_error_code(std::errc::timed_out);
    }
    const ssize_t n = ::recv(fd.get(), buffer, sizeof buffer, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n < 0) {
      detail = "reading from " + path + ": " + std::strerror(errno);
      return {errno, std::system_category()};
    }
    if (n == 0) break;
    answer.append(buffer, static_cast<size_t>(n));
    if (answer.size() > (16u << 20)) {
      detail = "the answer from " + path + " is larger than 16 MiB";
      return std::make_error_code(std::errc::message_size);
    }
  }
  if (answer.empty()) {
    detail = "the attach on " + path + " closed the connection without an answer";
    return std::make_error_code(std::errc::connection_aborted);
  }
  return {};
}

std::optional<std::string> live_listener(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return std::nullopt;
  sockaddr_un address{};
  if (!fill_address(path, address)) return std::nullopt;
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (fd.get() < 0) return std::nullopt;
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    // A full backlog still means a live listener; refused or gone means a stale file.
    if (errno != EAGAIN) return std::nullopt;
    return std::string("a process whose connection queue is full");
  }
  const auto pid = peer_pid(fd.get());
  return pid ? describe_process(*pid) : std::string("an unknown process");
}

}  // namespace iscsi_mpio::control
