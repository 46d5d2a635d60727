#include <catch2/catch.hpp>

#include <common_dl/shared_library.hpp>
#include <cstring>
#include <filesystem>
#include <string>

using Catch::Matchers::Contains;

TEST_CASE("SharedLibrary resolves functions and variables of a library opened by soname",
          "[common]") {
  common_dl::SharedLibrary libc("libc.so.6", "Debian package libc6");
  REQUIRE(libc.error().empty());
  decltype(&::strlen) length = nullptr;
  libc.resolve(length, "strlen");
  REQUIRE(length != nullptr);
  CHECK(length("soname") == 6);
  // A variable (as gnutls_free is): the symbol's address is the variable's. One this program
  // does not name itself: a variable it names (environ) is copied into the executable, and
  // libc's own copy is left unused.
  char** short_name = nullptr;
  libc.resolve(short_name, "program_invocation_short_name");
  REQUIRE(short_name != nullptr);
  const auto program = std::filesystem::read_symlink("/proc/self/exe").filename().string();
  CHECK(std::string(*short_name) == program);
  CHECK(libc.error().empty());
}

TEST_CASE("SharedLibrary names a missing library, and its package", "[common]") {
  common_dl::SharedLibrary absent("libiscsi-mpio-absent.so.7", "Debian package absent7");
  CHECK_THAT(absent.error(),
             Contains("cannot open libiscsi-mpio-absent.so.7 (Debian package absent7): "));
  decltype(&::strlen) length = &::strlen;
  absent.resolve(length, "strlen");
  CHECK(length == nullptr);
  // The first failure stays the one reported.
  CHECK_THAT(absent.error(), Contains("cannot open libiscsi-mpio-absent.so.7"));
}

TEST_CASE("SharedLibrary names a missing symbol and keeps the first one missing", "[common]") {
  common_dl::SharedLibrary libc("libc.so.6", "Debian package libc6");
  decltype(&::strlen) length = nullptr;
  libc.resolve(length, "strlen_of_nothing");
  CHECK(length == nullptr);
  CHECK(libc.error() == "libc.so.6 has no symbol strlen_of_nothing");
  libc.resolve(length, "no_such_symbol_either");
  CHECK(libc.error() == "libc.so.6 has no symbol strlen_of_nothing");
  libc.resolve(length, "strlen");  // found symbols still resolve
  CHECK(length != nullptr);
}
