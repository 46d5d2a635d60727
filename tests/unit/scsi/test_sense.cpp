#include <catch2/catch.hpp>

#include <scsi/sense.hpp>

#include "scsi_test_support.hpp"

using scsi::SenseKey;
using scsi_test::hex;

// Vectors follow SPC-4 §4.5.3 Table 48 (fixed) and §4.5.2 Table 27 (descriptor).

TEST_CASE("fixed-format sense with VALID information", "[scsi]") {
  // VALID|70h, -, MEDIUM ERROR, INFORMATION 00001234, ADDITIONAL LENGTH 0Ah, CSI, 11/00, FRU, SKS
  auto data = hex("f0 00 03 00001234 0a 00000000 11 00 00 000000");
  auto sense = scsi::decode_sense(data);
  REQUIRE(sense);
  CHECK(sense->response_code == 0x70);
  CHECK(sense->key == SenseKey::medium_error);
  CHECK(sense->asc == 0x11);
  CHECK(sense->ascq == 0x00);
  CHECK_FALSE(sense->deferred);
  CHECK_FALSE(sense->descriptor_format());
  REQUIRE(sense->information);
  CHECK(*sense->information == 0x1234);
}

TEST_CASE("fixed-format sense without VALID has no information", "[scsi]") {
  auto sense = scsi::decode_sense(hex("70 00 06 0000abcd 0a 00000000 29 00 00 000000"));
  REQUIRE(sense);
  CHECK(sense->key == SenseKey::unit_attention);
  CHECK(sense->asc == 0x29);
  CHECK_FALSE(sense->information);
}

TEST_CASE("fixed-format deferred sense", "[scsi]") {
  auto sense = scsi::decode_sense(hex("71 00 03 00000000 0a 00000000 0c 00 00 000000"));
  REQUIRE(sense);
  CHECK(sense->deferred);
  CHECK(sense->response_code == 0x71);
  CHECK(sense->key == SenseKey::medium_error);
  CHECK(sense->asc == 0x0c);
}

TEST_CASE("fixed-format sense ignores the flag bits around the key", "[scsi]") {
  // FILEMARK, EOM, ILI and SDAT_OVFL set in byte 2 (e0h|10h) around ILLEGAL REQUEST.
  auto sense = scsi::decode_sense(hex("70 00 f5 00000000 0a 00000000 24 00 00 000000"));
  REQUIRE(sense);
  CHECK(sense->key == SenseKey::illegal_request);
}

TEST_CASE("fixed-format ADDITIONAL SENSE LENGTH too short for ASC/ASCQ", "[scsi]") {
  // Additional length 4 ends the sense data at byte 11: ASC/ASCQ bytes present but not valid.
  auto sense = scsi::decode_sense(hex("70 00 05 00000000 04 00000000 24 01"));
  REQUIRE(sense);
  CHECK(sense->key == SenseKey::illegal_request);
  CHECK(sense->asc == 0);
  CHECK(sense->ascq == 0);

  // Additional length 5 covers ASC only.
  sense = scsi::decode_sense(hex("70 00 05 00000000 05 00000000 24 01"));
  REQUIRE(sense);
  CHECK(sense->asc == 0x24);
  CHECK(sense->ascq == 0);
}

TEST_CASE("fixed-format sense cut short by the buffer", "[scsi]") {
  auto full = hex("70 00 02 00000000 0a 00000000 04 0b 00 000000");
  // Declared length 10 but only 13 bytes arrive: ASC yes, ASCQ no.
  auto sense = scsi::decode_sense(std::span(full).first(13));
  REQUIRE(sense);
  CHECK(sense->key == SenseKey::not_ready);
  CHECK(sense->asc == 0x04);
  CHECK(sense->ascq == 0x00);

  // Three bytes still carry the key.
  sense = scsi::decode_sense(std::span(full).first(3));
  REQUIRE(sense);
  CHECK(sense->key == SenseKey::not_ready);
  CHECK(sense->asc == 0);

  // Two bytes do not.
  CHECK_FALSE(scsi::decode_sense(std::span(full).first(2)));
}

