// Exact money. One unit is 1e-19 USD, held in a signed 128-bit integer.
//
// Why 1e-19: the bundled price table, normalised to 12 significant digits at load, is then an exact
// integer in this unit for every price (tests/cpp/prices_test.cpp checks the whole table). The largest
// price (about 1.6 USD) is 1.6e19 units, past int64, hence 128 bits: the range is +/-1.7e38 units =
// +/-1.7e19 USD, so 1e12 tokens at the highest price (1.6e31 units) is far inside it.
// Every operation that could leave the range throws MoneyOverflowError instead of wrapping.
// Floats appear only at the edge (to_usd_double, from_usd_price's input).
//
// Thread safety: a value type; no shared state.
//
//   Money p = Money::from_usd_price(2.5e-06);      // gpt-4o input price per token
//   Money c = p.times(1000);                        // 1000 tokens
//   c.to_usd_string() == "0.0025"
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace llmbill {

using int128 = __int128;

class Money {
 public:
  static constexpr int kDecimals = 19;  // units per USD = 10^kDecimals

  constexpr Money() = default;
  static constexpr Money from_units(int128 units) { return Money(units); }

  // A table price (USD, a double written by JSON) normalised to 12 significant digits.
  // Throws PriceTableError for negative, non-finite or sub-unit values.
  static Money from_usd_price(double usd);

  // An exact decimal USD string, e.g. "0.001113" or "-4"; at most kDecimals decimals.
  static Money parse_usd(std::string_view text);

  constexpr int128 units() const { return units_; }
  constexpr bool is_zero() const { return units_ == 0; }

  Money operator+(Money other) const;
  Money operator-(Money other) const;
  Money& operator+=(Money other) { return *this = *this + other; }
  Money& operator-=(Money other) { return *this = *this - other; }
  Money times(std::int64_t count) const;

  constexpr auto operator<=>(const Money&) const = default;

  // Shortest exact decimal in USD: "0.001113", "12", "-0.5".
  std::string to_usd_string() const;
  // The double nearest to the exact value (so its repr is the short decimal).
  double to_usd_double() const;
  // The units as a decimal integer string (for storage and Python ints).
  std::string units_string() const;
  static Money parse_units(std::string_view digits);

 private:
  constexpr explicit Money(int128 units) : units_(units) {}
  int128 units_ = 0;
};

}  // namespace llmbill
