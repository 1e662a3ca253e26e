#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "llmbill/cost.hpp"
#include "llmbill/ledger.hpp"
#include "register.hpp"

namespace llmbill::bindings {
namespace {

EntityKind kind_from_name(std::string_view name) {
  for (EntityKind k : {EntityKind::key, EntityKind::user, EntityKind::team, EntityKind::customer, EntityKind::model}) {
    if (entity_kind_name(k) == name) return k;
  }
  throw py::value_error("unknown entity kind '" + std::string(name) + "' (key, user, team, customer, model)");
}

py::list entries_to_list(const std::vector<std::pair<EntityId, Totals>>& entries) {
  py::list out;
  for (const auto& [id, totals] : entries) out.append(py::make_tuple(std::string(entity_kind_name(id.kind)), id.id, totals));
  return out;
}

}  // namespace

void register_ledger(py::module_& m) {
  py::class_<Totals>(m, "Totals", "Usage and exact spend accumulated for one entity.")
      .def_readonly("requests", &Totals::requests)
      .def_readonly("prompt_tokens", &Totals::prompt_tokens)
      .def_readonly("completion_tokens", &Totals::completion_tokens)
      .def_readonly("cached_tokens", &Totals::cached_tokens)
      .def_readonly("cache_creation_tokens", &Totals::cache_creation_tokens)
      .def_readonly("reasoning_tokens", &Totals::reasoning_tokens)
      .def_property_readonly("spend", [](const Totals& t) { return to_decimal(t.spend); })
      .def_property_readonly("spend_units", [](const Totals& t) { return to_units(t.spend); })
      .def("__repr__", [](const Totals& t) {
        return "Totals(requests=" + std::to_string(t.requests) + ", spend=Decimal('" + t.spend.to_usd_string() + "'))";
      });

  py::class_<Ledger>(m, "Ledger", "Thread-safe usage and spend per key, user, team, customer and model.")
      .def(py::init<>())
      .def(
          "record",
          [](Ledger& l, const Usage& usage, const py::object& cost, const std::string& model, const std::string& key,
             const std::string& user, const std::string& team, const std::string& customer) {
            // None: an unpriced call, counted in requests and tokens with no money. A decimal: the amount
            // billed (cost with its margin), which is what budgets count.
            Money total = cost.is_none()              ? Money()
                          : py::isinstance<Cost>(cost) ? cost.cast<const Cost&>().total
                                                       : money_from_usd(cost);
            l.record(Attribution{key, user, team, customer}, model, usage, total);
          },
          py::arg("usage"), py::arg("cost"), py::kw_only(), py::arg("model") = "", py::arg("key") = "",
          py::arg("user") = "", py::arg("team") = "", py::arg("customer") = "")
      .def(
          "get", [](const Ledger& l, const std::string& kind, const std::string& id) { return l.get(kind_from_name(kind), id); },
          py::arg("kind"), py::arg("id"))
      .def(
          "spend", [](const Ledger& l, const std::string& kind, const std::string& id) {
            return to_decimal(l.get(kind_from_name(kind), id).spend);
          },
          py::arg("kind"), py::arg("id"),
          "get(kind, id).spend without the Totals object: the budget checks read it twice a call.")
      .def("snapshot", [](const Ledger& l) { return entries_to_list(l.snapshot()); },
           "[(kind, id, Totals)] since the last drain, sorted.")
      .def("drain", [](Ledger& l) { return entries_to_list(l.drain()); },
           "Like snapshot(), and resets what it returns (for a persister).");
}

}  // namespace llmbill::bindings
