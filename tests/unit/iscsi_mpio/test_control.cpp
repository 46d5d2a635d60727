// Control socket requests: dispatch, path IDs, the paths view; the client and the check for a
// live listener against a real unix socket.
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <thread>

#include "control.hpp"

using namespace iscsi_mpio;

namespace {

struct FakeAttach {
  std::vector<mpio::PathStatus> paths;
  std::vector<std::pair<std::string, size_t>> calls;
  control::Backend backend;

  FakeAttach() {
    for (const char* source : {"127.0.0.1", "127.0.0.2"}) {
      mpio::PathStatus p;
      p.name = std::string("127.0.0.1:3260 from ") + source;
      p.state = mpio::PathState::active;
      paths.push_back(p);
    }
    mpio::PathStatus third;
    third.name = "[fd00::1]:3261";
    third.state = mpio::PathState::failed;
    third.last_error = "connection \"refused\"";
    paths.push_back(third);
    backend.portals = {{"127.0.0.1", 3260}, {"127.0.0.1", 3260}, {"fd00::1", 3261}};
    backend.snapshot = [this] {
      status::Snapshot s;
      s.export_name = "lun";
      s.paths = paths;
      return s;
    };
    backend.stats_json = [] { return std::string("{\"stats\":1}\n"); };
    backend.fail_path = [this](size_t index, std::string& detail) {
      calls.emplace_back("fail", index);
      detail = "path " + paths[index].name + " failed";
      return std::error_code{};
    };
    backend.reinstate_path = [this](size_t index, std::string& detail) {
      calls.emplace_back("reinstate", index);
      detail = "path " + paths[index].name + " was not failed by the operator (it is active)";
      return std::make_error_code(std::errc::operation_not_permitted);
    };
  }
  std::string ask(std::string_view request) { return control::respond(request, backend); }
};

}  // namespace

TEST_CASE("respond: fail-path and reinstate-path by number", "[iscsi_mpio]") {
  FakeAttach a;
  CHECK(a.ask("fail-path 2") == "ok: path 127.0.0.1:3260 from 127.0.0.2 failed\n");
  CHECK(
      a.ask("reinstate-path 1") ==
      "error: path 127.0.0.1:3260 from 127.0.0.1 was not failed by the operator (it is active)\n");
  CHECK(a.calls == std::vector<std::pair<std::string, size_t>>{{"fail", 1}, {"reinstate", 0}});
}

TEST_CASE("respond: fail-path by portal, unique or ambiguous", "[iscsi_mpio]") {
  FakeAttach a;
  CHECK(a.ask("fail-path [fd00::1]:3261") == "ok: path [fd00::1]:3261 failed\n");
  CHECK(a.calls == std::vector<std::pair<std::string, size_t>>{{"fail", 2}});
  CHECK(a.ask("fail-path 127.0.0.1:3260") ==
        "error: portal 127.0.0.1:3260 is used by paths 1 and 2: give the path number\n");
  CHECK_THAT(a.ask("fail-path 127.0.0.9:3260"),
             Catch::StartsWith("error: no path to portal 127.0.0.9:3260 (paths: 1 "
                               "127.0.0.1:3260 from 127.0.0.1, 2 127.0.0.1:3260 from 127.0.0.2, "
                               "3 [fd00::1]:3261)"));
  CHECK(a.calls.size() == 1);
}

TEST_CASE("respond: bad path IDs are errors that change nothing", "[iscsi_mpio]") {
  FakeAttach a;
  CHECK_THAT(a.ask("fail-path 4"), Catch::StartsWith("error: no path 4 (paths: 1 "));
  CHECK_THAT(a.ask("fail-path 0"), Catch::StartsWith("error: path numbers start at 1"));
  CHECK_THAT(a.ask("fail-path"), Catch::StartsWith("error: fail-path needs a path"));
  CHECK_THAT(a.ask("reinstate-path x"), Catch::StartsWith("error: 'x' is neither a path number"));
  CHECK_THAT(a.ask("fail-path 127.0.0.1"),
             Catch::StartsWith("error: '127.0.0.1' is neither"));  // a portal needs its port
  CHECK_THAT(a.ask("fail-path -1"), Catch::StartsWith("error: "));
  CHECK_THAT(a.ask("fail-path 01"), Catch::StartsWith("error: "));
  CHECK_THAT(a.ask("fail-path 99999999999999999999"), Catch::StartsWith("error: "));
  CHECK(a.calls.empty());
}

