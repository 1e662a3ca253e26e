#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "llmbill/anthropic_chat_stream.hpp"
#include "register.hpp"

namespace llmbill::bindings {
namespace {

// The failure as Python reads it: "" for none.
const char* failure_name(StreamFailure f) {
  switch (f) {
    case StreamFailure::none: return "";
    case StreamFailure::error_event: return "error_event";
    case StreamFailure::unreadable_event: return "unreadable_event";
    case StreamFailure::line_too_long: return "line_too_long";
    case StreamFailure::event_too_long: return "event_too_long";
    case StreamFailure::ended_early: return "ended_early";
  }
  return "";
}

py::list as_list(const std::vector<std::string>& events) {
  py::list out(events.size());
  for (std::size_t i = 0; i < events.size(); ++i) out[i] = py::bytes(events[i]);
  return out;
}

}  // namespace

void register_anthropic_stream(py::module_& m) {
  py::class_<AnthropicChatStream>(m, "AnthropicChatStream",
                                  "Anthropic's Messages stream → OpenAI chat.completion.chunk events, read by read.")
      .def(py::init<std::string_view, bool, std::int64_t, std::string_view>(), py::arg("model"),
           py::arg("include_usage"), py::arg("created"), py::arg("json_tool"))
      .def(
          // A view of the bytes object (no copy); the GIL is kept, as a read is short work.
          "feed",
          [](AnthropicChatStream& s, const py::bytes& data) {
            std::vector<std::string> out;
            s.feed(data.cast<std::string_view>(), out);
            return as_list(out);
          },
          py::arg("data"), "The OpenAI events this read completes, each b'data: {...}\\n\\n'.")
      .def(
          "finish",
          [](AnthropicChatStream& s) {
            std::vector<std::string> out;
            s.finish(out);
            return as_list(out);
          },
          "The upstream ended: the last events, the usage chunk when asked for, then [DONE] (not after a failure).")
      .def_property_readonly("usage", &AnthropicChatStream::usage)
      .def_property_readonly("usage_error", &AnthropicChatStream::usage_error)
      .def_property_readonly("complete", &AnthropicChatStream::complete)
      .def_property_readonly("failure", [](const AnthropicChatStream& s) { return failure_name(s.failure()); })
      .def_property_readonly("failed_event",
                             [](const AnthropicChatStream& s) { return py::bytes(s.failed_event()); });
  m.def(
      "anthropic_finish_reason",
      [](const py::object& stop_reason, bool tool_calls) {
        std::optional<std::string> reason;
        if (!stop_reason.is_none()) {
          reason = py::isinstance<py::str>(stop_reason) ? stop_reason.cast<std::string>() : std::string();
        }
        return anthropic_finish_reason(reason, tool_calls);
      },
      py::arg("stop_reason"), py::arg("tool_calls"),
      "OpenAI's finish_reason for Anthropic's stop_reason (any value; a non-string one is a plain stop).");
}

}  // namespace llmbill::bindings
