#pragma once
#include <pybind11/pybind11.h>

#include <nlohmann/json.hpp>

namespace llmbill::bindings {
// dict/list/str/int/float/bool/None → JSON (TypeError for anything else); bytes/str of JSON text are
// parsed by the callers, not here.
nlohmann::json to_json(pybind11::handle value);
pybind11::object from_json(const nlohmann::json& value);
}  // namespace llmbill::bindings
