#pragma once
#include <pybind11/pybind11.h>

#include <optional>
#include <string>

#include "llmbill/money.hpp"

namespace llmbill::bindings {
namespace py = pybind11;

void register_errors(py::module_& m);
void register_money(py::module_& m);
void register_prices(py::module_& m);
void register_usage(py::module_& m);
void register_relay(py::module_& m);
void register_anthropic_stream(py::module_& m);
void register_ledger(py::module_& m);
void register_pipeline(py::module_& m);
void register_settle(py::module_& m);
void register_guards(py::module_& m);

// Money crosses as a Python int of units or a decimal.Decimal of USD; never a float inside.
py::object to_decimal(const Money& money);
py::object to_decimal_or_none(const std::optional<Money>& money);
py::int_ to_units(const Money& money);
Money money_from_units(const py::int_& units);
// A USD amount given by a user: Decimal, str, int or float (a float goes through repr, so 1e-06
// means exactly 0.000001).
Money money_from_usd(const py::handle& usd);
}  // namespace llmbill::bindings
