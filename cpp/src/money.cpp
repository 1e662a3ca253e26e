#include "llmbill/money.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>

#include "llmbill/errors.hpp"

namespace llmbill {
namespace {

constexpr int128 pow10(int n) {
  int128 v = 1;
  for (int i = 0; i < n; ++i) v *= 10;
  return v;
}
constexpr int128 kUnitsPerUsd = pow10(Money::kDecimals);

// The decimal digits of v >= 0. A 128-bit division is a library call (~25 ns), so a digit at a time
// cost ~0.5 µs for a money string; here the digits come in 19-digit blocks, each a 64-bit number
// (one 128-bit division a block): the ledger's and the events' amounts are written several times a call.
std::string digits_of(int128 v) {
  if (v <= static_cast<int128>(std::numeric_limits<std::uint64_t>::max())) {
    return std::to_string(static_cast<std::uint64_t>(v));
  }
  constexpr std::uint64_t kBlock = 10'000'000'000'000'000'000ULL;  // 10^19: one block of 19 digits
  const std::string low = std::to_string(static_cast<std::uint64_t>(v % kBlock));
  return digits_of(v / kBlock) + std::string(19 - low.size(), '0') + low;
}

}  // namespace

Money Money::from_usd_price(double usd) {
  if (!std::isfinite(usd) || usd < 0) {
    throw PriceTableError("price must be a finite, non-negative number of USD");
  }
  if (usd == 0) return Money();
  // 12 significant digits: removes float dust (1.0000000000000001e-07) and rounds repeating
  // decimals (0.0002833333333333333) while moving no price by more than 5e-12 relative.
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.11e", usd);  // d.ddddddddddde[+-]XX
  int128 mantissa = 0;
  char* p = buf;
  for (; *p != 'e'; ++p) {
    if (*p != '.') mantissa = mantissa * 10 + (*p - '0');
  }
  int exponent = std::atoi(p + 1);
  int shift = exponent - 11 + kDecimals;  // value = mantissa * 10^(exponent-11)
  while (shift < 0 && mantissa % 10 == 0) {
    mantissa /= 10;
    ++shift;
  }
  if (shift < 0) {
    throw PriceTableError("price " + std::string(buf) + " USD is finer than 1e-19 USD");
  }
  if (shift > 30) throw MoneyOverflowError("price " + std::string(buf) + " USD is out of range");
  return Money(mantissa * pow10(shift));
}

Money Money::parse_usd(std::string_view text) {
  bool negative = false;
  std::size_t i = 0;
  if (i < text.size() && (text[i] == '-' || text[i] == '+')) negative = text[i++] == '-';
  int128 whole = 0, frac = 0;
  int frac_digits = 0, whole_digits = 0;
  bool seen_dot = false;
  for (; i < text.size(); ++i) {
    char c = text[i];
    if (c == '.' && !seen_dot) {
      seen_dot = true;
    } else if (c >= '0' && c <= '9') {
      if (seen_dot) {
        if (++frac_digits > kDecimals) throw Error("more than 19 decimals in USD amount: " + std::string(text));
        frac = frac * 10 + (c - '0');
      } else {
        if (++whole_digits > 19) throw MoneyOverflowError("USD amount out of range: " + std::string(text));
        whole = whole * 10 + (c - '0');
      }
    } else {
      throw Error("not a decimal USD amount: '" + std::string(text) + "'");
    }
  }
  if (whole_digits + frac_digits == 0) throw Error("not a decimal USD amount: '" + std::string(text) + "'");
  int128 units = whole * kUnitsPerUsd + frac * pow10(kDecimals - frac_digits);
  return Money(negative ? -units : units);
}

Money Money::operator+(Money other) const {
  int128 r;
  if (__builtin_add_overflow(units_, other.units_, &r)) throw MoneyOverflowError("money sum overflows");
  return Money(r);
}

Money Money::operator-(Money other) const {
  int128 r;
  if (__builtin_sub_overflow(units_, other.units_, &r)) throw MoneyOverflowError("money difference overflows");
  return Money(r);
}

Money Money::times(std::int64_t count) const {
  int128 r;
  if (__builtin_mul_overflow(units_, static_cast<int128>(count), &r)) {
    throw MoneyOverflowError("money product overflows");
  }
  return Money(r);
}

std::string Money::units_string() const {
  if (units_ < 0) {
    // -(min) is not representable; go through unsigned. Digits are built reversed, sign last.
    auto magnitude = static_cast<unsigned __int128>(-(units_ + 1)) + 1;
    std::string s;
    while (magnitude > 0) {
      s.push_back(static_cast<char>('0' + static_cast<int>(magnitude % 10)));
      magnitude /= 10;
    }
    s.push_back('-');
    std::reverse(s.begin(), s.end());
    return s;
  }
  return digits_of(units_);
}

Money Money::parse_units(std::string_view digits) {
  bool negative = !digits.empty() && digits[0] == '-';
  std::size_t i = negative ? 1 : 0;
  if (i == digits.size()) throw Error("not an integer money amount: '" + std::string(digits) + "'");
  int128 v = 0;
  for (; i < digits.size(); ++i) {
    char c = digits[i];
    if (c < '0' || c > '9') throw Error("not an integer money amount: '" + std::string(digits) + "'");
    if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, c - '0', &v)) {
      throw MoneyOverflowError("money amount out of range: " + std::string(digits));
    }
  }
  return Money(negative ? -v : v);
}

std::string Money::to_usd_string() const {
  if (units_ == std::numeric_limits<int128>::min()) throw MoneyOverflowError("money out of range");
  int128 magnitude = units_ < 0 ? -units_ : units_;
  std::string whole = digits_of(magnitude / kUnitsPerUsd);
  std::string frac = digits_of(magnitude % kUnitsPerUsd);
  frac.insert(0, static_cast<std::size_t>(kDecimals) - frac.size(), '0');
  while (!frac.empty() && frac.back() == '0') frac.pop_back();
  std::string out = units_ < 0 ? "-" : "";
  out += whole;
  if (!frac.empty()) out += "." + frac;
  return out;
}

double Money::to_usd_double() const { return std::strtod(to_usd_string().c_str(), nullptr); }

}  // namespace llmbill
