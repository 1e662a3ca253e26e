#include "llmbill/money.hpp"
#include "register.hpp"

namespace llmbill::bindings {

py::object to_decimal(const std::string& usd) {
  static py::object decimal = py::module_::import("decimal").attr("Decimal");
  return decimal(usd);
}

void register_money(py::module_& m) {
  m.attr("MONEY_DECIMALS") = Money::kDecimals;
  m.def(
      "normalise_price",
      [](double usd) { return py::int_(py::str(Money::from_usd_price(usd).units_string())); },
      py::arg("usd"), "A table price in USD as integer units of 1e-19 USD (12 significant digits).");
  m.def(
      "units_to_usd", [](const py::int_& units) { return to_decimal(Money::parse_units(py::str(units).cast<std::string>()).to_usd_string()); },
      py::arg("units"), "Integer units of 1e-19 USD as an exact decimal.Decimal of USD.");
}

}  // namespace llmbill::bindings
