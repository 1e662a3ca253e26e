// The in-process limiter and the guard book (llmbill/limiter.hpp, llmbill/guard_book.hpp). Money
// crosses as Python ints of units here: the proxy converts a call's amounts once, and a slot is a
// tuple (entity, amount, headroom or None, rpm, tpm, parallel, tpd). Neither releases the GIL: each
// call is a few hundred nanoseconds of work on the event loop's thread.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "llmbill/guard_book.hpp"
#include "llmbill/limiter.hpp"
#include "register.hpp"

namespace llmbill::bindings {
namespace {

using OptInt = std::optional<std::int64_t>;
using SlotTuple = std::tuple<std::string, py::int_, std::optional<py::int_>, OptInt, OptInt, OptInt, OptInt>;

std::vector<LimitSlot> slots_from(const std::vector<SlotTuple>& tuples) {
  std::vector<LimitSlot> slots;
  slots.reserve(tuples.size());
  for (const auto& [entity, amount, headroom, rpm, tpm, parallel, tpd] : tuples) {
    slots.push_back(LimitSlot{entity, money_from_units(amount),
                              headroom ? std::optional<Money>(money_from_units(*headroom)) : std::nullopt, rpm, tpm, parallel,
                              tpd});
  }
  return slots;
}

py::tuple slot_tuple(const LimitSlot& s) {
  return py::make_tuple(s.entity, to_units(s.amount), s.headroom ? py::object(to_units(*s.headroom)) : py::none(),
                        s.rpm, s.tpm, s.parallel, s.tpd);
}

EntityKind guarded_kind(std::string_view name) {
  for (EntityKind k : {EntityKind::key, EntityKind::user, EntityKind::team, EntityKind::customer}) {
    if (entity_kind_name(k) == name) return k;
  }
  throw py::value_error("a guarded entity is a key, user, team or customer, not '" + std::string(name) + "'");
}

}  // namespace

void register_guards(py::module_& m) {
  py::class_<Limiter>(m, "Limiter",
                      "This process's reservations, minute and day counts and calls in flight, per entity.")
      .def(py::init<>())
      .def(
          "try_admit",
          [](Limiter& l, const std::vector<SlotTuple>& slots, double now) -> py::object {
            auto refused = l.try_admit(slots_from(slots), now);
            if (!refused) return py::none();
            return py::make_tuple(refused->index, std::string(limit_kind_name(refused->limit)),
                                  to_units(refused->reserved), refused->wait_s);
          },
          py::arg("slots"), py::arg("now"),
          "None when every slot was taken; else (index, limit, reserved units, wait seconds) and nothing taken.")
      .def(
          "release",
          [](Limiter& l, const std::vector<SlotTuple>& slots, std::int64_t tokens, double now) {
            l.release(slots_from(slots), tokens, now);
          },
          py::arg("slots"), py::arg("tokens"), py::arg("now"))
      .def(
          "rate_check",
          [](Limiter& l, const std::string& entity, OptInt rpm, OptInt tpm, OptInt parallel, double now) -> py::object {
            auto refused = l.rate_check(entity, rpm, tpm, parallel, now);
            if (!refused) return py::none();
            return py::make_tuple(std::string(limit_kind_name(refused->first)), refused->second);
          },
          py::arg("entity"), py::arg("rpm"), py::arg("tpm"), py::arg("parallel"), py::arg("now"))
      .def("count_request", &Limiter::count_request, py::arg("entity"), py::arg("now"))
      .def("count_tokens", &Limiter::count_tokens, py::arg("entity"), py::arg("tokens"), py::arg("now"))
      .def(
          "reserved_for", [](const Limiter& l, const std::string& entity) { return to_units(l.reserved_for(entity)); },
          py::arg("entity"))
      .def("in_flight", &Limiter::in_flight, py::arg("entity"))
      .def(
          "minute_of",
          [](const Limiter& l, const std::string& entity) {
            MinuteCount c = l.minute_of(entity);
            return py::make_tuple(c.minute, c.requests, c.tokens);
          },
          py::arg("entity"), "(minute, requests, tokens) as last counted; minute -1 when none.")
      .def("day_tokens", &Limiter::day_tokens, py::arg("entity"), py::arg("now"))
      .def("minutes_held", &Limiter::minutes_held)
      .def("days_held", &Limiter::days_held)
      .def("reservations_held", &Limiter::reservations_held)
      .def("in_flight_held", &Limiter::in_flight_held);

  py::class_<GuardBook>(m, "GuardBook", "The guards' state for a proxy call: compiled entity limits, checked in one step.")
      .def(py::init<Limiter&, const Ledger&>(), py::arg("limiter"), py::arg("ledger"), py::keep_alive<1, 2>(),
           py::keep_alive<1, 3>())
      .def(
          "put",
          [](GuardBook& b, const std::string& kind, const std::string& id, std::uint64_t generation,
             const std::optional<py::int_>& max_budget, const py::int_& stored_spend, std::optional<double> reset_at,
             bool windowed, OptInt rpm, OptInt tpm, OptInt parallel, OptInt tpd, std::optional<double> valid_until,
             bool plain, std::vector<std::string> limited_models, std::optional<std::vector<std::string>> allowed_models,
             std::vector<std::string> members_with_limits) {
            EntityGuard g;
            g.generation = generation;
            if (max_budget) g.max_budget = money_from_units(*max_budget);
            g.stored_spend = money_from_units(stored_spend);
            g.reset_at = reset_at;
            g.windowed = windowed;
            g.rpm = rpm;
            g.tpm = tpm;
            g.parallel = parallel;
            g.tpd = tpd;
            g.valid_until = valid_until;
            g.plain = plain;
            g.limited_models = std::move(limited_models);
            g.allowed_models = std::move(allowed_models);
            g.members_with_limits = std::move(members_with_limits);
            b.put(guarded_kind(kind), id, std::move(g));
          },
          py::arg("kind"), py::arg("id"), py::arg("generation"), py::arg("max_budget"), py::arg("stored_spend"),
          py::arg("reset_at"), py::arg("windowed"), py::arg("rpm"), py::arg("tpm"), py::arg("parallel"), py::arg("tpd"),
          py::arg("valid_until"), py::arg("plain"), py::arg("limited_models"), py::arg("allowed_models"),
          py::arg("members_with_limits"))
      .def(
          "admit",
          [](GuardBook& b, std::string_view key, std::string_view user, std::string_view team, std::string_view customer,
             std::string_view model, const py::int_& amount, double now, std::uint64_t generation) -> long long {
            GuardBook::Result r = b.admit(GuardedCall{key, user, team, customer, model, money_from_units(amount), now, generation});
            switch (r.outcome) {
              case GuardBook::Outcome::admitted: return static_cast<long long>(r.handle);
              case GuardBook::Outcome::slow: return 0;
              case GuardBook::Outcome::stale: return -1;
              case GuardBook::Outcome::refused: return -2;
            }
            return 0;
          },
          py::arg("key"), py::arg("user"), py::arg("team"), py::arg("customer"), py::arg("model"), py::arg("amount"),
          py::arg("now"), py::arg("generation"),
          "A handle (> 0) when admitted; 0: the slow way decides; -1: an entity is not compiled at this generation; "
          "-2: a limit refuses the call (nothing held).")
      .def("release", &GuardBook::release, py::arg("handle"), py::arg("tokens"), py::arg("now"))
      .def(
          "slots_of",
          [](const GuardBook& b, std::uint64_t handle) {
            py::list out;
            for (const LimitSlot& s : b.slots_of(handle)) out.append(slot_tuple(s));
            return out;
          },
          py::arg("handle"))
      .def("entries", &GuardBook::entries)
      .def("calls_held", &GuardBook::calls_held)
      .def_static("entity_key", &GuardBook::entity_key, py::arg("kind"), py::arg("id"));
}

}  // namespace llmbill::bindings
