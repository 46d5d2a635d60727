// config::load_string on arbitrary text: never throws, never crashes; errors point inside the
// file; errors are reported only for a rejected file; an accepted one prints (redacted).
#include <string>
#include <string_view>

#include <config/config.hpp>

#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* raw, size_t size) {
  const std::string_view yaml(reinterpret_cast<const char*>(raw), size);
  const config::Result result = config::load_string(yaml, "fuzz.yaml");
  for (const auto& error : result.errors()) {
    FUZZ_CHECK(error.line >= 0);
    FUZZ_CHECK(error.column >= 0);
  }
  if (result.ok()) {
    FUZZ_CHECK(result.errors().empty());
    FUZZ_CHECK(!result.config().paths.empty());
    (void)config::redacted(result.config());
  } else {
    FUZZ_CHECK(!result.errors().empty());
  }
  return 0;
}
