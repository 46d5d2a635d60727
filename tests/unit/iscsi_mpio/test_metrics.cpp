// Prometheus exposition, the latency histogram, failover counting and the HTTP answers.
#include <catch2/catch.hpp>

#include <numeric>
#include <regex>
#include <sstream>

#include <boost/json/parse.hpp>

#include "metrics.hpp"

using namespace iscsi_mpio;

namespace {

using namespace std::chrono_literals;

mpio::PathStatus path(std::string name, mpio::PathState state, uint64_t commands) {
  mpio::PathStatus p;
  p.name = std::move(name);
  p.state = state;
  p.commands = commands;
  p.bytes = commands * 4096;
  p.errors = 1;
  p.iops = 7;
  p.in_flight = 3;
  return p;
}

metrics::Sample sample() {
  metrics::Sample s;
  s.export_name = "lun";
  s.target = "iqn.2026-11.org.example:t";
  s.lun = 1;
  s.wwid = "naa.60000000000000000000000000000001";
  s.paths = {path("127.0.0.1:3260 from 127.0.0.1", mpio::PathState::active, 10),
             path("127.0.0.1:3260 from 127.0.0.2", mpio::PathState::failed, 5)};
  s.requests_in_flight = 2;
  s.nbd = {.available = true,
           .requests = 100,
           .errors = 4,
           .connections = 1,
           .buffer_bytes = 1048576,
           .refused_max_clients = 3,
           .handshake_timeouts = 2,
           .fd_reserve_pauses = 1,
           .buffer_waits = 7};
  return s;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

bool has_line(const std::string& text, const std::string& line) {
  const auto lines = lines_of(text);
  return std::find(lines.begin(), lines.end(), line) != lines.end();
}

}  // namespace

TEST_CASE("Histogram puts each latency in the first bucket that holds it", "[iscsi_mpio]") {
  metrics::Histogram h;
  h.observe(0.00005);  // below the first bound
  h.observe(0.0001);   // exactly a bound: le is "less or equal"
  h.observe(0.003);
  h.observe(60);  // above the last bound: only +Inf (count)
  CHECK(h.count == 4);
  CHECK(h.bucket[0] == 2);
  CHECK(h.bucket[5] == 1);  // 0.005
  CHECK(std::accumulate(h.bucket.begin(), h.bucket.end(), uint64_t{0}) == 3);
  CHECK(h.sum_seconds == Approx(60.00315));
}

TEST_CASE("Collector counts each change into failed once", "[iscsi_mpio]") {
  metrics::Collector c;
  c.path_state(0, mpio::PathState::failed, false);  // failed at start: not a failover
  CHECK(c.failovers(0) == 0);
  c.path_state(0, mpio::PathState::active);
  c.path_state(0, mpio::PathState::failed);
  c.path_state(0, mpio::PathState::failed);  // "writes re-issued" on the same failure
  CHECK(c.failovers(0) == 1);
  c.path_state(0, mpio::PathState::connecting);
  c.path_state(0, mpio::PathState::failed);
  CHECK(c.failovers(0) == 2);
  CHECK(c.failovers(1) == 0);
  CHECK(c.failovers(99) == 0);
  c.command_done(1, 2ms);
  CHECK(c.latency(1).count == 1);
  CHECK(c.latency(0).count == 0);
}

TEST_CASE("exposition: every line a comment or a sample, families whole", "[iscsi_mpio]") {
  metrics::Collector c;
  c.command_done(0, 300us);
  c.command_done(0, 40ms);
  c.path_state(1, mpio::PathState::failed);
  const std::string text = c.exposition(sample());
  INFO(text);
  REQUIRE_FALSE(text.empty());
  CHECK(text.back() == '\n');
  const std::regex comment(R"(# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+)");
  const std::regex sample_line(
      R"([a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? [-+0-9.eE]+)");
  std::vector<std::string> families_seen;
  std::string current;
  for (const auto& line : lines_of(text)) {
    INFO(line);
    if (line.rfind("# ", 0) == 0) {
      CHECK(std::regex_match(line, comment));
      if (line.rfind("# TYPE ", 0) == 0) {
        current = line.substr(7, line.find(' ', 7) - 7);
        CHECK(std::find(families_seen.begin(), families_seen.end(), current) ==
              families_seen.end());
        families_seen.push_back(current);
      }
      continue;
    }
    CHECK(std::regex_match(line, sample_line));
    CHECK(line.rfind(current, 0) == 0);  // a sample of the family just announced
  }
  // The labels of path 1 and 2, then the expected lines.
  const std::string p1 = R"(index="1",path="127.0.0.1:3260 from 127.0.0.1")";
  const std::string p2 = R"(index="2",path="127.0.0.1:3260 from 127.0.0.2")";
  const std::string latency = "iscsi_mpio_path_command_latency_seconds";
  for (const std::string& line : std::vector<std::string>{
           "# TYPE iscsi_mpio_path_commands_total counter",
           "iscsi_mpio_path_commands_total{" + p1 + "} 10",
           "iscsi_mpio_path_bytes_total{" + p2 + "} 20480",
           "iscsi_mpio_path_state{" + p1 + R"(,state="active"} 1)",
           "iscsi_mpio_path_state{" + p1 + R"(,state="failed"} 0)",
           "iscsi_mpio_path_state{" + p2 + R"(,state="failed"} 1)",
           "iscsi_mpio_path_failovers_total{" + p2 + "} 1",
           "iscsi_mpio_path_in_flight{" + p1 + "} 3",
           "iscsi_mpio_path_iops{" + p1 + "} 7",
           "iscsi_mpio_path_errors_total{" + p1 + "} 1",
           "# TYPE " + latency + " histogram",
           latency + "_bucket{" + p1 + R"(,le="0.0001"} 0)",
           latency + "_bucket{" + p1 + R"(,le="0.0005"} 1)",
           latency + "_bucket{" + p1 + R"(,le="0.05"} 2)",
           latency + "_bucket{" + p1 + R"(,le="+Inf"} 2)",
           latency + "_count{" + p1 + "} 2",
           latency + "_sum{" + p1 + "} 0.0403",
           latency + "_count{" + p2 + "} 0",
           "iscsi_mpio_requests_in_flight 2",
           "iscsi_mpio_nbd_requests_total 100",
           "iscsi_mpio_nbd_errors_total 4",
           "iscsi_mpio_nbd_connections 1",
           "iscsi_mpio_nbd_buffer_bytes 1048576",
           "# TYPE iscsi_mpio_nbd_refused_total counter",
           R"(iscsi_mpio_nbd_refused_total{reason="max_clients"} 3)",
           R"(iscsi_mpio_nbd_refused_total{reason="handshake_timeout"} 2)",
           "iscsi_mpio_nbd_accept_pauses_total 1",
           "iscsi_mpio_nbd_buffer_waits_total 7",
           R"(iscsi_mpio_lun_info{export="lun",target="iqn.2026-11.org.example:t",lun="1",)"
           R"(wwid="naa.60000000000000000000000000000001"} 1)",
       }) {
    INFO(line);
    CHECK(has_line(text, line));
  }
}

TEST_CASE("exposition escapes label values and leaves out NBD before it runs", "[iscsi_mpio]") {
  auto s = sample();
  s.paths.resize(1);
  s.paths[0].name = "a\"b\\c\nd";
  s.nbd = {};
  const std::string text = metrics::Collector{}.exposition(s);
  CHECK(text.find(R"(path="a\"b\\c\nd")") != std::string::npos);
  CHECK(text.find("iscsi_mpio_nbd_") == std::string::npos);
}

TEST_CASE("stats_json has per-path counters, failovers, latency and NBD", "[iscsi_mpio]") {
  metrics::Collector c;
  c.command_done(0, 1ms);
  c.path_state(1, mpio::PathState::failed);
  const std::string json = c.stats_json(sample());
  CHECK(json.back() == '\n');
  CHECK(json.find(R"({"index":1,"name":"127.0.0.1:3260 from 127.0.0.1","state":"active",)"
                  R"("commands":10,"bytes":40960,"errors":1,"iops":7,"in_flight":3,"failovers":0,)"
                  R"("latency_seconds":{"count":1,"sum":)") != std::string::npos);
  // Boost.JSON writes doubles in exponent form (1E-3); what a reader gets is the number.
  const auto parsed = boost::json::parse(json);
  CHECK(parsed.at("paths").at(0).at("latency_seconds").at("sum").as_double() == 0.001);
  CHECK(json.find(R"("failovers":1)") != std::string::npos);
  CHECK(json.find(R"("nbd":{"requests":100,"errors":4,"connections":1,"buffer_bytes":1048576})") !=
        std::string::npos);
  auto s = sample();
  s.nbd = {};
  CHECK(c.stats_json(s).find(R"("nbd":null)") != std::string::npos);
}

TEST_CASE("answer_http waits for the whole head, and cuts it off at 8 KiB", "[iscsi_mpio]") {
  int calls = 0;
  const auto body = [&] {
    ++calls;
    return std::string("m 1\n");
  };
  CHECK_FALSE(metrics::answer_http("", body));
  CHECK_FALSE(metrics::answer_http("GET /metrics HTTP/1.0\r\n", body));
  CHECK_FALSE(metrics::answer_http("GET /metrics HTTP/1.0\r\nHost: x\r\n\r", body));
  const auto answer = metrics::answer_http("GET /metrics HTTP/1.0\r\nHost: x\r\n\r\nbody", body);
  REQUIRE(answer);
  CHECK(answer->rfind("HTTP/1.0 200 OK\r\n", 0) == 0);
  CHECK(calls == 1);

  std::string head = "GET /metrics HTTP/1.0\r\nX-Filler: ";
  head.append(metrics::max_request_head - head.size() - 4, 'x');
  CHECK_FALSE(metrics::answer_http(head, body));  // still within the limit
  head += "\r\n\r\n";
  CHECK(metrics::answer_http(head, body).value_or("").rfind("HTTP/1.0 200 OK", 0) == 0);
  head.insert(30, "xxxx");
  CHECK(metrics::answer_http(head, body).value_or("").rfind("HTTP/1.0 431", 0) == 0);
  CHECK(metrics::answer_http(std::string(20000, 'x'), body).value_or("").rfind("HTTP/1.0 4", 0) ==
        0);
  const std::string filler = "GET /metrics HTTP/1.0\r\nX-Filler: " + std::string(20000, 'x');
  CHECK(metrics::answer_http(filler, body).value_or("").rfind("HTTP/1.0 431", 0) == 0);
}

TEST_CASE("answer_http: 200 for GET /metrics, 404, 405, 400", "[iscsi_mpio]") {
  int calls = 0;
  const auto body = [&] {
    ++calls;
    return std::string("m 1\n");
  };
  const auto answer = [&](std::string_view request) {
    const auto text = metrics::answer_http(request, body);
    REQUIRE(text);
    return *text;
  };
  const std::string ok = answer("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n");
  CHECK(ok.rfind("HTTP/1.0 200 OK\r\n", 0) == 0);
  CHECK(ok.find("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n") != std::string::npos);
  CHECK(ok.find("Content-Length: 4\r\n") != std::string::npos);
  CHECK(ok.find("Connection: close\r\n") != std::string::npos);
  CHECK(ok.size() >= 4);
  CHECK(ok.substr(ok.size() - 8) == "\r\n\r\nm 1\n");
  CHECK(calls == 1);

  CHECK(answer("GET /metrics?x=1 HTTP/1.0\r\n\r\n").rfind("HTTP/1.0 200 OK", 0) == 0);

  const std::string head = answer("HEAD /metrics HTTP/1.0\r\n\r\n");
  CHECK(head.rfind("HTTP/1.0 200 OK", 0) == 0);
  CHECK(head.find("Content-Length: 4\r\n") != std::string::npos);
  CHECK(head.substr(head.size() - 4) == "\r\n\r\n");

  calls = 0;
  CHECK(answer("GET / HTTP/1.0\r\n\r\n").rfind("HTTP/1.0 404", 0) == 0);
  CHECK(answer("GET /metricsx HTTP/1.0\r\n\r\n").rfind("HTTP/1.0 404", 0) == 0);
  const std::string post = answer("POST /metrics HTTP/1.0\r\n\r\n");
  CHECK(post.rfind("HTTP/1.0 405", 0) == 0);
  CHECK(post.find("Allow: GET, HEAD\r\n") != std::string::npos);
  // Methods are case-sensitive (RFC 7230 §3.1.1): "get" is a method we do not serve.
  CHECK(answer("get /metrics HTTP/1.0\r\n\r\n").rfind("HTTP/1.0 405", 0) == 0);
  for (const char* bad :
       {"\r\n\r\n", "GET\r\n\r\n", "GET /metrics\r\n\r\n", "GET /metrics HTTP/1.0 extra\r\n\r\n",
        "GET /metrics FTP/1.0\r\n\r\n", "GET  /metrics HTTP/1.0\r\n\r\n", "GET / HTTP/1.0\n\n",
        "GET /metrics HTTP/1.0\r\nno colon\r\n\r\n",
        "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"}) {
    INFO(bad);
    CHECK(answer(bad).rfind("HTTP/1.0 400", 0) == 0);
  }
  CHECK(calls == 0);  // no answer but 200 renders the metrics
}
