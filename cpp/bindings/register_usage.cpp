#include <pybind11/pybind11.h>
#include <pybind11/operators.h>
#include <pybind11/stl.h>

#include "json_convert.hpp"
#include "llmbill/usage.hpp"
#include "register.hpp"

namespace llmbill::bindings {
namespace {

// Response text (str/bytes) or an already-decoded dict.
Usage usage_from_object(const py::handle& obj) {
  if (py::isinstance<py::bytes>(obj)) return usage_from_response(obj.cast<std::string_view>());
  if (py::isinstance<py::str>(obj)) return usage_from_response(obj.cast<std::string>());
  return usage_from_json(to_json(obj));
}

// A whole stream is read in place: bytes, or the UTF-8 that a str caches, viewed without a copy.
std::string_view as_text(const py::handle& obj) { return obj.cast<std::string_view>(); }

}  // namespace

void register_usage(py::module_& m) {
  py::class_<Usage>(m, "Usage", "Token usage of one call, normalised (details are parts of the totals).")
      .def(py::init([](std::int64_t prompt, std::int64_t completion, std::int64_t cached, std::int64_t creation,
                       std::int64_t creation_1h, std::int64_t reasoning, bool estimated) {
             Usage u{.prompt_tokens = prompt,
                     .completion_tokens = completion,
                     .cached_tokens = cached,
                     .cache_creation_tokens = creation,
                     .cache_creation_1h_tokens = creation_1h,
                     .reasoning_tokens = reasoning,
                     .estimated = estimated};
             u.validate();
             return u;
           }),
           py::kw_only(), py::arg("prompt_tokens") = 0, py::arg("completion_tokens") = 0,
           py::arg("cached_tokens") = 0, py::arg("cache_creation_tokens") = 0, py::arg("cache_creation_1h_tokens") = 0,
           py::arg("reasoning_tokens") = 0, py::arg("estimated") = false)
      .def_readonly("prompt_tokens", &Usage::prompt_tokens)
      .def_readonly("completion_tokens", &Usage::completion_tokens)
      .def_readonly("cached_tokens", &Usage::cached_tokens)
      .def_readonly("cache_creation_tokens", &Usage::cache_creation_tokens)
      .def_readonly("cache_creation_1h_tokens", &Usage::cache_creation_1h_tokens)
      .def_readonly("reasoning_tokens", &Usage::reasoning_tokens)
      .def_readonly("estimated", &Usage::estimated)
      .def_property_readonly("total_tokens", &Usage::total_tokens)
      .def_static("from_response", &usage_from_object, py::arg("response"),
                  "Usage from a provider reply: JSON text (str/bytes) or a dict, OpenAI or Anthropic.")
      .def_static(
          "from_sse", [](const py::handle& stream) { return usage_from_sse(as_text(stream)); }, py::arg("stream"),
          "Usage from a whole server-sent-events body (OpenAI final usage chunk or Anthropic events).")
      .def(py::self == py::self)
      .def("__repr__", [](const Usage& u) {
        return "Usage(prompt_tokens=" + std::to_string(u.prompt_tokens) +
               ", completion_tokens=" + std::to_string(u.completion_tokens) +
               ", cached_tokens=" + std::to_string(u.cached_tokens) +
               ", cache_creation_tokens=" + std::to_string(u.cache_creation_tokens) +
               (u.cache_creation_1h_tokens ? ", cache_creation_1h_tokens=" + std::to_string(u.cache_creation_1h_tokens)
                                           : std::string()) +
               ", reasoning_tokens=" + std::to_string(u.reasoning_tokens) +
               (u.estimated ? ", estimated=True)" : ")");
      });

  py::class_<SseUsageScanner>(m, "SseUsageScanner", "Finds the usage in a stream fed chunk by chunk.")
      .def(py::init<>())
      .def(
          // A view of the bytes object (no copy); the GIL is kept, as a feed is short.
          "feed", [](SseUsageScanner& s, const py::bytes& chunk) { s.feed(chunk.cast<std::string_view>()); },
          py::arg("chunk"))
      .def_property_readonly("usage", [](const SseUsageScanner& s) { return s.usage(); })
      .def_property_readonly("last_event_was_usage_only", &SseUsageScanner::last_event_was_usage_only);
}

}  // namespace llmbill::bindings
