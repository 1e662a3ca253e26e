#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "llmbill/settle.hpp"
#include "register.hpp"

namespace llmbill::bindings {

void register_settle(py::module_& m) {
  m.def(
      "settle_call",
      [](Ledger& ledger, Pipeline* pipeline, const ModelPrice* price, const Usage& usage, const std::string& call_id,
         std::int64_t timestamp_ms, const std::string& model, const std::string& key, const std::string& key_alias,
         const std::string& user_id, const std::string& team_id, const std::string& end_user_id) {
        CallRecord call{call_id, timestamp_ms, model, usage, Money(), false, key_alias, user_id, team_id, end_user_id};
        Settled settled;
        {
          py::gil_scoped_release release;  // the spool's append (and fsync per policy)
          settled = settle_call(ledger, pipeline, price, call, key);
        }
        return py::make_tuple(settled.cost ? py::cast(std::move(*settled.cost)) : py::none(), settled.spool_error);
      },
      py::arg("ledger"), py::arg("pipeline"), py::arg("price"), py::arg("usage"), py::arg("call_id"),
      py::arg("timestamp_ms"), py::arg("model"), py::arg("key"), py::arg("key_alias"), py::arg("user_id"),
      py::arg("team_id"), py::arg("end_user_id"),
      "Prices a call (price None: unpriced), records it in the ledger under key, user, team, customer and "
      "model, and spools its Lago event (pipeline None: no Lago), in one step. Returns (cost, spool_error): "
      "cost None when unpriced; spool_error '' unless the event could not be spooled (the ledger has the "
      "call then). Raises before recording anything when the usage cannot be priced or counted.");
}

}  // namespace llmbill::bindings
