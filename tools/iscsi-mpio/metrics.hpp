// What the running attach measures beyond LunDevice::path_status(): per-path latency histograms
// and failover counts; and their forms for `stats` (JSON) and Prometheus (text exposition
// format 0.0.4, https://prometheus.io/docs/instrumenting/exposition_formats/). No Asio or Beast
// in this header: the HTTP listener lives in service.cpp and only asks answer_http() (Beast's
// request parser, in metrics.cpp) what to send.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/object.hpp>

#include <mpio/lun_device.hpp>

namespace iscsi_mpio::metrics {

// Upper bounds, in seconds, of the command latency buckets: 100 µs (a loopback READ) to 10 s
// (a command held across a failover). Prometheus adds +Inf.
inline constexpr std::array<double, 15> latency_bounds = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10};

struct Histogram {
  std::array<uint64_t, latency_bounds.size()> bucket{};  // not cumulative; above the last: none
  uint64_t count = 0;
  double sum_seconds = 0;
  void observe(double seconds);
};

// The NBD side (nbd::Server::counters(), connection_count()).
struct NbdCounters {
  bool available = false;  // false before the server runs
  uint64_t requests = 0;
  uint64_t errors = 0;
  uint64_t connections = 0;
  uint64_t buffer_bytes = 0;  // payload buffers held, in flight and kept for reuse
  uint64_t refused_max_clients = 0;
  uint64_t handshake_timeouts = 0;
  uint64_t fd_reserve_pauses = 0;
  uint64_t buffer_waits = 0;  // reads held back for nbd.total_buffer_mib
};

// Everything one scrape or `stats` answer shows; taken on the io_context's thread.
struct Sample {
  std::string export_name;
  std::string target;
  unsigned lun = 0;
  std::string wwid;
  std::vector<mpio::PathStatus> paths;  // index i is path i + 1
  uint64_t requests_in_flight = 0;      // LunDevice::requests_in_flight()
  NbdCounters nbd;
};

class Collector {
 public:
  // LunDevice::on_command_done.
  void command_done(size_t path, std::chrono::nanoseconds latency);
  // LunDevice::on_path_event, with the path's index: a change into `failed` is a failover (its
  // I/O moves to other paths or waits). Repeated `failed` events of one failure count once;
  // `count` false records the state without counting (the states found at start).
  void path_state(size_t path, mpio::PathState state, bool count = true);
  // A reload removed the path: the paths after it move up one.
  void remove_path(size_t path);

  uint64_t failovers(size_t path) const;
  Histogram latency(size_t path) const;

  // Prometheus text exposition format, metric names iscsi_mpio_*.
  std::string exposition(const Sample& sample) const;
  // The `stats` answer: one JSON object.
  std::string stats_json(const Sample& sample) const;
  // The same as a JSON object, for an answer about several LUNs.
  boost::json::object stats_object(const Sample& sample) const;

 private:
  struct PerPath {
    Histogram latency;
    uint64_t failovers = 0;
    bool failed = false;
  };
  PerPath& at(size_t path);
  std::vector<PerPath> paths_;
};

// One LUN's part of a scrape or `stats` answer, in an attach of several (target.luns).
struct LunSeries {
  const Collector* collector = nullptr;
  Sample sample;
};

// Every LUN's series, each family's together. `lun_label`: every per-LUN and per-path series
// carries a `lun` label (an attach with target.luns); false gives Collector::exposition's text.
std::string exposition(const std::vector<LunSeries>& luns, bool lun_label);
// `stats` for several LUNs: {"luns":[{"lun":N,"export":...,<stats_json's keys>}, ...]}.
std::string stats_json(const std::vector<LunSeries>& luns);

// ---- the HTTP/1.0 side of the metrics listener

// Bytes of request head (request line and header fields) the listener reads before it
// answers 431.
inline constexpr size_t max_request_head = 8192;

// The answer to the bytes a client has sent so far, or nothing while its request head has not
// all arrived. GET or HEAD /metrics gets `body()` as text/plain version 0.0.4; another path
// 404; another method 405; a head that does not parse (RFC 7230 §3) 400; a head longer than
// max_request_head 431. Always "Connection: close": one request per connection.
std::optional<std::string> answer_http(std::string_view received,
                                       const std::function<std::string()>& body);

}  // namespace iscsi_mpio::metrics
