// The one way a failure's words are chosen: the detail, else the code's message.
#include <catch2/catch.hpp>

#include "errors.hpp"

TEST_CASE("A failure with a detail is told by its detail", "[iscsi_mpio][errors]") {
  CHECK(iscsi_mpio::error_text(std::make_error_code(std::errc::address_in_use),
                               "another iscsi-mpio attach is running on /run/x.sock") ==
        "another iscsi-mpio attach is running on /run/x.sock");
}

TEST_CASE("A failure without a detail is told by its code's message", "[iscsi_mpio][errors]") {
  const auto ec = std::make_error_code(std::errc::connection_refused);
  CHECK(iscsi_mpio::error_text(ec, "") == ec.message());
}
