#include "config/error.hpp"

namespace config {
namespace {

class ConfigCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "config"; }
  std::string message(int value) const override {
    switch (static_cast<config_errc>(value)) {
      case config_errc::io_error:
        return "configuration file cannot be read";
      case config_errc::syntax_error:
        return "YAML syntax error";
      case config_errc::unknown_key:
        return "unknown key";
      case config_errc::duplicate_key:
        return "duplicate key";
      case config_errc::missing_key:
        return "missing required key";
      case config_errc::wrong_type:
        return "value has the wrong type";
      case config_errc::invalid_value:
        return "invalid value";
      case config_errc::insecure_file:
        return "file readable by others";
      case config_errc::plaintext_nbd:
        return "NBD served in plaintext on the network";
    }
    return "unknown configuration error";
  }
};

}  // namespace

const std::error_category& config_category() noexcept {
  static const ConfigCategory category;
  return category;
}

std::error_code make_error_code(config_errc e) noexcept {
  return {static_cast<int>(e), config_category()};
}

std::string ConfigError::to_string() const {
  std::string out = file;
  if (line > 0) {
    out += ':' + std::to_string(line) + ':' + std::to_string(column);
  }
  out += ": ";
  if (!key_path.empty()) {
    out += key_path + ": ";
  }
  out += message;
  return out;
}

}  // namespace config
