#include "metrics.hpp"

#include <algorithm>
#include <charconv>

#include "json_text.hpp"

namespace iscsi_mpio::metrics {
namespace {

constexpr std::array<mpio::PathState, 5> all_states = {
    mpio::PathState::connecting, mpio::PathState::active, mpio::PathState::ghost,
    mpio::PathState::failed, mpio::PathState::refused};

// Shortest text that reads back to the same double, as %g would print it ("0.0001", "2.5").
std::string number(double value) {
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value, std::chars_format::general);
  return ec == std::errc{} ? std::string(buf, end) : "0";
}

// A label value: backslash, double quote and line feed escaped (exposition format, "Text
// format details"). Everything else, UTF-8 included, goes as it is.
void append_label_value(std::string& out, std::string_view value) {
  for (const char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
}

class Exposition {
 public:
  // One family: its HELP and TYPE lines; the series follow with sample().
  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }

  void sample(std::string_view name,
              std::initializer_list<std::pair<std::string_view, std::string_view>> labels,
              const std::string& value) {
    out_ += name;
    if (labels.size() > 0) {
      out_ += '{';
      bool first = true;
      for (const auto& [key, label_value] : labels) {
        if (!first) out_ += ',';
        first = false;
        out_ += key;
        out_ += "=\"";
        append_label_value(out_, label_value);
        out_ += '"';
      }
      out_ += '}';
    }
    out_ += ' ';
    out_ += value;
    out_ += '\n';
  }

  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

std::string status_line_response(std::string_view status, std::string_view extra_headers,
                                 std::string_view content_type, const std::string& body,
                                 bool with_body) {
  std::string out = "HTTP/1.0 ";
  out += status;
  out += "\r\nContent-Type: ";
  out += content_type;
  out += "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  out += extra_headers;
  out += "Connection: close\r\n\r\n";
  if (with_body) out += body;
  return out;
}

std::string plain(std::string_view status, std::string_view extra_headers, std::string body) {
  return status_line_response(status, extra_headers, "text/plain; charset=utf-8", body, true);
}

bool is_token_char(char c) {
  return c >= 'A' && c <= 'Z';
}

}  // namespace

void Histogram::observe(double seconds) {
  ++count;
  sum_seconds += seconds;
  const auto it = std::lower_bound(latency_bounds.begin(), latency_bounds.end(), seconds);
  if (it != latency_bounds.end()) ++bucket[static_cast<size_t>(it - latency_bounds.begin())];
}

Collector::PerPath& Collector::at(size_t path) {
  if (path >= paths_.size()) paths_.resize(path + 1);
  return paths_[path];
}

void Collector::command_done(size_t path, std::chrono::nanoseconds latency) {
  at(path).latency.observe(std::chrono::duration<double>(latency).count());
}

void Collector::path_state(size_t path, mpio::PathState state, bool count) {
  PerPath& p = at(path);
  const bool failed = state == mpio::PathState::failed;
  if (failed && !p.failed && count) ++p.failovers;
  p.failed = failed;
}

uint64_t Collector::failovers(size_t path) const {
  return path < paths_.size() ? paths_[path].failovers : 0;
}

Histogram Collector::latency(size_t path) const {
  return path < paths_.size() ? paths_[path].latency : Histogram{};
}

std::string Collector::exposition(const Sample& s) const {
  Exposition e;
  std::vector<std::string> index_text;
  for (size_t i = 0; i < s.paths.size(); ++i) index_text.push_back(std::to_string(i + 1));
  // Each family's series together, as the format requires.
  auto per_path = [&](std::string_view name, std::string_view type, std::string_view help,
                      auto value_of) {
    e.family(name, type, help);
    for (size_t i = 0; i < s.paths.size(); ++i)
      e.sample(name, {{"index", index_text[i]}, {"path", s.paths[i].name}},
               std::to_string(value_of(i, s.paths[i])));
  };

  e.family("iscsi_mpio_lun_info", "gauge", "The LUN this attach serves; always 1.");
  e.sample("iscsi_mpio_lun_info",
           {{"export", s.export_name},
            {"target", s.target},
            {"lun", std::to_string(s.lun)},
            {"wwid", s.wwid}},
           "1");

  e.family("iscsi_mpio_path_state", "gauge",
           "Path state (connecting, active, ghost, failed, refused): 1 for the current one.");
  for (size_t i = 0; i < s.paths.size(); ++i)
    for (const auto state : all_states)
      e.sample("iscsi_mpio_path_state",
               {{"index", index_text[i]},
                {"path", s.paths[i].name},
                {"state", mpio::path_state_name(state)}},
               s.paths[i].state == state ? "1" : "0");

  per_path("iscsi_mpio_path_commands_total", "counter",
           "SCSI commands the target answered on the path.",
           [](size_t, const mpio::PathStatus& p) { return p.commands; });
  per_path("iscsi_mpio_path_bytes_total", "counter", "Data bytes of those commands.",
           [](size_t, const mpio::PathStatus& p) { return p.bytes; });
  per_path("iscsi_mpio_path_errors_total", "counter",
           "Transport failures on the path (connection lost, command timed out and aborted).",
           [](size_t, const mpio::PathStatus& p) { return p.errors; });
  per_path("iscsi_mpio_path_failovers_total", "counter",
           "Times the path went to state failed, by a fault or by fail-path.",
           [this](size_t i, const mpio::PathStatus&) { return failovers(i); });
  per_path("iscsi_mpio_path_iops", "gauge", "Commands completed on the path in the last second.",
           [](size_t, const mpio::PathStatus& p) { return p.iops; });
  per_path("iscsi_mpio_path_in_flight", "gauge", "Commands outstanding on the path.",
           [](size_t, const mpio::PathStatus& p) { return uint64_t{p.in_flight}; });

  constexpr std::string_view latency_name = "iscsi_mpio_path_command_latency_seconds";
  e.family(latency_name, "histogram",
           "Time from sending a SCSI command on the path to the target's response.");
  for (size_t i = 0; i < s.paths.size(); ++i) {
    const Histogram h = latency(i);
    const std::string bucket = std::string(latency_name) + "_bucket";
    uint64_t cumulative = 0;
    for (size_t b = 0; b < latency_bounds.size(); ++b) {
      cumulative += h.bucket[b];
      e.sample(
          bucket,
          {{"index", index_text[i]}, {"path", s.paths[i].name}, {"le", number(latency_bounds[b])}},
          std::to_string(cumulative));
    }
    e.sample(bucket, {{"index", index_text[i]}, {"path", s.paths[i].name}, {"le", "+Inf"}},
             std::to_string(h.count));
    e.sample(std::string(latency_name) + "_sum",
             {{"index", index_text[i]}, {"path", s.paths[i].name}}, number(h.sum_seconds));
    e.sample(std::string(latency_name) + "_count",
             {{"index", index_text[i]}, {"path", s.paths[i].name}}, std::to_string(h.count));
  }

  e.family("iscsi_mpio_requests_in_flight", "gauge",
           "Block requests the LUN device is working on (NBD and kernel clients).");
  e.sample("iscsi_mpio_requests_in_flight", {}, std::to_string(s.requests_in_flight));
  if (s.nbd.available) {
    e.family("iscsi_mpio_nbd_requests_total", "counter",
             "NBD requests read from clients (NBD_CMD_DISC excluded).");
    e.sample("iscsi_mpio_nbd_requests_total", {}, std::to_string(s.nbd.requests));
    e.family("iscsi_mpio_nbd_errors_total", "counter",
             "NBD requests answered with an error (invalid, or failed on the LUN).");
    e.sample("iscsi_mpio_nbd_errors_total", {}, std::to_string(s.nbd.errors));
    e.family("iscsi_mpio_nbd_connections", "gauge", "Open NBD connections.");
    e.sample("iscsi_mpio_nbd_connections", {}, std::to_string(s.nbd.connections));
    e.family("iscsi_mpio_nbd_buffer_bytes", "gauge",
             "Payload buffers the NBD connections hold, in flight and kept for reuse.");
    e.sample("iscsi_mpio_nbd_buffer_bytes", {}, std::to_string(s.nbd.buffer_bytes));
  }
  return e.take();
}

std::string Collector::stats_json(const Sample& s) const {
  std::string out = "{\"paths\":[";
  for (size_t i = 0; i < s.paths.size(); ++i) {
    const auto& p = s.paths[i];
    const Histogram h = latency(i);
    if (i > 0) out += ',';
    out += "{\"index\":" + std::to_string(i + 1) + ",\"name\":";
    json_text::append_quoted(out, p.name);
    out += ",\"state\":";
    json_text::append_quoted(out, mpio::path_state_name(p.state));
    out += ",\"commands\":" + std::to_string(p.commands) + ",\"bytes\":" + std::to_string(p.bytes) +
           ",\"errors\":" + std::to_string(p.errors) + ",\"iops\":" + std::to_string(p.iops) +
           ",\"in_flight\":" + std::to_string(p.in_flight) +
           ",\"failovers\":" + std::to_string(failovers(i)) +
           ",\"latency_seconds\":{\"count\":" + std::to_string(h.count) +
           ",\"sum\":" + number(h.sum_seconds) + "}}";
  }
  out += "],\"requests_in_flight\":" + std::to_string(s.requests_in_flight) + ",\"nbd\":";
  if (s.nbd.available) {
    out += "{\"requests\":" + std::to_string(s.nbd.requests) +
           ",\"errors\":" + std::to_string(s.nbd.errors) +
           ",\"connections\":" + std::to_string(s.nbd.connections) +
           ",\"buffer_bytes\":" + std::to_string(s.nbd.buffer_bytes) + "}";
  } else {
    out += "null";
  }
  return out + "}\n";
}

size_t request_head_length(std::string_view received) {
  const auto crlf = received.find("\r\n\r\n");
  const auto lf = received.find("\n\n");
  size_t end = std::string_view::npos;
  if (crlf != std::string_view::npos) end = crlf + 4;
  if (lf != std::string_view::npos) end = std::min(end, lf + 2);
  return end == std::string_view::npos ? 0 : end;
}

std::string answer_http(std::string_view head, const std::function<std::string()>& body) {
  // RFC 1945 §5.1: Request-Line = Method SP Request-URI SP HTTP-Version CRLF.
  const auto line_end = head.find('\n');
  std::string_view line = head.substr(0, line_end);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  const auto first_space = line.find(' ');
  const auto second_space =
      first_space == std::string_view::npos ? first_space : line.find(' ', first_space + 1);
  if (line_end == std::string_view::npos || second_space == std::string_view::npos ||
      line.find(' ', second_space + 1) != std::string_view::npos) {
    return plain("400 Bad Request", "", "bad request line\n");
  }
  const std::string_view method = line.substr(0, first_space);
  std::string_view target = line.substr(first_space + 1, second_space - first_space - 1);
  const std::string_view version = line.substr(second_space + 1);
  if (method.empty() || !std::all_of(method.begin(), method.end(), is_token_char) ||
      target.empty() || version.substr(0, 5) != "HTTP/") {
    return plain("400 Bad Request", "", "bad request line\n");
  }
  if (const auto query = target.find('?'); query != std::string_view::npos)
    target = target.substr(0, query);
  if (target != "/metrics") return plain("404 Not Found", "", "not found: try /metrics\n");
  if (method != "GET" && method != "HEAD")
    return plain("405 Method Not Allowed", "Allow: GET, HEAD\r\n", "only GET and HEAD\n");
  return status_line_response("200 OK", "", "text/plain; version=0.0.4; charset=utf-8", body(),
                              method == "GET");
}

std::string answer_http_too_large() {
  return plain("431 Request Header Fields Too Large", "",
               "request head larger than " + std::to_string(max_request_head) + " bytes\n");
}

}  // namespace iscsi_mpio::metrics