TEST_CASE("respond: views and unknown requests", "[iscsi_mpio]") {
  FakeAttach a;
  CHECK(a.ask("stats") == "{\"stats\":1}\n");
  CHECK(a.ask("stats\r") == "{\"stats\":1}\n");
  CHECK_THAT(a.ask("tree"), Catch::StartsWith("lun (-)"));
  CHECK_THAT(a.ask("json"), Catch::StartsWith("{\"export\":\"lun\""));
  const std::string unknown = a.ask("frobnicate\x01");
  CHECK(unknown ==
        "error: unknown request 'frobnicate?' (requests: tree, json, paths [table], stats, "
        "fail-path ID, reinstate-path ID, rescan, reload [LEVEL], detach)\n");
  CHECK_THAT(a.ask("stats now"), Catch::StartsWith("error: request 'stats' takes no argument"));
  // Not served (the attach is starting): said so.
  CHECK_THAT(a.ask("reload"), Catch::StartsWith("error: this attach does not take reloads yet"));
  CHECK_THAT(a.ask(""), Catch::StartsWith("error: unknown request ''"));
}

TEST_CASE("respond: a client's bytes quoted in an error stay one printable line", "[iscsi_mpio]") {
  FakeAttach a;
  // A terminal escape or a line feed in the ID must not reach the operator's terminal.
  CHECK_THAT(a.ask("fail-path \x1b[2J\rx"), Catch::StartsWith("error: '?[2J?x' is neither"));
  CHECK_THAT(a.ask("fail-path 10.0.0.\xff:3260"),
             Catch::StartsWith("error: ") && Catch::Contains("10.0.0.?:3260"));
  CHECK_THAT(a.ask("ju\x7fnk\x1b tree"), Catch::StartsWith("error: request 'ju?nk?' takes no"));
  const std::string long_id = "fail-path " + std::string(200, 'z');
  CHECK_THAT(a.ask(long_id), Catch::StartsWith("error: '" + std::string(64, 'z') + "...' is"));
  const std::string long_request(200, 'q');
  CHECK_THAT(a.ask(long_request),
             Catch::StartsWith("error: unknown request '" + std::string(64, 'q') + "...'"));
  CHECK(a.calls.empty());
}

TEST_CASE("respond: reload with and without a log level", "[iscsi_mpio]") {
  FakeAttach a;
  std::vector<std::string> levels;
  a.backend.reload = [&](const std::string& level) {
    levels.push_back(level);
    return std::string("ok: t.yaml: nothing changed\n");
  };
  CHECK(a.ask("reload") == "ok: t.yaml: nothing changed\n");
  CHECK(a.ask("reload  debug") == "ok: t.yaml: nothing changed\n");
  CHECK(levels == std::vector<std::string>{"", "debug"});
}

TEST_CASE("respond: detach starts the end, once serving", "[iscsi_mpio]") {
  FakeAttach a;
  CHECK(a.ask("detach") == "error: the attach is not serving yet\n");
  int asked = 0;
  a.backend.detach = [&] {
    ++asked;
    return std::string("ok: detaching: /dev/nbd0 disconnected, logging out (pid 42)");
  };
  CHECK(a.ask("detach") == "ok: detaching: /dev/nbd0 disconnected, logging out (pid 42)\n");
  CHECK(asked == 1);
  CHECK_THAT(a.ask("detach now"), Catch::StartsWith("error: request 'detach' takes no argument"));
  CHECK(asked == 1);
}

