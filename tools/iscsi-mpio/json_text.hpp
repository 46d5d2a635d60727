// JSON string literals for the tool's machine-readable output (status, paths, stats, logs).
#pragma once

#include <string>
#include <string_view>

namespace iscsi_mpio::json_text {

// `text` as a quoted JSON string (RFC 8259 §7): quote, backslash and control characters
// escaped; bytes that are not well-formed UTF-8 (vendor strings, peer-supplied text) become
// U+FFFD, so every consumer can parse the result.
std::string quoted(std::string_view text);
void append_quoted(std::string& out, std::string_view text);

}  // namespace iscsi_mpio::json_text
