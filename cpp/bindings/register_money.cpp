#include <climits>

#include "llmbill/money.hpp"
#include "register.hpp"

namespace llmbill::bindings {

py::object to_decimal(const Money& money) {
  static PyObject* decimal = py::object(py::module_::import("decimal").attr("Decimal")).release().ptr();  // immortal
  return py::reinterpret_borrow<py::object>(decimal)(money.to_usd_string());
}

py::object to_decimal_or_none(const std::optional<Money>& money) {
  return money ? to_decimal(*money) : py::none();
}

// An amount within 64 bits of units (±0.92 USD: a call's bound, most reservations) crosses as a machine
// integer; a larger one as its digits.
py::int_ to_units(const Money& money) {
  const int128 u = money.units();
  if (u >= LLONG_MIN && u <= LLONG_MAX) return py::int_(static_cast<long long>(u));
  return py::reinterpret_steal<py::int_>(PyLong_FromString(money.units_string().c_str(), nullptr, 10));
}

Money money_from_units(const py::int_& units) {
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(units.ptr(), &overflow);
  if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
  if (overflow == 0) return Money::from_units(static_cast<int128>(v));
  return Money::parse_units(py::str(units).cast<std::string>());
}

Money money_from_usd(const py::handle& usd) {
  if (py::isinstance<py::float_>(usd)) return Money::from_usd_price(usd.cast<double>());
  if (py::isinstance<py::bool_>(usd)) throw py::type_error("a USD amount must be a number, not a bool");
  // str(Decimal("0.00000008")) is "8E-8", which parse_usd refuses: a Decimal is written out in full.
  static PyObject* decimal = py::object(py::module_::import("decimal").attr("Decimal")).release().ptr();  // immortal
  std::string text = py::isinstance(usd, py::handle(decimal)) ? py::str("{:f}").attr("format")(usd).cast<std::string>()
                                                              : py::str(usd).cast<std::string>();
  return Money::parse_usd(text);
}

void register_money(py::module_& m) {
  m.attr("MONEY_DECIMALS") = Money::kDecimals;
  m.def(
      "normalise_price", [](double usd) { return to_units(Money::from_usd_price(usd)); }, py::arg("usd"),
      "A table price in USD as integer units of 1e-19 USD (12 significant digits).");
  m.def(
      "units_to_usd", [](const py::int_& units) { return to_decimal(money_from_units(units)); }, py::arg("units"),
      "Integer units of 1e-19 USD as an exact decimal.Decimal of USD.");
}

}  // namespace llmbill::bindings
