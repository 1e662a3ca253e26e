#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include "llmbill/cost.hpp"
#include "llmbill/prices.hpp"
#include "register.hpp"

namespace llmbill::bindings {
namespace {

std::optional<Money> optional_usd(const py::object& v) {
  if (v.is_none()) return std::nullopt;
  return money_from_usd(v);
}

CustomPrices custom_prices(const py::object& input, const py::object& output, const py::object& cache_read,
                           const py::object& cache_creation, const py::object& per_request) {
  return {optional_usd(input), optional_usd(output), optional_usd(cache_read), optional_usd(cache_creation),
          optional_usd(per_request)};
}

}  // namespace

void register_prices(py::module_& m) {
  py::class_<ModelPrice>(m, "ModelPrice", "One model's prices (USD per token as Decimal; None when absent).")
      .def_readonly("name", &ModelPrice::name)
      .def_readonly("provider", &ModelPrice::provider)
      .def_readonly("mode", &ModelPrice::mode)
      .def_readonly("custom", &ModelPrice::custom)
      .def_readonly("max_input_tokens", &ModelPrice::max_input_tokens)
      .def_readonly("max_output_tokens", &ModelPrice::max_output_tokens)
      .def_property_readonly("priced", &ModelPrice::priced)
      .def_property_readonly("input_cost_per_token", [](const ModelPrice& p) { return to_decimal_or_none(p.base.input); })
      .def_property_readonly("output_cost_per_token", [](const ModelPrice& p) { return to_decimal_or_none(p.base.output); })
      .def_property_readonly("cache_read_input_token_cost",
                             [](const ModelPrice& p) { return to_decimal_or_none(p.base.cache_read); })
      .def_property_readonly("cache_creation_input_token_cost",
                             [](const ModelPrice& p) { return to_decimal_or_none(p.base.cache_creation); })
      .def_property_readonly("cache_creation_input_token_cost_above_1hr",
                             [](const ModelPrice& p) { return to_decimal_or_none(p.base.cache_creation_1h); })
      .def_property_readonly("input_cost_per_request", [](const ModelPrice& p) { return to_decimal_or_none(p.per_request); })
      .def_property_readonly("tier_thresholds", [](const ModelPrice& p) {
        std::vector<std::int64_t> out;
        for (const auto& t : p.tiers) out.push_back(t.above_tokens);
        return out;
      })
      .def("cost", &compute_cost, py::arg("usage"), "The exact, itemised cost of one call at these prices.")
      .def(
          "upper_bound",
          [](const ModelPrice& p, std::int64_t prompt_tokens, std::int64_t completion_tokens) {
            return to_decimal(cost_upper_bound(p, prompt_tokens, completion_tokens));
          },
          py::arg("prompt_tokens"), py::arg("completion_tokens"),
          "The most a call of at most these token counts can cost (USD), whatever its usage's split.")
      .def(
          "upper_bound_units",
          [](const ModelPrice& p, std::int64_t prompt_tokens, std::int64_t completion_tokens) {
            return to_units(cost_upper_bound(p, prompt_tokens, completion_tokens));
          },
          py::arg("prompt_tokens"), py::arg("completion_tokens"),
          "upper_bound() in integer units of 1e-19 USD (what the guards reserve, with no Decimal made).")
      .def("__repr__", [](const ModelPrice& p) { return "ModelPrice(" + p.name + ")"; });

  py::class_<Cost>(m, "Cost", "An exact, itemised cost in USD (decimal.Decimal); float(cost) at the edge only.")
      .def_property_readonly("input", [](const Cost& c) { return to_decimal(c.input); })
      .def_property_readonly("cache_read", [](const Cost& c) { return to_decimal(c.cache_read); })
      .def_property_readonly("cache_creation", [](const Cost& c) { return to_decimal(c.cache_creation); })
      .def_property_readonly("cache_creation_1h", [](const Cost& c) { return to_decimal(c.cache_creation_1h); })
      .def_property_readonly("output", [](const Cost& c) { return to_decimal(c.output); })
      .def_property_readonly("reasoning", [](const Cost& c) { return to_decimal(c.reasoning); })
      .def_property_readonly("per_request", [](const Cost& c) { return to_decimal(c.per_request); })
      .def_property_readonly("total", [](const Cost& c) { return to_decimal(c.total); })
      .def_property_readonly("total_units", [](const Cost& c) { return to_units(c.total); })
      .def_property_readonly("total_str", [](const Cost& c) { return c.total.to_usd_string(); })
      .def_readonly("tier_above_tokens", &Cost::tier_above_tokens)
      .def("__float__", [](const Cost& c) { return c.total.to_usd_double(); })
      .def("__repr__", [](const Cost& c) { return "Cost(total=Decimal('" + c.total.to_usd_string() + "'))"; });

  py::class_<PriceTable, std::shared_ptr<PriceTable>>(m, "PriceTable",
                                                      "A LiteLLM-format model price table, normalised to exact money.")
      .def_static(
          "load",
          [](const std::vector<std::filesystem::path>& paths) {
            py::gil_scoped_release release;  // parsing megabytes of JSON touches no Python object
            return std::make_shared<PriceTable>(PriceTable::load_files(paths));
          },
          py::arg("paths"), "Loads files in order; later files override earlier ones field by field.")
      .def_static(
          "from_json",
          [](const std::vector<std::string>& texts) {
            py::gil_scoped_release release;  // as above
            return std::make_shared<PriceTable>(PriceTable::from_json_texts(texts));
          },
          py::arg("texts"))
      .def("find", &PriceTable::find, py::arg("model"), py::return_value_policy::copy)
      .def("resolve", &PriceTable::resolve, py::arg("model"), py::return_value_policy::copy)
      .def(
          "resolve_with",
          [](const PriceTable& t, const std::string& model, const py::object& input, const py::object& output,
             const py::object& cache_read, const py::object& cache_creation, const py::object& per_request) {
            return t.resolve_with(model, custom_prices(input, output, cache_read, cache_creation, per_request));
          },
          py::arg("model"), py::kw_only(), py::arg("input_cost_per_token") = py::none(),
          py::arg("output_cost_per_token") = py::none(), py::arg("cache_read_input_token_cost") = py::none(),
          py::arg("cache_creation_input_token_cost") = py::none(), py::arg("input_cost_per_request") = py::none())
      .def(
          "cost", [](const PriceTable& t, const std::string& model, const Usage& usage) {
            return compute_cost(t.resolve(model), usage);
          },
          py::arg("model"), py::arg("usage"))
      .def("names", &PriceTable::names)
      .def("__len__", &PriceTable::size)
      .def("__contains__", [](const PriceTable& t, const std::string& model) { return t.find(model) != nullptr; });
}

}  // namespace llmbill::bindings