TEST_CASE("descriptor-format sense, header only", "[scsi]") {
  auto sense = scsi::decode_sense(hex("72 02 04 0b 00 00 00 00"));
  REQUIRE(sense);
  CHECK(sense->response_code == 0x72);
  CHECK(sense->descriptor_format());
  CHECK(sense->key == SenseKey::not_ready);
  CHECK(sense->asc == 0x04);
  CHECK(sense->ascq == 0x0b);
  CHECK_FALSE(sense->information);
}

TEST_CASE("descriptor-format sense with an Information descriptor", "[scsi]") {
  // SPC-4 Table 29: type 00h, ADDITIONAL LENGTH 0Ah, VALID|reserved, reserved, INFORMATION (8).
  auto data = hex("72 03 11 00 00 00 00 0c  00 0a 80 00 0000000000abcdef");
  auto sense = scsi::decode_sense(data);
  REQUIRE(sense);
  CHECK(sense->key == SenseKey::medium_error);
  CHECK(sense->asc == 0x11);
  REQUIRE(sense->information);
  CHECK(*sense->information == 0xabcdef);

  // Without VALID the field means nothing.
  sense = scsi::decode_sense(hex("72 03 11 00 00 00 00 0c  00 0a 00 00 0000000000abcdef"));
  REQUIRE(sense);
  CHECK_FALSE(sense->information);
}

TEST_CASE("descriptor-format sense finds Information after another descriptor", "[scsi]") {
  // Sense key specific descriptor (02h, length 6) first, then Information; 20 bytes in all.
  auto data = hex("73 0b 47 05 00 00 00 14  02 06 00 00 80 00 00 00  00 0a 80 00 1122334455667788");
  auto sense = scsi::decode_sense(data);
  REQUIRE(sense);
  CHECK(sense->deferred);
  CHECK(sense->key == SenseKey::aborted_command);
  CHECK(sense->asc == 0x47);
  CHECK(sense->ascq == 0x05);
  REQUIRE(sense->information);
  CHECK(*sense->information == 0x1122334455667788ull);
}

TEST_CASE("descriptor-format sense with a truncated descriptor keeps the header", "[scsi]") {
  auto data = hex("72 03 11 00 00 00 00 0c  00 0a 80 00 0000000000abcdef");
  auto sense = scsi::decode_sense(std::span(data).first(19));
  REQUIRE(sense);
  CHECK(sense->asc == 0x11);
  CHECK_FALSE(sense->information);

  // A descriptor claiming more than the ADDITIONAL SENSE LENGTH allows is not read either.
  sense = scsi::decode_sense(hex("72 03 11 00 00 00 00 06  00 0a 80 00 0000000000abcdef"));
  REQUIRE(sense);
  CHECK_FALSE(sense->information);
}

TEST_CASE("not sense data", "[scsi]") {
  CHECK_FALSE(scsi::decode_sense({}));
  CHECK_FALSE(scsi::decode_sense(hex("00 00 05 00")));
  CHECK_FALSE(scsi::decode_sense(hex("7f 00 05 00 00 00 00 0a")));  // vendor specific format
  CHECK_FALSE(scsi::decode_sense(hex("74 05 24 00 00 00 00 00")));
  CHECK_FALSE(scsi::decode_sense(hex("72")));
}

TEST_CASE("every truncation of sense data decodes safely", "[scsi]") {
  const std::vector<std::vector<std::byte>> vectors = {
      hex("f0 00 03 00001234 0a 00000000 11 00 00 000000"),
      hex("72 03 11 00 00 00 00 0c  00 0a 80 00 0000000000abcdef"),
      hex("73 0b 47 05 00 00 00 14  02 06 00 00 80 00 00 00  00 0a 80 00 1122334455667788"),
      hex("72 06 2a 06 00 00 00 ff  00 ff 80"),  // lengths pointing far past the end
  };
  for (const auto& v : vectors) {
    const auto full = scsi::decode_sense(v);
    REQUIRE(full);
    scsi_test::for_each_truncation(v, [&](std::span<const std::byte> part, size_t n) {
      auto sense = scsi::decode_sense(part);
      const size_t key_offset = full->descriptor_format() ? 1 : 2;
      if (n <= key_offset) {
        CHECK_FALSE(sense);
        return;
      }
      REQUIRE(sense);
      CHECK(sense->key == full->key);
      CHECK(sense->deferred == full->deferred);
      // A shorter buffer can only lose fields, never invent them.
      CHECK((sense->asc == full->asc || sense->asc == 0));
      CHECK((sense->ascq == full->ascq || sense->ascq == 0));
      if (sense->information) CHECK(sense->information == full->information);
    });
  }
}

