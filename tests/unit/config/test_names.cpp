// The string validators on their own: iSCSI names, portals, addresses, listen syntax.
#include <catch2/catch.hpp>

#include "config/names.hpp"

using config::AddressFamily;
using config::Listen;
using config::Portal;

TEST_CASE("valid iSCSI names of each type pass", "[config]") {
  for (const std::string name : {
           "iqn.2023-01.com.example:storage",
           "iqn.2001-04.com.example",
           "iqn.2001-04.com.example:storage:diskarrays-sn-a8675309",
           "iqn.2000-01.com.synology:DS.Target-1.abc",
           "iqn.1992-08.com.netapp:sn.12345",
           "eui.02004567A425678D",
           "eui.02004567a425678d",
           "naa.52004567BA64678D",
           "naa.62004567BA64678D0123456789ABCDEF",
       }) {
    INFO(name);
    CHECK_FALSE(config::iscsi_name_problem(name));
  }
  const std::string longest = "iqn.2023-01.com.example:" + std::string(223 - 24, 'x');
  CHECK(longest.size() == 223);
  CHECK_FALSE(config::iscsi_name_problem(longest));
  CHECK(config::iscsi_name_problem(longest + "x"));
}

TEST_CASE("iscsi_name_problem explains what is wrong", "[config]") {
  using Catch::Matchers::Contains;
  CHECK_THAT(*config::iscsi_name_problem("iqn.2023-01.com.example:a/b"), Contains("'/'"));
  CHECK_THAT(*config::iscsi_name_problem(std::string("iqn.2023-01.com.ex\0", 19)),
             Contains("byte 0x00"));
  CHECK_THAT(*config::iscsi_name_problem("Eui.02004567A425678D"), Contains("'eui.'"));
  CHECK_THAT(*config::iscsi_name_problem("naa.62004567BA64678D0123456789ABCDE"),
             Contains("16 or 32"));
}

TEST_CASE("parse_portal reads every accepted form", "[config]") {
  const std::pair<std::string, Portal> cases[] = {
      {"198.18.1.1", {"198.18.1.1", 3260}},
      {"198.18.1.1:3261", {"198.18.1.1", 3261}},
      {"[fd00::1]", {"fd00::1", 3260}},
      {"[fd00::1]:65535", {"fd00::1", 65535}},
      {"[::ffff:10.0.0.1]:1", {"::ffff:10.0.0.1", 1}},
      {"san-1.example.com", {"san-1.example.com", 3260}},
      {"localhost:3262", {"localhost", 3262}},
      {"fqdn.example.:3260", {"fqdn.example.", 3260}},
  };
  for (const auto& [text, expected] : cases) {
    INFO(text);
    const auto parsed = config::parse_portal(text);
    REQUIRE(std::holds_alternative<Portal>(parsed));
    CHECK(std::get<Portal>(parsed) == expected);
    // to_string writes the form parse_portal reads back.
    const auto again = config::parse_portal(config::to_string(expected));
    REQUIRE(std::holds_alternative<Portal>(again));
    CHECK(std::get<Portal>(again) == expected);
  }
  CHECK(config::to_string(Portal{"fd00::1", 3260}) == "[fd00::1]:3260");
}

TEST_CASE("host names follow RFC 1123 label rules", "[config]") {
  CHECK(std::holds_alternative<std::string>(config::parse_portal(std::string(64, 'a') + ".com")));
  CHECK(std::holds_alternative<Portal>(config::parse_portal(std::string(63, 'a') + ".com")));
  CHECK(std::holds_alternative<std::string>(config::parse_portal("a-.example")));
  CHECK(std::holds_alternative<std::string>(config::parse_portal("a..example")));
  CHECK(std::holds_alternative<std::string>(config::parse_portal("ho_st")));
}

TEST_CASE("ip_literal_family tells IPv4 from IPv6 and refuses the rest", "[config]") {
  CHECK(config::ip_literal_family("10.0.0.1") == AddressFamily::ipv4);
  CHECK(config::ip_literal_family("fd00::1") == AddressFamily::ipv6);
  CHECK(config::ip_literal_family("::") == AddressFamily::ipv6);
  CHECK_FALSE(config::ip_literal_family("10.0.0"));
  CHECK_FALSE(config::ip_literal_family("localhost"));
  CHECK_FALSE(config::ip_literal_family(""));
  CHECK_FALSE(config::ip_literal_family(std::string("10.0.0.1\0junk", 13)));
  CHECK_FALSE(config::ip_literal_family(std::string(1000, '1')));
}

TEST_CASE("parse_listen reads unix and tcp forms", "[config]") {
  const std::pair<std::string, Listen> cases[] = {
      {"unix:/run/iscsi-mpio/lun1.sock",
       {Listen::Kind::unix_socket, "/run/iscsi-mpio/lun1.sock", 0}},
      {"tcp:127.0.0.1:10809", {Listen::Kind::tcp, "127.0.0.1", 10809}},
      {"tcp:127.0.0.1", {Listen::Kind::tcp, "127.0.0.1", 10809}},
      {"tcp:[::1]:10810", {Listen::Kind::tcp, "::1", 10810}},
      {"tcp:localhost", {Listen::Kind::tcp, "localhost", 10809}},
  };
  for (const auto& [text, expected] : cases) {
    INFO(text);
    const auto parsed = config::parse_listen(text);
    REQUIRE(std::holds_alternative<Listen>(parsed));
    CHECK(std::get<Listen>(parsed) == expected);
    CHECK(config::to_string(expected) == (text == "tcp:127.0.0.1"   ? "tcp:127.0.0.1:10809"
                                          : text == "tcp:localhost" ? "tcp:localhost:10809"
                                                                    : text));
  }
  const std::string longest = "unix:/" + std::string(106, 's');
  CHECK(std::holds_alternative<Listen>(config::parse_listen(longest)));
  CHECK(std::holds_alternative<std::string>(config::parse_listen(longest + "s")));
  CHECK(std::holds_alternative<std::string>(config::parse_listen(std::string("unix:/a\0b", 9))));
  CHECK(std::holds_alternative<std::string>(config::parse_listen("UNIX:/x")));
}
