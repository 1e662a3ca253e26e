// The extension llmbill._core: assembles one register_* per area. No logic here.
#include <pybind11/pybind11.h>

#include "register.hpp"

PYBIND11_MODULE(_core, m) {
  m.doc() = "llmbill's C++ core (private: import names from llmbill)";
  llmbill::bindings::register_errors(m);
  llmbill::bindings::register_money(m);
  llmbill::bindings::register_usage(m);
  llmbill::bindings::register_relay(m);
  llmbill::bindings::register_anthropic_stream(m);
  llmbill::bindings::register_prices(m);
  llmbill::bindings::register_ledger(m);
  llmbill::bindings::register_pipeline(m);
  llmbill::bindings::register_settle(m);
  llmbill::bindings::register_guards(m);
}
