// The server logs every connect and disconnect at info level: hundreds of lines per run, which
// bury the one failed check in a CI log. Tests log warnings and worse unless TEST_LOG_LEVEL
// (an spdlog level name: trace, debug, info, ...) asks for more.
#include <spdlog/spdlog.h>

#include <cstdlib>

namespace {

const bool log_level_set = [] {
  const char* wanted = std::getenv("TEST_LOG_LEVEL");
  spdlog::set_level(wanted != nullptr ? spdlog::level::from_str(wanted) : spdlog::level::warn);
  return true;
}();

}  // namespace
