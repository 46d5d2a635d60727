// The attach's two local request parsers on arbitrary bytes: control::respond (the control
// socket's request line) and metrics::answer_http (the metrics endpoint's HTTP request head),
// as the listeners in service.cpp feed them. The first byte picks the parser and, for HTTP, the
// chunking; the rest is what a client sent.
//
// Invariants: never a crash or a hang; a control answer is text ending in a newline, and an
// error answer is one line of printable ASCII (a client's bytes echoed in it cannot move the
// operator's terminal); an HTTP answer is a whole HTTP/1.0 response with a status line, and
// the listener has one at the latest when max_request_head bytes have arrived (what it holds
// per connection is bounded).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "control.hpp"
#include "fuzz_support.hpp"
#include "metrics.hpp"

namespace {

using namespace iscsi_mpio;

control::Backend make_backend() {
  control::Backend backend;
  backend.snapshot = [] {
    status::Snapshot s;
    s.export_name = "lun";
    s.target = "iqn.2026-11.org.example:fuzz";
    s.lun = 1;
    for (int i = 1; i <= 2; ++i) {
      mpio::PathStatus p;
      p.name = "198.18." + std::to_string(i) + ".1:3260 from 198.18." + std::to_string(i) + ".2";
      p.state = i == 1 ? mpio::PathState::active : mpio::PathState::failed;
      p.last_error = i == 1 ? "" : "connection lost";
      s.paths.push_back(p);
    }
    return s;
  };
  for (int i = 1; i <= 2; ++i)
    backend.portals.push_back({"198.18." + std::to_string(i) + ".1", 3260});
  backend.stats_json = [] { return std::string("{}\n"); };
  backend.fail_path = [](size_t index, std::string& detail) {
    detail = "path " + std::to_string(index + 1) + " failed";
    return std::error_code{};
  };
  backend.reinstate_path = backend.fail_path;
  return backend;
}

void check_control(std::string_view input) {
  static const control::Backend backend = make_backend();
  // The listener passes the line before the newline, at most max_request_line bytes of it.
  std::string_view line = input.substr(0, input.find('\n'));
  line = line.substr(0, control::max_request_line);
  const std::string answer = control::respond(line, backend);
  FUZZ_CHECK(!answer.empty() && answer.back() == '\n');
  if (answer.rfind("error:", 0) == 0) {
    FUZZ_CHECK(std::count(answer.begin(), answer.end(), '\n') == 1);
    FUZZ_CHECK(std::all_of(answer.begin(), answer.end() - 1, [](char c) {
      return static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7f;
    }));
  }
}

void check_http(uint8_t seed, std::string_view input) {
  fuzz::Chunker chunker(seed);
  std::string received;
  size_t offset = 0;
  std::optional<std::string> answer;
  // As http_exchange does: parse again after each read until there is an answer.
  while (!answer && offset < input.size()) {
    const size_t n = chunker.next(input.size() - offset);
    received.append(input.substr(offset, n));
    offset += n;
    answer = metrics::answer_http(received, [] { return std::string("x 1\n"); });
  }
  if (!answer) {
    FUZZ_CHECK(received.size() < metrics::max_request_head);
    return;
  }
  FUZZ_CHECK(answer->rfind("HTTP/1.0 ", 0) == 0);
  FUZZ_CHECK(answer->find("\r\n\r\n") != std::string::npos);
  FUZZ_CHECK(answer->find("Connection: close\r\n") != std::string::npos);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] & 1)
    check_http(static_cast<uint8_t>(data[0] >> 1), input);
  else
    check_control(input);
  return 0;
}
