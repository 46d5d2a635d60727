// JSON strings (Boost.JSON, UTF-8 made well-formed) for status/paths/stats output and the
// --log-format json lines.
#include <catch2/catch.hpp>

#include <spdlog/details/log_msg.h>
#include <chrono>

#include <boost/json/serialize.hpp>

#include "json_text.hpp"
#include "logging.hpp"

using namespace iscsi_mpio;

namespace {

// What a string field of our JSON output looks like.
std::string quoted(std::string_view text) {
  return boost::json::serialize(boost::json::value(json_text::utf8(text)));
}

}  // namespace

TEST_CASE("string fields escape what RFC 8259 requires", "[iscsi_mpio]") {
  CHECK(quoted("") == "\"\"");
  CHECK(quoted("plain text") == "\"plain text\"");
  CHECK(quoted("a\"b\\c") == R"("a\"b\\c")");
  CHECK(quoted("line1\nline2\r\t") == R"("line1\nline2\r\t")");
  CHECK(quoted(std::string("\x00\x01\x1f\x7f", 4)) == "\"\\u0000\\u0001\\u001f\x7f\"");
  CHECK(quoted("\b\f") == R"("\b\f")");
}

TEST_CASE("json_text::utf8 keeps UTF-8 and replaces each byte that is not", "[iscsi_mpio]") {
  const std::string r = "\xef\xbf\xbd";  // U+FFFD
  CHECK(json_text::utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x92\xbe") ==
        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x92\xbe");
  CHECK(json_text::utf8("\xff") == r);
  CHECK(json_text::utf8("a\xc3") == "a" + r);                   // truncated sequence
  CHECK(json_text::utf8("\xc0\xaf") == r + r);                  // overlong '/'
  CHECK(json_text::utf8("\xed\xa0\x80") == r + r + r);          // surrogate D800
  CHECK(json_text::utf8("\xf4\x90\x80\x80") == r + r + r + r);  // > U+10FFFF
  CHECK(json_text::utf8("\xe2\x82"
                        "x") == r + r + "x");
  CHECK(quoted("\"\xff\"") == "\"\\\"" + r + "\\\"\"");
}

TEST_CASE("json_line: UTC time with milliseconds, level word, escaped message", "[iscsi_mpio]") {
  using namespace std::chrono;
  // 2026-11-02T10:04:05.123Z
  const system_clock::time_point t =
      sys_days{year{2026} / 11 / 2} + hours{10} + minutes{4} + seconds{5} + milliseconds{123};
  CHECK(logging::json_line(t, spdlog::level::warn, "path \"1\" failed\n") ==
        R"({"time":"2026-11-02T10:04:05.123Z","level":"warn","message":"path \"1\" failed\n"})");
  CHECK(logging::json_line(t, spdlog::level::err, "x").find(R"("level":"error")") !=
        std::string::npos);
  CHECK(logging::json_line(t, spdlog::level::info, "x").find(R"("level":"info")") !=
        std::string::npos);
  const system_clock::time_point epoch{};
  CHECK(logging::json_line(epoch, spdlog::level::debug, "") ==
        R"({"time":"1970-01-01T00:00:00.000Z","level":"debug","message":""})");
}

TEST_CASE("JsonFormatter writes one line per message", "[iscsi_mpio]") {
  logging::JsonFormatter formatter;
  const std::string text = "two\nlines";
  spdlog::details::log_msg msg("iscsi-mpio", spdlog::level::info,
                               spdlog::string_view_t(text.data(), text.size()));
  spdlog::memory_buf_t out;
  formatter.format(msg, out);
  const std::string line(out.data(), out.size());
  CHECK(line.back() == '\n');
  CHECK(std::count(line.begin(), line.end(), '\n') == 1);
  CHECK(line.find(R"("message":"two\nlines"})") != std::string::npos);
  auto copy = formatter.clone();
  spdlog::memory_buf_t again;
  copy->format(msg, again);
  CHECK(std::string(again.data(), again.size()) == line);
}

TEST_CASE("parse_format knows text and json only", "[iscsi_mpio]") {
  CHECK(logging::parse_format("text") == logging::Format::text);
  CHECK(logging::parse_format("json") == logging::Format::json);
  CHECK_FALSE(logging::parse_format("JSON"));
  CHECK_FALSE(logging::parse_format(""));
}
