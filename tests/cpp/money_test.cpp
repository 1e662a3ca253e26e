#include "llmbill/money.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "llmbill/errors.hpp"

using llmbill::Money;

TEST(Money, NormalisesFloatDustToTheIntendedPrice) {
  EXPECT_EQ(Money::from_usd_price(1.0000000000000001e-07), Money::from_usd_price(1e-07));
  EXPECT_EQ(Money::from_usd_price(1e-07).units_string(), "1000000000000");
  EXPECT_EQ(Money::from_usd_price(2.1429999999999996e-06).to_usd_string(), "0.000002143");
}

TEST(Money, RepeatingDecimalsRoundToTwelveDigits) {
  EXPECT_EQ(Money::from_usd_price(0.0002833333333333333).to_usd_string(), "0.000283333333333");
}

TEST(Money, TokensTimesPriceIsExact) {
  Money input = Money::from_usd_price(2.5e-06);
  EXPECT_EQ(input.times(1000).to_usd_string(), "0.0025");
  Money sum;
  for (int i = 0; i < 1000; ++i) sum += Money::from_usd_price(1e-07).times(3);
  EXPECT_EQ(sum.to_usd_string(), "0.0003");  // a float sum gives 0.00030000000000000024
}

TEST(Money, EdgeDoubleIsTheShortDecimal) {
  Money m = Money::parse_usd("0.001113");
  EXPECT_EQ(m.to_usd_double(), 0.001113);
  EXPECT_EQ(m.to_usd_string(), "0.001113");
}

TEST(Money, ParsesAndPrintsUsd) {
  EXPECT_EQ(Money::parse_usd("4").units_string(), "40000000000000000000");
  EXPECT_EQ(Money::parse_usd("-0.5").to_usd_string(), "-0.5");
  EXPECT_EQ(Money::parse_usd("0.0000000000000000001").units(), 1);
  EXPECT_THROW(Money::parse_usd("0.00000000000000000001"), llmbill::Error);
  EXPECT_THROW(Money::parse_usd("1e-3"), llmbill::Error);
  EXPECT_THROW(Money::parse_usd(""), llmbill::Error);
  EXPECT_EQ(Money::parse_units(Money::parse_usd("123.456").units_string()), Money::parse_usd("123.456"));
}

TEST(Money, RejectsBadPrices) {
  EXPECT_THROW(Money::from_usd_price(-1e-6), llmbill::PriceTableError);
  EXPECT_THROW(Money::from_usd_price(std::numeric_limits<double>::quiet_NaN()), llmbill::PriceTableError);
  EXPECT_THROW(Money::from_usd_price(1e-25), llmbill::PriceTableError);
}

TEST(Money, OverflowThrowsInsteadOfWrapping) {
  Money big = Money::from_units(std::numeric_limits<llmbill::int128>::max() - 1);
  EXPECT_THROW(big + Money::from_units(5), llmbill::MoneyOverflowError);
  EXPECT_THROW(big.times(2), llmbill::MoneyOverflowError);
  // The largest plausible total: 1e12 tokens at 1.6 USD each stays in range.
  EXPECT_NO_THROW(Money::from_usd_price(1.5552).times(1'000'000'000'000));
}

namespace {
// Digit by digit, as the printing did before it went by 19-digit blocks: the reference.
std::string reference_digits(llmbill::int128 v) {
  if (v == 0) return "0";
  std::string s;
  for (; v > 0; v /= 10) s.insert(s.begin(), static_cast<char>('0' + static_cast<int>(v % 10)));
  return s;
}
}  // namespace

TEST(Money, PrintsEveryMagnitudeAsTheDigitByDigitReference) {
  using llmbill::int128;
  const int128 block = static_cast<int128>(10'000'000'000'000'000'000ULL);
  const int128 u64max = static_cast<int128>(std::numeric_limits<std::uint64_t>::max());
  std::vector<int128> values = {0, 1, 9, 10, block - 1, block, block + 1, u64max - 1, u64max, u64max + 1,
                                block * block - 1, block * block, block * block + 7, std::numeric_limits<int128>::max()};
  std::uint64_t state = 88172645463325252ULL;  // xorshift: many magnitudes, the same every run
  for (int i = 0; i < 2000; ++i) {
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;
    const int128 hi = static_cast<int128>(state >> (i % 64));
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;
    values.push_back((hi << 64 | static_cast<int128>(state)) & std::numeric_limits<int128>::max());
  }
  for (const int128 v : values) {
    const Money m = Money::from_units(v);
    ASSERT_EQ(m.units_string(), reference_digits(v));
    const std::string whole = reference_digits(v / block);
    std::string frac = reference_digits(v % block);
    frac.insert(0, 19 - frac.size(), '0');
    while (!frac.empty() && frac.back() == '0') frac.pop_back();
    ASSERT_EQ(m.to_usd_string(), frac.empty() ? whole : whole + "." + frac);
    ASSERT_EQ(Money::parse_units(m.units_string()), m);
    if (v != 0) ASSERT_EQ(Money::from_units(-v).to_usd_string(), "-" + m.to_usd_string());
  }
}
