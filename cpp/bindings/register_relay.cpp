#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "llmbill/sse_relay.hpp"
#include "register.hpp"

namespace llmbill::bindings {

void register_relay(py::module_& m) {
  py::class_<SseEventRelay>(m, "SseEventRelay",
                            "Relays an SSE stream read by read: complete events, usage scanned, model renamed.")
      .def(py::init<std::string_view, std::string_view, bool>(), py::arg("upstream_model"), py::arg("client_model"),
           py::arg("strip_usage_only"))
      .def(
          // A view of the bytes object (no copy); the GIL is kept, as a read is short work.
          "feed",
          [](SseEventRelay& r, const py::bytes& data) {
            const std::string out = r.feed(data.cast<std::string_view>());
            return py::bytes(out);
          },
          py::arg("data"), "The complete events this read finishes, for the client (b'' when none).")
      .def(
          "tail", [](SseEventRelay& r) { return py::bytes(r.tail()); },
          "What is left when the stream ends (an unterminated last event), as it came.")
      .def_property_readonly("usage", [](const SseEventRelay& r) { return r.usage(); })
      .def_property_readonly("data_events", &SseEventRelay::data_events)
      .def_property_readonly("response_id", &SseEventRelay::response_id);
}

}  // namespace llmbill::bindings
