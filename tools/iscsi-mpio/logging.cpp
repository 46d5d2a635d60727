#include "logging.hpp"

#include <unistd.h>

#include <spdlog/sinks/sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <cstdio>
#include <ctime>
#include <mutex>

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include "json_text.hpp"

namespace iscsi_mpio::logging {
namespace {

std::string_view level_word(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace:
      return "trace";
    case spdlog::level::debug:
      return "debug";
    case spdlog::level::info:
      return "info";
    case spdlog::level::warn:
      return "warn";
    case spdlog::level::err:
      return "error";
    case spdlog::level::critical:
      return "critical";
    default:
      return "off";
  }
}

// The progress line's state, shared by the sink and progress::show/clear. Its mutex also
// orders their writes to stderr.
struct ProgressState {
  std::mutex mutex;
  bool enabled = false;
  bool on_screen = false;  // the terminal's last line holds `text`
  std::string text;

  // "\r" + erase to end of line (ECMA-48 EL, CSI K).
  void erase() {
    if (!on_screen) return;
    std::fputs("\r\033[K", stderr);
    on_screen = false;
  }
  void draw() {
    if (text.empty()) return;
    std::fputs(text.c_str(), stderr);
    on_screen = true;
  }
};

ProgressState& progress_state() {
  static ProgressState state;
  return state;
}

// Forwards to the real stderr sink, taking the progress line away before each log line and
// drawing it again after.
class ProgressAwareSink final : public spdlog::sinks::sink {
 public:
  explicit ProgressAwareSink(std::shared_ptr<spdlog::sinks::sink> inner)
      : inner_(std::move(inner)) {}
  void log(const spdlog::details::log_msg& msg) override {
    auto& state = progress_state();
    std::lock_guard lock(state.mutex);
    state.erase();
    std::fflush(stderr);
    inner_->log(msg);
    inner_->flush();
    state.draw();
    std::fflush(stderr);
  }
  void flush() override { inner_->flush(); }
  void set_pattern(const std::string& pattern) override { inner_->set_pattern(pattern); }
  void set_formatter(std::unique_ptr<spdlog::formatter> formatter) override {
    inner_->set_formatter(std::move(formatter));
  }

 private:
  std::shared_ptr<spdlog::sinks::sink> inner_;
};

}  // namespace

std::optional<Format> parse_format(std::string_view word) {
  if (word == "text") return Format::text;
  if (word == "json") return Format::json;
  return std::nullopt;
}

std::string json_line(std::chrono::system_clock::time_point time, spdlog::level::level_enum level,
                      std::string_view message) {
  const auto since_epoch = time.time_since_epoch();
  const auto seconds = std::chrono::floor<std::chrono::seconds>(since_epoch);
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch - seconds).count();
  const std::time_t t = static_cast<std::time_t>(seconds.count());
  std::tm utc{};
  ::gmtime_r(&t, &utc);
  char stamp[64];
  std::snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900,
                utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                static_cast<int>(millis));
  return boost::json::serialize(boost::json::object{
      {"time", stamp}, {"level", level_word(level)}, {"message", json_text::utf8(message)}});
}

void JsonFormatter::format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) {
  const std::string line =
      json_line(msg.time, msg.level, std::string_view(msg.payload.data(), msg.payload.size()));
  dest.append(line.data(), line.data() + line.size());
  dest.push_back('\n');
}

std::unique_ptr<spdlog::formatter> JsonFormatter::clone() const {
  return std::make_unique<JsonFormatter>();
}

void setup(spdlog::level::level_enum level, Format format) {
  std::shared_ptr<spdlog::sinks::sink> sink;
  if (format == Format::json) {
    // Plain sink: colour codes would land inside the JSON.
    sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    sink->set_formatter(std::make_unique<JsonFormatter>());
  } else {
    sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    sink->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
    progress_state().enabled = ::isatty(STDERR_FILENO) == 1;
    sink = std::make_shared<ProgressAwareSink>(std::move(sink));
  }
  auto logger = std::make_shared<spdlog::logger>("iscsi-mpio", std::move(sink));
  logger->set_level(level);
  // Warnings and errors reach the terminal or journal at once.
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(std::move(logger));
}

namespace progress {

bool enabled() {
  return progress_state().enabled;
}

void show(std::string text) {
  auto& state = progress_state();
  if (!state.enabled) return;
  std::lock_guard lock(state.mutex);
  if (state.on_screen && text == state.text) return;
  state.erase();
  state.text = std::move(text);
  state.draw();
  std::fflush(stderr);
}

void clear() {
  auto& state = progress_state();
  if (!state.enabled) return;
  std::lock_guard lock(state.mutex);
  state.erase();
  state.text.clear();
  std::fflush(stderr);
}

}  // namespace progress
}  // namespace iscsi_mpio::logging
