#include "errors.hpp"

namespace iscsi_mpio {

std::string error_text(std::error_code ec, std::string_view detail) {
  return detail.empty() ? ec.message() : std::string(detail);
}

}  // namespace iscsi_mpio
