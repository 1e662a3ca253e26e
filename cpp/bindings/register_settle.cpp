#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <optional>

#include "llmbill/settle.hpp"
#include "register.hpp"

namespace llmbill::bindings {

namespace {

std::int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

void register_settle(py::module_& m) {
  m.def(
      "settle_call",
      [](Ledger& ledger, Pipeline* pipeline, const ModelPrice* price, const Usage& usage, const std::string& call_id,
         std::int64_t timestamp_ms, const std::string& model, const std::string& key, const std::string& key_alias,
         const std::string& user_id, const std::string& team_id, const std::string& end_user_id,
         std::optional<std::string> call_type, std::int64_t start_us, const std::string& response_id,
         const std::string& tags_json) {
        CallRecord call{call_id, timestamp_ms, model, usage, Money(), false, key_alias, user_id, team_id, end_user_id};
        std::optional<SpendRowFields> row;
        if (call_type) row = SpendRowFields{std::move(*call_type), key, start_us, now_us(), response_id, tags_json};
        Settled settled;
        {
          py::gil_scoped_release release;  // the spool's append (and fsync per policy)
          settled = settle_call(ledger, pipeline, price, call, key, row ? &*row : nullptr);
        }
        return py::make_tuple(settled.cost ? py::cast(std::move(*settled.cost)) : py::none(), settled.spool_error,
                              row ? py::object(py::bytes(settled.row_line)) : py::object(py::none()));
      },
      py::arg("ledger"), py::arg("pipeline"), py::arg("price"), py::arg("usage"), py::arg("call_id"),
      py::arg("timestamp_ms"), py::arg("model"), py::arg("key"), py::arg("key_alias"), py::arg("user_id"),
      py::arg("team_id"), py::arg("end_user_id"), py::arg("call_type") = py::none(), py::arg("start_us") = 0,
      py::arg("response_id") = "", py::arg("tags_json") = "",
      "Prices a call (price None: unpriced), records it in the ledger under key, user, team, customer and "
      "model, and spools its Lago event (pipeline None: no Lago), in one step. Returns (cost, spool_error, "
      "row): cost None when unpriced; spool_error '' unless the event could not be spooled (the ledger has "
      "the call then); row, when call_type is given, the call's spend-log row as one line of JSON "
      "(store/log_line.py's form; end time now, start_us in microseconds since the epoch, tags_json a JSON "
      "array's text or ''), else None. Raises before recording anything when the usage cannot be priced "
      "or counted.");
}

}  // namespace llmbill::bindings
