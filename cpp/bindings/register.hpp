#pragma once
#include <pybind11/pybind11.h>

namespace llmbill::bindings {
namespace py = pybind11;

void register_errors(py::module_& m);
void register_money(py::module_& m);

// Money crosses as a Python int of units or a decimal.Decimal of USD; never a float inside.
py::object to_decimal(const std::string& usd);
}  // namespace llmbill::bindings