TEST_CASE("sense key names", "[scsi]") {
  CHECK(scsi::sense_key_name(SenseKey::no_sense) == "NO SENSE");
  CHECK(scsi::sense_key_name(SenseKey::not_ready) == "NOT READY");
  CHECK(scsi::sense_key_name(SenseKey::medium_error) == "MEDIUM ERROR");
  CHECK(scsi::sense_key_name(SenseKey::illegal_request) == "ILLEGAL REQUEST");
  CHECK(scsi::sense_key_name(SenseKey::unit_attention) == "UNIT ATTENTION");
  CHECK(scsi::sense_key_name(SenseKey::data_protect) == "DATA PROTECT");
  CHECK(scsi::sense_key_name(SenseKey::aborted_command) == "ABORTED COMMAND");
  CHECK(scsi::sense_key_name(SenseKey::miscompare) == "MISCOMPARE");
}

TEST_CASE("ASC/ASCQ descriptions", "[scsi]") {
  CHECK(scsi::describe_asc(0x00, 0x00) == "no additional sense information");
  CHECK(scsi::describe_asc(0x04, 0x01) == "logical unit is in process of becoming ready");
  CHECK(scsi::describe_asc(0x04, 0x0A) ==
        "logical unit not accessible, asymmetric access state transition");
  CHECK(scsi::describe_asc(0x04, 0x0B) ==
        "logical unit not accessible, target port in standby state");
  CHECK(scsi::describe_asc(0x04, 0x0C) ==
        "logical unit not accessible, target port in unavailable state");
  CHECK(scsi::describe_asc(0x11, 0x00) == "unrecovered read error");
  CHECK(scsi::describe_asc(0x0C, 0x00) == "write error");
  CHECK(scsi::describe_asc(0x20, 0x00) == "invalid command operation code");
  CHECK(scsi::describe_asc(0x21, 0x00) == "logical block address out of range");
  CHECK(scsi::describe_asc(0x24, 0x00) == "invalid field in cdb");
  CHECK(scsi::describe_asc(0x25, 0x00) == "logical unit not supported");
  CHECK(scsi::describe_asc(0x26, 0x00) == "invalid field in parameter list");
  CHECK(scsi::describe_asc(0x27, 0x00) == "write protected");
  CHECK(scsi::describe_asc(0x27, 0x07) == "space allocation failed write protect");
  CHECK(scsi::describe_asc(0x28, 0x00) == "not ready to ready change, medium may have changed");
  CHECK(scsi::describe_asc(0x29, 0x00) == "power on, reset, or bus device reset occurred");
  CHECK(scsi::describe_asc(0x29, 0x07) == "i_t nexus loss occurred");
  CHECK(scsi::describe_asc(0x2A, 0x01) == "mode parameters changed");
  CHECK(scsi::describe_asc(0x2A, 0x06) == "asymmetric access state changed");
  CHECK(scsi::describe_asc(0x2A, 0x09) == "capacity data has changed");
  CHECK(scsi::describe_asc(0x3A, 0x00) == "medium not present");
  CHECK(scsi::describe_asc(0x3F, 0x03) == "inquiry data has changed");
  CHECK(scsi::describe_asc(0x3F, 0x0E) == "reported luns data has changed");
  CHECK(scsi::describe_asc(0x5E, 0x01) == "ASC 5E ASCQ 01");
  CHECK(scsi::describe_asc(0x04, 0xFE) == "ASC 04 ASCQ FE");
}
