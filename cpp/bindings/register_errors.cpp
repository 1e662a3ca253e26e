#include "llmbill/errors.hpp"
#include "register.hpp"

namespace llmbill::bindings {
namespace {

// Raw, intentionally immortal class objects: a static py::object would be released after the
// interpreter is gone.
PyObject* g_error = nullptr;
PyObject* g_unknown_model = nullptr;
PyObject* g_price_table = nullptr;
PyObject* g_usage = nullptr;
PyObject* g_overflow = nullptr;

PyObject* add_exception(py::module_& m, const char* name, PyObject* base) {
  std::string qualified = std::string("llmbill._core.") + name;
  PyObject* cls = PyErr_NewException(qualified.c_str(), base, nullptr);
  if (cls == nullptr) throw py::error_already_set();
  m.attr(name) = py::reinterpret_borrow<py::object>(cls);
  return cls;
}

}  // namespace


void register_errors(py::module_& m) {
  g_error = add_exception(m, "Error", PyExc_Exception);
  g_unknown_model = add_exception(m, "UnknownModelError", g_error);
  g_price_table = add_exception(m, "PriceTableError", g_error);
  g_usage = add_exception(m, "UsageError", g_error);
  g_overflow = add_exception(m, "MoneyOverflowError", g_error);
  // The one seam where C++ errors become Python exceptions of the same name.
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const UnknownModelError& e) {
      PyErr_SetString(g_unknown_model, e.what());
    } catch (const PriceTableError& e) {
      PyErr_SetString(g_price_table, e.what());
    } catch (const UsageError& e) {
      PyErr_SetString(g_usage, e.what());
    } catch (const MoneyOverflowError& e) {
      PyErr_SetString(g_overflow, e.what());
    } catch (const Error& e) {
      PyErr_SetString(g_error, e.what());
    }
  });
}

}  // namespace llmbill::bindings
