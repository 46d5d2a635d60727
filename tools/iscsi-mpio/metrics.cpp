#include "metrics.hpp"

#include <fmt/format.h>
#include <algorithm>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <sstream>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include "json_text.hpp"

namespace iscsi_mpio::metrics {
namespace {

namespace http = boost::beast::http;

constexpr std::array<mpio::PathState, 6> all_states = {
    mpio::PathState::connecting, mpio::PathState::active,  mpio::PathState::ghost,
    mpio::PathState::failed,     mpio::PathState::refused, mpio::PathState::marginal};

// Shortest text that reads back to the same double ("0.0001", "2.5", "1e-05"). fmt's, which
// logging already compiles in, not std::to_chars: libstdc++'s floating_to_chars.o refers to
// fesetround, which kept libm.so mapped in every process (docs/architecture.md, "Memory").
std::string number(double value) {
  return fmt::format("{}", value);
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

  // A label put first in every series from now on (the `lun` of an attach of several LUNs);
  // an empty key: none.
  void leading_label(std::pair<std::string_view, std::string> label) {
    leading_ = std::move(label);
  }

  void sample(std::string_view name,
              std::initializer_list<std::pair<std::string_view, std::string_view>> labels,
              const std::string& value) {
    out_ += name;
    std::vector<std::pair<std::string_view, std::string_view>> all;
    if (!leading_.first.empty()) all.emplace_back(leading_.first, leading_.second);
    all.insert(all.end(), labels.begin(), labels.end());
    if (!all.empty()) {
      out_ += '{';
      bool first = true;
      for (const auto& [key, label_value] : all) {
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
  std::pair<std::string_view, std::string> leading_;
};

// One whole response, HTTP/1.0 so that no client waits for a second answer on the connection.
std::string response(http::status status, std::string_view content_type, std::string body,
                     bool with_body = true, std::string_view allow = {}) {
  http::response<http::string_body> message{status, 10};
  message.set(http::field::content_type, content_type);
  if (!allow.empty()) message.set(http::field::allow, allow);
  message.content_length(body.size());  // for HEAD too: the length GET would send
  message.set(http::field::connection, "close");
  if (with_body) message.body() = std::move(body);
  std::ostringstream out;
  out << message;
  return out.str();
}

std::string plain(http::status status, std::string body, std::string_view allow = {}) {
  return response(status, "text/plain; charset=utf-8", std::move(body), true, allow);
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

void Collector::remove_path(size_t path) {
  if (path < paths_.size()) paths_.erase(paths_.begin() + static_cast<std::ptrdiff_t>(path));
}

uint64_t Collector::failovers(size_t path) const {
  return path < paths_.size() ? paths_[path].failovers : 0;
}

Histogram Collector::latency(size_t path) const {
  return path < paths_.size() ? paths_[path].latency : Histogram{};
}

std::string Collector::exposition(const Sample& s) const {
  return metrics::exposition({{this, s}}, false);
}

std::string exposition(const std::vector<LunSeries>& luns, bool lun_label) {
  Exposition e;
  std::vector<std::string> lun_text;
  for (const auto& l : luns) lun_text.push_back(std::to_string(l.sample.lun));
  // Runs `fn(collector, sample, index texts)` for each LUN with its `lun` label in front of
  // every series' labels.
  auto each_lun = [&](auto fn) {
    for (size_t l = 0; l < luns.size(); ++l) {
      if (lun_label) e.leading_label({"lun", lun_text[l]});
      std::vector<std::string> index_text;
      for (size_t i = 0; i < luns[l].sample.paths.size(); ++i)
        index_text.push_back(std::to_string(i + 1));
      fn(*luns[l].collector, luns[l].sample, index_text);
    }
    e.leading_label({});
  };
  // Each family's series together, as the format requires.
  auto per_path = [&](std::string_view name, std::string_view type, std::string_view help,
                      auto value_of) {
    e.family(name, type, help);
    each_lun([&](const Collector& c, const Sample& s, const std::vector<std::string>& index_text) {
      for (size_t i = 0; i < s.paths.size(); ++i)
        e.sample(name, {{"index", index_text[i]}, {"path", s.paths[i].name}},
                 std::to_string(value_of(c, i, s.paths[i])));
    });
  };

  e.family("iscsi_mpio_lun_info", "gauge", "The LUN this attach serves; always 1.");
  for (const auto& l : luns)
    e.sample("iscsi_mpio_lun_info",
             {{"export", l.sample.export_name},
              {"target", l.sample.target},
              {"lun", std::to_string(l.sample.lun)},
              {"wwid", l.sample.wwid}},
             "1");

  e.family("iscsi_mpio_path_state", "gauge",
           "Path state (connecting, active, ghost, failed, refused, marginal): 1 for the current "
           "one.");
  each_lun([&](const Collector&, const Sample& s, const std::vector<std::string>& index_text) {
    for (size_t i = 0; i < s.paths.size(); ++i)
      for (const auto state : all_states)
        e.sample("iscsi_mpio_path_state",
                 {{"index", index_text[i]},
                  {"path", s.paths[i].name},
                  {"state", mpio::path_state_name(state)}},
                 s.paths[i].state == state ? "1" : "0");
  });

  per_path("iscsi_mpio_path_commands_total", "counter",
           "SCSI commands the target answered on the path.",
           [](const Collector&, size_t, const mpio::PathStatus& p) { return p.commands; });
  per_path("iscsi_mpio_path_bytes_total", "counter", "Data bytes of those commands.",
           [](const Collector&, size_t, const mpio::PathStatus& p) { return p.bytes; });
  per_path("iscsi_mpio_path_errors_total", "counter",
           "Transport failures on the path (connection lost, command timed out and aborted).",
           [](const Collector&, size_t, const mpio::PathStatus& p) { return p.errors; });
  per_path("iscsi_mpio_path_failovers_total", "counter",
           "Times the path went to state failed, by a fault or by fail-path.",
           [](const Collector& c, size_t i, const mpio::PathStatus&) { return c.failovers(i); });
  per_path("iscsi_mpio_path_hedges_sent_total", "counter",
           "Reads sent again on this path because they were stuck on another "
           "(multipath.hedged_reads).",
           [](const Collector&, size_t, const mpio::PathStatus& p) { return p.hedges_sent; });
  per_path("iscsi_mpio_path_hedges_won_total", "counter",
           "Of those, the ones that answered first: their data was the reply.",
           [](const Collector&, size_t, const mpio::PathStatus& p) { return p.hedges_won; });
  per_path("iscsi_mpio_path_iops", "gauge", "Commands completed on the path in the last second.",
           [](const Collector&, size_t, const mpio::PathStatus& p) { return p.iops; });
  per_path(
      "iscsi_mpio_path_in_flight", "gauge", "Commands outstanding on the path.",
      [](const Collector&, size_t, const mpio::PathStatus& p) { return uint64_t{p.in_flight}; });
  per_path("iscsi_mpio_path_marginal_failures", "gauge",
           "Failures counted towards multipath.marginal_path's san_path_err_threshold.",
           [](const Collector&, size_t, const mpio::PathStatus& p) {
             return uint64_t{p.marginal_failures};
           });
  e.family("iscsi_mpio_path_marginal_seconds_left", "gauge",
           "Seconds until a path held out as marginal is reinstated; 0 when not held out.");
  each_lun([&](const Collector&, const Sample& s, const std::vector<std::string>& index_text) {
    for (size_t i = 0; i < s.paths.size(); ++i)
      e.sample("iscsi_mpio_path_marginal_seconds_left",
               {{"index", index_text[i]}, {"path", s.paths[i].name}},
               number(static_cast<double>(s.paths[i].marginal_time_left.count()) / 1000));
  });

  constexpr std::string_view latency_name = "iscsi_mpio_path_command_latency_seconds";
  e.family(latency_name, "histogram",
           "Time from sending a SCSI command on the path to the target's response.");
  each_lun([&](const Collector& c, const Sample& s, const std::vector<std::string>& index_text) {
    for (size_t i = 0; i < s.paths.size(); ++i) {
      const Histogram h = c.latency(i);
      const std::string bucket = std::string(latency_name) + "_bucket";
      uint64_t cumulative = 0;
      for (size_t b = 0; b < latency_bounds.size(); ++b) {
        cumulative += h.bucket[b];
        e.sample(bucket,
                 {{"index", index_text[i]},
                  {"path", s.paths[i].name},
                  {"le", number(latency_bounds[b])}},
                 std::to_string(cumulative));
      }
      e.sample(bucket, {{"index", index_text[i]}, {"path", s.paths[i].name}, {"le", "+Inf"}},
               std::to_string(h.count));
      e.sample(std::string(latency_name) + "_sum",
               {{"index", index_text[i]}, {"path", s.paths[i].name}}, number(h.sum_seconds));
      e.sample(std::string(latency_name) + "_count",
               {{"index", index_text[i]}, {"path", s.paths[i].name}}, std::to_string(h.count));
    }
  });

  e.family("iscsi_mpio_requests_in_flight", "gauge",
           "Block requests the LUN device is working on (NBD and kernel clients).");
  each_lun([&](const Collector&, const Sample& s, const std::vector<std::string>&) {
    e.sample("iscsi_mpio_requests_in_flight", {}, std::to_string(s.requests_in_flight));
  });
  const bool nbd = std::any_of(luns.begin(), luns.end(),
                               [](const LunSeries& l) { return l.sample.nbd.available; });
  if (nbd) {
    // One family's series for every LUN whose server runs.
    auto per_lun = [&](std::string_view name, std::string_view type, std::string_view help,
                       auto value_of) {
      e.family(name, type, help);
      each_lun([&](const Collector&, const Sample& s, const std::vector<std::string>&) {
        if (s.nbd.available) e.sample(name, {}, std::to_string(value_of(s.nbd)));
      });
    };
    per_lun("iscsi_mpio_nbd_requests_total", "counter",
            "NBD requests read from clients (NBD_CMD_DISC excluded).",
            [](const NbdCounters& n) { return n.requests; });
    per_lun("iscsi_mpio_nbd_errors_total", "counter",
            "NBD requests answered with an error (invalid, or failed on the LUN).",
            [](const NbdCounters& n) { return n.errors; });
    per_lun("iscsi_mpio_nbd_connections", "gauge", "Open NBD connections.",
            [](const NbdCounters& n) { return n.connections; });
    per_lun("iscsi_mpio_nbd_buffer_bytes", "gauge",
            "Payload buffers the NBD connections hold, in flight and kept for reuse.",
            [](const NbdCounters& n) { return n.buffer_bytes; });
    e.family("iscsi_mpio_nbd_refused_total", "counter",
             "NBD clients turned away, by reason: max_clients (refused in the handshake), "
             "handshake_timeout (disconnected before the handshake ended).");
    each_lun([&](const Collector&, const Sample& s, const std::vector<std::string>&) {
      if (!s.nbd.available) return;
      e.sample("iscsi_mpio_nbd_refused_total", {{"reason", "max_clients"}},
               std::to_string(s.nbd.refused_max_clients));
      e.sample("iscsi_mpio_nbd_refused_total", {{"reason", "handshake_timeout"}},
               std::to_string(s.nbd.handshake_timeouts));
    });
    per_lun("iscsi_mpio_nbd_accept_pauses_total", "counter",
            "Times accepting NBD clients paused to keep file descriptors for the paths.",
            [](const NbdCounters& n) { return n.fd_reserve_pauses; });
    per_lun("iscsi_mpio_nbd_buffer_waits_total", "counter",
            "Times an NBD client was read no further until payload buffers came back "
            "(nbd.total_buffer_mib, shared by every client of every export).",
            [](const NbdCounters& n) { return n.buffer_waits; });
  }
  return e.take();
}

boost::json::object Collector::stats_object(const Sample& s) const {
  boost::json::array paths;
  for (size_t i = 0; i < s.paths.size(); ++i) {
    const auto& p = s.paths[i];
    const Histogram h = latency(i);
    paths.push_back({{"index", i + 1},
                     {"name", json_text::utf8(p.name)},
                     {"state", mpio::path_state_name(p.state)},
                     {"commands", p.commands},
                     {"bytes", p.bytes},
                     {"errors", p.errors},
                     {"iops", p.iops},
                     {"in_flight", p.in_flight},
                     {"failovers", failovers(i)},
                     {"latency_seconds", {{"count", h.count}, {"sum", h.sum_seconds}}}});
  }
  boost::json::value nbd;  // null before the server runs
  if (s.nbd.available)
    nbd = {{"requests", s.nbd.requests},
           {"errors", s.nbd.errors},
           {"connections", s.nbd.connections},
           {"buffer_bytes", s.nbd.buffer_bytes}};
  return {{"paths", std::move(paths)},
          {"requests_in_flight", s.requests_in_flight},
          {"nbd", std::move(nbd)}};
}

std::string Collector::stats_json(const Sample& s) const {
  return json_text::line(stats_object(s));
}

std::string stats_json(const std::vector<LunSeries>& luns) {
  boost::json::array out;
  for (const auto& l : luns) {
    auto one = l.collector->stats_object(l.sample);
    one.emplace("lun", l.sample.lun);
    one.emplace("export", json_text::utf8(l.sample.export_name));
    out.push_back(std::move(one));
  }
  return json_text::line({{"luns", std::move(out)}});
}

std::optional<std::string> answer_http(std::string_view received,
                                       const std::function<std::string()>& body) {
  // A fresh parser over everything received so far: the head is at most max_request_head
  // bytes, so parsing it again as more arrives costs nothing worth keeping state for. The
  // parser sees only that much (its own header_limit counts the request line and the fields
  // apart). Beast takes CRLF line ends only; a bare LF, which RFC 7230 §3.5 lets a server
  // accept, gets 400.
  const std::string_view head = received.substr(0, max_request_head);
  http::request_parser<http::empty_body> parser;
  boost::system::error_code ec;
  parser.put(boost::asio::const_buffer(head.data(), head.size()), ec);
  if (ec == http::error::need_more && head.size() < max_request_head) return std::nullopt;
  if (ec == http::error::need_more || ec == http::error::header_limit)
    return plain(http::status::request_header_fields_too_large,
                 "request head larger than " + std::to_string(max_request_head) + " bytes\n");
  if (ec || !parser.is_header_done()) return plain(http::status::bad_request, "bad request\n");
  const auto& request = parser.get();
  std::string_view target(request.target().data(), request.target().size());
  target = target.substr(0, target.find('?'));
  if (target != "/metrics") return plain(http::status::not_found, "not found: try /metrics\n");
  const auto method = request.method();
  if (method != http::verb::get && method != http::verb::head)
    return plain(http::status::method_not_allowed, "only GET and HEAD\n", "GET, HEAD");
  return response(http::status::ok, "text/plain; version=0.0.4; charset=utf-8", body(),
                  method == http::verb::get);
}

}  // namespace iscsi_mpio::metrics
