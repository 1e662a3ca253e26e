#include "llmbill/crc32.hpp"

#include <gtest/gtest.h>

#include <string>

using llmbill::crc32;

TEST(Crc32, KnownCheckValue) { EXPECT_EQ(crc32("123456789"), 0xCBF43926u); }

TEST(Crc32, EmptyInputIsZero) { EXPECT_EQ(crc32(""), 0u); }

TEST(Crc32, OtherKnownVectors) {
  EXPECT_EQ(crc32("a"), 0xE8B7BE43u);
  EXPECT_EQ(crc32("The quick brown fox jumps over the lazy dog"), 0x414FA339u);
  EXPECT_EQ(crc32(std::string(32, '\0')), 0x190A55ADu);
}

TEST(Crc32, IncrementalEqualsWhole) {
  std::string all = "spool record: seq then payload";
  for (std::size_t cut = 0; cut <= all.size(); ++cut) {
    std::string_view v(all);
    EXPECT_EQ(crc32(v.substr(cut), crc32(v.substr(0, cut))), crc32(all)) << "cut at " << cut;
  }
}

TEST(Crc32, DetectsOneBitFlip) {
  std::string s = "{\"transaction_id\":\"abc\"}";
  std::uint32_t before = crc32(s);
  s[5] = static_cast<char>(s[5] ^ 0x01);
  EXPECT_NE(crc32(s), before);
}
