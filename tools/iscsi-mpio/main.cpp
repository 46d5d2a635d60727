// iscsi-mpio: log in to an iSCSI target and serve the LUN as an NBD export (attach.hpp), and
// the verbs around it: discover, status, paths, fail-path, reinstate-path, check-config.
// Exit statuses: exit_status.hpp.
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <boost/asio.hpp>
#include <csignal>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <iostream>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <config/config.hpp>
#include <config/names.hpp>

#include "attach.hpp"
#include "check_config.hpp"
#include "discover_verb.hpp"
#include "exit_status.hpp"
#include "logging.hpp"
#include "verbs.hpp"

namespace iscsi_mpio {
namespace {

namespace asio = boost::asio;

using local = asio::local::stream_protocol;

int show_status(const std::string& config_path, bool json) {
  auto loaded = config::load_file(config_path);
  if (!loaded) {
    std::cerr << loaded.error_report();
    return exit_usage;
  }
  const auto& path = loaded.config().control.socket;
  asio::io_context io;
  local::socket socket(io);
  boost::system::error_code ec;
  socket.connect(local::endpoint(path), ec);
  if (ec) {
    std::cerr << "no running attach answers on " << path << ": " << ec.message() << "\n";
    return exit_failure;
  }
  const std::string request = json ? "json\n" : "tree\n";
  asio::write(socket, asio::buffer(request), ec);
  std::string answer;
  asio::read(socket, asio::dynamic_buffer(answer, 1 << 20), ec);
  if (answer.empty()) {
    std::cerr << "the attach on " << path << " gave no answer: " << ec.message() << "\n";
    return exit_failure;
  }
  std::cout << answer;
  return answer.rfind("error:", 0) == 0 ? exit_failure : exit_ok;
}

// The command line's portal and source, checked as the configuration checks them.
int discover(const std::string& portal_text, discovery::VerbOptions options) {
  auto parsed = config::parse_portal(portal_text);
  if (auto* problem = std::get_if<std::string>(&parsed)) {
    std::cerr << "portal '" << portal_text << "': " << *problem << "\n";
    return exit_usage;
  }
  if (options.source && !config::ip_literal_family(*options.source)) {
    std::cerr << "--source '" << *options.source << "' is not an IPv4 or IPv6 address\n";
    return exit_usage;
  }
  options.portal = std::get<config::Portal>(parsed);
  return discovery::run_verb(options);
}

}  // namespace
}  // namespace iscsi_mpio

namespace {

// Payload buffers (NBD requests of up to 32 MiB, kept per connection within
// nbd.client_buffer_mib) must go back to the system once freed: after a client leaves, or when
// its connection has been idle (nbd::Server releases them). glibc's default raises its mmap
// threshold to the size of each mmapped block freed, so after the first 1 MiB request is done,
// 1 MiB blocks come from the heap and stay in the process when freed: an attach that served one
// QD128 x 1 MiB client kept about 8.5 MiB it no longer used (issue 25). A fixed threshold (its
// default start value) turns that adjustment off: blocks of 128 KiB and more are mmapped and
// unmapped on free. Buffers are reused request to request, so this costs a map per buffer grown,
// not per request.
void fix_allocator_policy() {
#if defined(__GLIBC__)
  constexpr int kMmapThreshold = 128 * 1024;
  ::mallopt(M_MMAP_THRESHOLD, kMmapThreshold);
#endif
}

}  // namespace

int main(int argc, char** argv) {
  fix_allocator_policy();
  // A closed stderr (a log pipe whose reader went away) must not kill a daemon holding a LUN;
  // sockets already send with MSG_NOSIGNAL.
  std::signal(SIGPIPE, SIG_IGN);
  using namespace iscsi_mpio;
  CLI::App app{
      "iscsi-mpio: userspace iSCSI initiator with multipath I/O, serving the LUN over NBD"};
  app.require_subcommand(1);
  std::string log_level = "info";
  auto* log_level_option =
      app.add_option("--log-level", log_level,
                     "trace, debug, info, warn, error (attach: wins over the file's log.level)")
          ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  std::string log_format = "text";
  app.add_option("--log-format", log_format, "text, or json: one JSON object per line")
      ->check(CLI::IsMember({"text", "json"}));

  std::string config_path;
  auto* attach_cmd = app.add_subcommand("attach", "log in and serve the LUN as an NBD export");
  attach_cmd->add_option("config", config_path, "YAML configuration file")->required();

  std::string portal;
  discovery::VerbOptions discover_options;
  auto* discover_cmd =
      app.add_subcommand("discover", "list the targets a portal reports (SendTargets=All)");
  discover_cmd->add_option("portal", portal, "HOST[:PORT], [IPv6][:PORT]")->required();
  discover_cmd->add_option("--source", discover_options.source, "local address to connect from");
  discover_cmd->add_option("--initiator-name", discover_options.initiator_name,
                           "iSCSI initiator name to present");
  discover_cmd->add_option("--config", discover_options.config_path,
                           "take initiator.name, target.discovery_auth and (for --luns) "
                           "target.auth from this configuration file");
  discover_cmd->add_option("--chap-username", discover_options.chap_username,
                           "discovery CHAP name (iscsid.conf discovery.sendtargets.auth.username)");
  discover_cmd->add_option("--chap-secret-file", discover_options.chap_secret_file,
                           "absolute path of a file holding the discovery CHAP secret");
  discover_cmd->add_flag("--luns", discover_options.luns,
                         "log in to each target and list its LUNs with size, vendor, product "
                         "and WWID (iscsi-ls -s)");

  bool status_json = false;
  auto* status_cmd =
      app.add_subcommand("status", "show the paths of a running attach, like multipath -ll");
  status_cmd->add_option("config", config_path, "the attach's YAML configuration file")->required();
  status_cmd->add_flag("--json", status_json, "machine-readable output");

  check_config::Options check_options;
  auto* check_cmd = app.add_subcommand(
      "check-config", "validate a configuration and probe each of its paths on its own");
  check_cmd->add_option("config", config_path, "YAML configuration file")->required();
  check_cmd->add_flag("--strict", check_options.strict, "warnings fail too (exit 1)");
  check_cmd->add_flag("--offline", check_options.offline,
                      "no traffic: validate, then check interfaces and MTUs only");

  const verbs::ControlVerbs control_verbs(app);  // paths, fail-path, reinstate-path

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? exit_ok : exit_usage;
  }
  // Logs go to stderr; stdout carries only results (the NBD URI, discovered targets).
  logging::setup(spdlog::level::from_str(log_level), *logging::parse_format(log_format));

  if (*attach_cmd) return attach::run(config_path, log_level_option->count() > 0);
  if (*discover_cmd) return discover(portal, discover_options);
  if (*status_cmd) return show_status(config_path, status_json);
  if (const auto code = control_verbs.run()) return *code;
  if (*check_cmd) return check_config::run(config_path, check_options, std::cout, std::cerr);
  return exit_usage;
}