TEST_CASE("paths JSON: index, portal, state, counters, last error", "[iscsi_mpio]") {
  FakeAttach a;
  a.paths[0].commands = 12;
  a.paths[0].bytes = 4096;
  a.paths[0].group = 1;
  a.paths[0].priority = 50;
  a.paths[0].group_in_use = true;
  const std::string json = a.ask("paths");
  CHECK(json.rfind("[{\"index\":1,", 0) == 0);
  CHECK(json.back() == '\n');
  CHECK(json.find(R"({"index":1,"name":"127.0.0.1:3260 from 127.0.0.1","portal":"127.0.0.1:3260",)"
                  R"("state":"active","group":1,"priority":50,"group_in_use":true,"in_flight":0,)"
                  R"("iops":0,"commands":12,"bytes":4096,"errors":0,"alua_state":"",)"
                  R"("alua_activation":"","marginal":false,"marginal_failures":0,)"
                  R"("marginal_ms_left":0,"hedges_sent":0,"hedges_won":0,"last_error":""})") !=
        std::string::npos);
  CHECK(json.find(
            R"("index":3,"name":"[fd00::1]:3261","portal":"[fd00::1]:3261","state":"failed")") !=
        std::string::npos);
  CHECK(json.find(R"("last_error":"connection \"refused\"")") != std::string::npos);

  const std::string table = a.ask("paths table");
  CHECK(table.find("127.0.0.1:3260 from 127.0.0.2") != std::string::npos);
  CHECK(table.find("last error: connection \"refused\"") != std::string::npos);
}

TEST_CASE("paths with several LUNs: every LUN's map, not the first one's", "[iscsi_mpio]") {
  FakeAttach a;
  a.backend.snapshots = [&a] {
    std::vector<status::Snapshot> maps;
    for (const uint16_t lun : {1, 7}) {
      status::Snapshot s;
      s.lun = lun;
      s.export_name = "lun" + std::to_string(lun);
      s.info.wwid = "36" + std::to_string(lun);
      s.paths = a.paths;
      s.paths[0].commands = lun;  // which map a line comes from
      maps.push_back(s);
    }
    return maps;
  };
  const std::string json = a.ask("paths");
  CHECK(json.rfind(R"([{"lun":1,"export":"lun1","index":1,)", 0) == 0);
  CHECK(json.find(R"({"lun":7,"export":"lun7","index":1,"name":"127.0.0.1:3260 from 127.0.0.1")") !=
        std::string::npos);
  CHECK(json.find(R"("commands":7,)") != std::string::npos);
  CHECK(json.find(R"({"lun":7,"export":"lun7","index":3,"name":"[fd00::1]:3261")") !=
        std::string::npos);

  const std::string table = a.ask("paths table");
  const auto first = table.find("LUN 1  export 'lun1'  WWID 361\n");
  const auto second = table.find("LUN 7  export 'lun7'  WWID 367\n");
  REQUIRE(first == 0);
  REQUIRE(second != std::string::npos);
  // Each map lists every path under its own header.
  for (const auto& [from, to] : {std::pair{first, second}, std::pair{second, table.size()}}) {
    const std::string block = table.substr(from, to - from);
    CHECK(block.find("127.0.0.1:3260 from 127.0.0.2") != std::string::npos);
    CHECK(block.find("[fd00::1]:3261") != std::string::npos);
  }
}

TEST_CASE("check_path_id: numbers from 1 and portals with a port", "[iscsi_mpio]") {
  std::string detail;
  for (const char* good : {"1", "12", "127.0.0.1:3260", "[::1]:3260", "san.example.com:3260"}) {
    INFO(good);
    CHECK_FALSE(control::check_path_id(good, detail));
  }
  CHECK(detail.empty());
  for (const char* bad : {"", "0", "-1", "+1", "01", "1.5", "abc", "127.0.0.1", "[::1]",
                          "127.0.0.1:0", "127.0.0.1:99999", "1234567890"}) {
    INFO(bad);
    detail.clear();
    CHECK(control::check_path_id(bad, detail) == std::errc::invalid_argument);
    CHECK_FALSE(detail.empty());
  }
  control::check_path_id("0", detail);
  CHECK(detail == "path numbers start at 1");
}

TEST_CASE("resolve_path_id: the code tells a malformed ID from a path that is not there",
          "[iscsi_mpio]") {
  const std::vector<std::string> names = {"127.0.0.1:3260 from 127.0.0.1",
                                          "127.0.0.1:3260 from 127.0.0.2", "[fd00::1]:3261"};
  const std::vector<config::Portal> portals = {
      {"127.0.0.1", 3260}, {"127.0.0.1", 3260}, {"fd00::1", 3261}};
  size_t index = 99;
  std::string detail;
  CHECK_FALSE(control::resolve_path_id("2", names, portals, index, detail));
  CHECK(index == 1);
  CHECK_FALSE(control::resolve_path_id("[fd00::1]:3261", names, portals, index, detail));
  CHECK(index == 2);
  CHECK(detail.empty());

  CHECK(control::resolve_path_id("4", names, portals, index, detail) == std::errc::no_such_device);
  CHECK(detail.find("no path 4 (paths: 1 127.0.0.1:3260 from 127.0.0.1") == 0);
  CHECK(control::resolve_path_id("10.0.0.9:3260", names, portals, index, detail) ==
        std::errc::no_such_device);
  CHECK(control::resolve_path_id("abc", names, portals, index, detail) ==
        std::errc::invalid_argument);
  CHECK(control::resolve_path_id("127.0.0.1:3260", names, portals, index, detail) ==
        std::errc::invalid_argument);
  CHECK(detail == "portal 127.0.0.1:3260 is used by paths 1 and 2: give the path number");
  CHECK(index == 2);  // untouched by a failure
}

namespace {

// A unix socket listener in a temporary directory, answering one request with `answer`.
struct Listener {
  std::filesystem::path dir;
  std::string path;
  int fd = -1;
  std::thread server;

  Listener() {
    char tmpl[] = "/tmp/im-control-test.XXXXXX";
    dir = ::mkdtemp(tmpl);
    path = (dir / "s.sock").string();
    fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strcpy(address.sun_path, path.c_str());
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    REQUIRE(::listen(fd, 4) == 0);
  }
  void answer_once(std::string answer) {
    server = std::thread([this, answer] {
      const int client = ::accept(fd, nullptr, nullptr);
      if (client < 0) return;
      char buffer[512];
      std::string request;
      while (request.find('\n') == std::string::npos) {
        const ssize_t n = ::read(client, buffer, sizeof buffer);
        if (n <= 0) break;
        request.append(buffer, static_cast<size_t>(n));
      }
      const std::string reply = "you said " + request + answer;
      const ssize_t written = ::write(client, reply.data(), reply.size());
      (void)written;
      ::close(client);
    });
  }
  void stop() {
    if (server.joinable()) server.join();
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  ~Listener() {
    stop();
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
};

}  // namespace

TEST_CASE("ask sends one line and reads the whole answer", "[iscsi_mpio]") {
  Listener listener;
  listener.answer_once("ok\n");
  std::string answer, detail;
  const auto ec = control::ask(listener.path, "paths", answer, detail);
  INFO(detail);
  CHECK_FALSE(ec);
  CHECK(answer == "you said paths\nok\n");
  listener.stop();

  // Nothing listens any more: the error names the socket.
  const auto gone = control::ask(listener.path, "paths", answer, detail);
  CHECK(gone);
  CHECK_THAT(detail, Catch::StartsWith("no running attach answers on " + listener.path));
  CHECK(control::ask("/nonexistent/dir/s.sock", "paths", answer, detail));
}

TEST_CASE("ask gives up on a listener that never answers", "[iscsi_mpio]") {
  Listener listener;  // listens, never accepts
  std::string answer, detail;
  const auto ec =
      control::ask(listener.path, "paths", answer, detail, std::chrono::milliseconds(200));
  CHECK(ec == std::errc::timed_out);
  CHECK_THAT(detail, Catch::Contains("in time"));
}

TEST_CASE("live_listener names the process behind a socket, not a stale file", "[iscsi_mpio]") {
  Listener listener;
  const auto who = control::live_listener(listener.path);
  REQUIRE(who);
  CHECK_THAT(*who, Catch::StartsWith("pid " + std::to_string(::getpid()) + ": "));
  CHECK_THAT(*who, Catch::Contains("unit_iscsi_mpio"));
  listener.stop();  // the file stays, nobody listens
  CHECK(std::filesystem::exists(listener.path));
  CHECK_FALSE(control::live_listener(listener.path));
  CHECK_FALSE(control::live_listener("/nonexistent/s.sock"));
  CHECK_FALSE(control::live_listener("/etc/hostname"));  // not a socket
}
