#include "llmbill/crc32.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
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

namespace {

// The definition, a bit at a time: what the sliced tables must agree with.
std::uint32_t crc32_by_bits(const unsigned char* p, std::size_t n, std::uint32_t previous) {
  std::uint32_t c = ~previous;
  for (std::size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int bit = 0; bit < 8; ++bit) c = (c & 1u) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
  }
  return ~c;
}

}  // namespace

TEST(Crc32, EightBytesAtATimeAgreeWithTheDefinitionAtEveryLengthAndAlignment) {
  std::mt19937 rng(20261207);
  std::string buf(400, '\0');
  for (auto& ch : buf) ch = static_cast<char>(rng() & 0xFFu);
  const auto* bytes = reinterpret_cast<const unsigned char*>(buf.data());
  for (std::size_t offset = 0; offset < 8; ++offset) {
    for (std::size_t n = 0; n + offset <= 300; ++n) {
      const std::uint32_t seed = n % 3 == 0 ? 0u : static_cast<std::uint32_t>(rng());
      ASSERT_EQ(crc32(bytes + offset, n, seed), crc32_by_bits(bytes + offset, n, seed))
          << "offset " << offset << ", length " << n;
    }
  }
}

TEST(Crc32, LongInputMatchesZlib) {
  std::string data(100000, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>((i * 131 + 7) & 0xFFu);
  EXPECT_EQ(crc32(data), 0xEDAD9CE2u);  // Python: zlib.crc32(bytes((i * 131 + 7) & 0xFF for i in range(100000)))
}
