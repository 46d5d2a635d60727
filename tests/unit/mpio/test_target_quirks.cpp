#include <catch2/catch.hpp>

#include "mpio/target_quirks.hpp"

TEST_CASE("tgt's LU gets commands below glibc's initial mmap threshold") {
  const auto quirk = mpio::find_target_quirk("IET", "VIRTUAL-DISK");
  REQUIRE(quirk);
  CHECK(quirk->target == "tgt");
  // valloc pads a request by a page: the buffer and the padding stay under 128 KiB.
  CHECK(quirk->max_command_bytes + 4096 + 64 < (128u << 10));
  CHECK(quirk->max_command_bytes % 4096 == 0);
}

TEST_CASE("other LUs, and a renamed tgt LU, have no built-in entry") {
  CHECK_FALSE(mpio::find_target_quirk("LIO-ORG", "disk0"));
  CHECK_FALSE(mpio::find_target_quirk("FreeBSD", "iSCSI DISK"));
  CHECK_FALSE(mpio::find_target_quirk("IET", "MYDISK"));
  CHECK_FALSE(mpio::find_target_quirk("iet", "virtual-disk"));
  CHECK_FALSE(mpio::find_target_quirk("", ""));
}
