// Where the log goes and how it looks: `--log-format text` (the default: local time, level,
// message; the level coloured on a terminal) or `--log-format json` (one JSON object per line
// with time, level and message, for journald/Loki/jq). And a progress line under the log,
// shown only when stderr is a terminal and the log is text.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <spdlog/formatter.h>

namespace iscsi_mpio::logging {

enum class Format { text, json };

// --log-format's words.
std::optional<Format> parse_format(std::string_view word);

// {"time":"2026-11-02T10:04:05.123Z","level":"warn","message":"..."}: UTC, milliseconds;
// levels as --log-level names them (trace debug info warn error critical).
std::string json_line(std::chrono::system_clock::time_point time, spdlog::level::level_enum level,
                      std::string_view message);

// json_line() as an spdlog formatter, with the newline.
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override;
  std::unique_ptr<spdlog::formatter> clone() const override;
};

// Installs the default logger on stderr in `format` at `level`.
void setup(spdlog::level::level_enum level, Format format);

// The progress line: a status text kept at the bottom of the terminal ("logging in to 2 paths:
// 1 up"), rewritten in place and redrawn under each new log line. Without a terminal on
// stderr (or with the JSON log) these do nothing.
namespace progress {
bool enabled();
void show(std::string text);
void clear();
}  // namespace progress

}  // namespace iscsi_mpio::logging
