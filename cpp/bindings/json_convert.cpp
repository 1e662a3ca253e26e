#include "json_convert.hpp"

namespace py = pybind11;

namespace llmbill::bindings {

nlohmann::json to_json(py::handle value) {
  if (value.is_none()) return nullptr;
  if (py::isinstance<py::bool_>(value)) return value.cast<bool>();
  if (py::isinstance<py::int_>(value)) {
    // Out-of-range ints become doubles so that the usage parser can reject them with a clear error.
    try {
      return value.cast<long long>();
    } catch (const py::cast_error&) {
      return value.cast<double>();
    }
  }
  if (py::isinstance<py::float_>(value)) return value.cast<double>();
  if (py::isinstance<py::str>(value)) return value.cast<std::string>();
  if (py::isinstance<py::dict>(value)) {
    nlohmann::json out = nlohmann::json::object();
    for (auto item : value.cast<py::dict>()) out[py::str(item.first).cast<std::string>()] = to_json(item.second);
    return out;
  }
  if (py::isinstance<py::list>(value) || py::isinstance<py::tuple>(value)) {
    nlohmann::json out = nlohmann::json::array();
    for (auto item : value) out.push_back(to_json(item));
    return out;
  }
  throw py::type_error("cannot convert " + py::repr(value.get_type()).cast<std::string>() + " to JSON");
}

py::object from_json(const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::null: return py::none();
    case nlohmann::json::value_t::boolean: return py::bool_(value.get<bool>());
    case nlohmann::json::value_t::number_integer: return py::int_(value.get<long long>());
    case nlohmann::json::value_t::number_unsigned: return py::int_(value.get<unsigned long long>());
    case nlohmann::json::value_t::number_float: return py::float_(value.get<double>());
    case nlohmann::json::value_t::string: return py::str(value.get_ref<const std::string&>());
    case nlohmann::json::value_t::array: {
      py::list out;
      for (const auto& v : value) out.append(from_json(v));
      return std::move(out);
    }
    case nlohmann::json::value_t::object: {
      py::dict out;
      for (const auto& [k, v] : value.items()) out[py::str(k)] = from_json(v);
      return std::move(out);
    }
    default: return py::none();
  }
}

}  // namespace llmbill::bindings
