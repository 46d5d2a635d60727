#pragma once
// Errors reported while loading a configuration file. Every problem found in a file becomes one
// ConfigError; loading collects all of them so the admin can fix the file in one pass.

#include <string>
#include <system_error>

namespace config {

enum class config_errc {
  io_error = 1,   // the file could not be read
  syntax_error,   // not well-formed YAML
  unknown_key,    // a key the schema does not know (typo, or wrong nesting level)
  duplicate_key,  // the same key twice in one mapping
  missing_key,    // a required key is absent
  wrong_type,     // e.g. a mapping where a scalar belongs, or "abc" for an integer
  invalid_value,  // right type, but out of range or malformed (portal, IQN, address, ...)
  insecure_file,  // a warning only: a secret file its group or others may read
  plaintext_nbd,  // a warning only: NBD over TCP beyond loopback without TLS
};

const std::error_category& config_category() noexcept;
std::error_code make_error_code(config_errc e) noexcept;

// One problem found in a file; Result::warnings() uses the same form for what does not stop
// loading.
struct ConfigError {
  config_errc code = config_errc::invalid_value;
  std::string file;      // the name given to load_string / the path given to load_file
  int line = 0;          // 1-based; 0 when the problem has no position (e.g. unreadable file)
  int column = 0;        // 1-based; 0 when line is 0
  std::string key_path;  // e.g. "paths[1].portal"; empty for whole-document problems
  std::string message;   // never contains a secret value

  // "FILE:LINE:COL: KEY: MESSAGE"; the position and key parts are omitted when unknown.
  std::string to_string() const;
};

}  // namespace config

template <>
struct std::is_error_code_enum<config::config_errc> : std::true_type {};
