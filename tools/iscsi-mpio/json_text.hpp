// JSON for the tool's machine-readable output (status, paths, stats, logs): Boost.JSON values,
// and what Boost.JSON leaves to us.
#pragma once

#include <string>
#include <string_view>

#include <boost/json/value.hpp>

namespace iscsi_mpio::json_text {

// `text` made well-formed UTF-8 (RFC 8259 §8.1) for a JSON string: bytes that are not
// (vendor strings, peer-supplied text) become U+FFFD, so every consumer can parse the result.
// Boost.JSON's serializer escapes quotes and control characters but copies other bytes as
// they are.
std::string utf8(std::string_view text);

// `value` as one line of JSON text, newline included: the control socket's answers.
std::string line(const boost::json::value& value);

}  // namespace iscsi_mpio::json_text
