#include <pybind11/chrono.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include "llmbill/cost.hpp"
#include "llmbill/pipeline.hpp"
#include "register.hpp"

namespace llmbill::bindings {
namespace {

FsyncPolicy fsync_policy(const std::string& name) {
  if (name == "always" || name == "every_record") return FsyncPolicy::every_record;
  if (name == "interval") return FsyncPolicy::interval;
  if (name == "never") return FsyncPolicy::never;
  throw py::value_error("fsync must be 'always', 'interval' or 'never', not '" + name + "'");
}

std::chrono::milliseconds ms(double seconds) {
  return std::chrono::milliseconds(static_cast<long long>(seconds * 1000));
}

std::unique_ptr<Pipeline> make_pipeline(const std::filesystem::path& spool_dir, const std::vector<std::string>& codes,
                                        const std::string& charge_by, const std::string& api_base,
                                        const std::string& api_key, const std::filesystem::path& sink_file,
                                        const std::string& fsync, double fsync_interval, std::uint64_t max_spool_bytes,
                                        std::uint64_t spool_reserve_bytes, std::size_t max_batch, double flush_interval,
                                        double backoff_base, double backoff_cap, double config_error_retry, double timeout,
                                        std::size_t max_unspooled, bool gate_subscriptions) {
  PipelineOptions o;
  o.gate_subscriptions = gate_subscriptions;
  o.events.codes = codes;
  o.events.charge_by = parse_charge_by(charge_by);
  o.spool.dir = spool_dir;
  o.spool.fsync = fsync_policy(fsync);
  o.spool.fsync_interval = ms(fsync_interval);
  o.spool.max_bytes = max_spool_bytes;
  o.spool.reserve_bytes = spool_reserve_bytes;
  o.max_unspooled = max_unspooled;
  o.max_batch = max_batch;
  o.flush_interval = ms(flush_interval);
  o.backoff_base = ms(backoff_base);
  o.backoff_cap = ms(backoff_cap);
  o.config_error_retry = ms(config_error_retry);
  std::unique_ptr<Transport> transport;
  if (!api_base.empty()) {
    transport = make_lago_transport(api_base, api_key, ms(timeout));
  } else {
    if (sink_file.empty()) throw py::value_error("either api_base (Lago) or sink_file is required");
    transport = make_file_transport(sink_file);
  }
  py::gil_scoped_release release;  // spool recovery reads the disk; starts the sender thread
  return std::make_unique<Pipeline>(std::move(o), std::move(transport));
}

py::dict stats_dict(const PipelineStats& s) {
  py::dict d;
  d["enqueued"] = s.enqueued;
  d["recovered"] = s.recovered;
  d["delivered"] = s.delivered;
  d["duplicates"] = s.duplicates;
  d["retried"] = s.retried;
  d["dead_lettered"] = s.dead_lettered;
  d["no_charge_id"] = s.no_charge_id;
  d["held"] = s.held;
  d["batches"] = s.batches;
  d["config_errors"] = s.config_errors;
  d["pending"] = s.pending;
  d["unspooled"] = s.unspooled;
  d["spool_failures"] = s.spool_failures;
  d["sender_errors"] = s.sender_errors;
  d["spool_bytes"] = s.spool_bytes;
  d["spool_free_bytes"] = s.spool_free_bytes;
  d["accepting"] = s.accepting;
  d["oldest_pending_age_s"] = s.oldest_pending_age_s;
  d["last_error"] = s.last_error;
  return d;
}

py::dict dead_letter_dict(const DeadLetter& d) {
  py::dict out;
  out["id"] = d.id;
  out["event"] = d.event_json;
  out["reason"] = d.reason;
  out["reply"] = d.reply;
  out["at"] = d.at_unix;
  return out;
}

py::list dead_letter_list(const std::vector<DeadLetter>& letters) {
  py::list out;
  for (const auto& d : letters) out.append(dead_letter_dict(d));
  return out;
}

// None: no margin applies, the event carries no billed_amount.
std::optional<Money> billed_arg(const py::object& amount) {
  if (amount.is_none()) return std::nullopt;
  return money_from_usd(amount);
}

Money cost_arg(const py::object& cost) {
  if (cost.is_none()) return Money();
  return py::isinstance<Cost>(cost) ? cost.cast<const Cost&>().total : money_from_usd(cost);
}

}  // namespace

void register_pipeline(py::module_& m) {
  py::register_exception<SpoolFullError>(m, "SpoolFullError", m.attr("Error"));

  py::class_<Pipeline>(m, "Pipeline", "Lago events: durable spool, background batching sender, retries.")
      .def(py::init(&make_pipeline), py::kw_only(), py::arg("spool_dir"), py::arg("event_codes"),
           py::arg("charge_by") = "end_user_id", py::arg("api_base") = "", py::arg("api_key") = "",
           py::arg("sink_file") = std::filesystem::path(), py::arg("fsync") = "interval",
           py::arg("fsync_interval") = 0.02, py::arg("max_spool_bytes") = std::uint64_t{1} << 30,
           py::arg("spool_reserve_bytes") = std::uint64_t{4} << 20, py::arg("max_batch") = 100,
           py::arg("flush_interval") = 0.05, py::arg("backoff_base") = 0.1, py::arg("backoff_cap") = 30.0,
           py::arg("config_error_retry") = 15.0, py::arg("timeout") = 10.0, py::arg("max_unspooled") = 10000,
           py::arg("gate_subscriptions") = false)
      .def("can_accept", &Pipeline::can_accept,
           "Whether a new billable call's events can be made durable now (spool reserve free, last append "
           "succeeded, nothing held in memory). Cheap: an atomic load and an uncontended lock.")
      .def(
          "submit",
          [](Pipeline& p, const std::string& call_id, std::int64_t timestamp_ms, const std::string& model,
             const Usage& usage, const py::object& cost, bool unpriced, const std::string& key_alias,
             const std::string& user_id, const std::string& team_id, const std::string& end_user_id,
             const py::object& billed_amount) {
            CallRecord call{call_id, timestamp_ms, model, usage, cost_arg(cost), unpriced, key_alias, user_id, team_id, end_user_id};
            call.billed_amount = billed_arg(billed_amount);
            py::gil_scoped_release release;  // spool append (and fsync per policy)
            return p.submit(call);
          },
          py::kw_only(), py::arg("call_id"), py::arg("timestamp_ms"), py::arg("model"), py::arg("usage"),
          py::arg("cost") = py::none(), py::arg("unpriced") = false, py::arg("key_alias") = "", py::arg("user_id") = "",
          py::arg("team_id") = "", py::arg("end_user_id") = "", py::arg("billed_amount") = py::none(),
          "Spools the call's Lago event(s) and queues them; returns their transaction ids.")
      .def(
          "submit_event",
          [](Pipeline& p, const std::string& event_json) {
            py::gil_scoped_release release;  // spool append (or a dead-letter fsync for a held code)
            return p.submit_event(event_json);
          },
          py::arg("event_json"),
          "Spools an already-built event unchanged; False when its code is held (then it is dead-lettered).")
      .def("hold_codes", &Pipeline::hold_codes, py::arg("code_reasons"),
           "Codes whose events are dead-lettered instead of sent (code -> reason); replaces the set.")
      .def("held_codes", &Pipeline::held_codes)
      .def("set_subscriptions", &Pipeline::set_subscriptions, py::arg("id_reasons"),
           "Billed ids as Lago knows them: '' (active, sent) or the reason to hold their events; merged.")
      .def("unverified_subscriptions", &Pipeline::unverified_subscriptions,
           "Billed ids the sender waits on (gate_subscriptions) -> their oldest event's timestamp (ms).")
      .def("held_subscriptions", &Pipeline::held_subscriptions)
      .def(
          "flush",
          [](Pipeline& p, double timeout) {
            py::gil_scoped_release release;  // waits on the sender thread
            return p.flush(ms(timeout));
          },
          py::arg("timeout") = 10.0)
      .def(
          "close",
          [](Pipeline& p, double timeout) {
            py::gil_scoped_release release;  // flushes and joins the sender thread
            return p.close(ms(timeout));
          },
          py::arg("timeout") = 5.0)
      .def("stats", [](const Pipeline& p) { return stats_dict(p.stats()); })
      .def("warnings", &Pipeline::warnings)
      .def("describe", &Pipeline::describe)
      .def("dead_letters", [](Pipeline& p) { return dead_letter_list(p.dead_letters().list()); });

  // The dead-letter file of any spool (the CLI reads every slot's, proxies may be running: the
  // store's flock orders writers across processes).
  py::class_<DeadLetterStore>(m, "DeadLetterStore", "Events Lago refused for good, kept in a JSON-lines file.")
      .def(py::init<std::filesystem::path>(), py::arg("file"))
      .def("list",
           [](const DeadLetterStore& s) {
             std::vector<DeadLetter> letters;
             {
               py::gil_scoped_release release;  // reads the whole file
               letters = s.list();
             }
             return dead_letter_list(letters);
           })
      .def(
          "get",
          [](const DeadLetterStore& s, const std::string& id) -> py::object {
            auto d = s.get(id);
            return d ? py::object(dead_letter_dict(*d)) : py::object(py::none());
          },
          py::arg("id"))
      .def(
          "remove",
          [](DeadLetterStore& s, const std::string& id, std::optional<double> added_up_to) {
            py::gil_scoped_release release;  // rewrites the file: temp file, fsync, rename
            return s.remove(id, added_up_to);
          },
          py::arg("id"), py::arg("added_up_to") = py::none(),
          "Drops the lines with this id (only those added at or before added_up_to, when given).")
      .def("count", &DeadLetterStore::count)
      .def("oldest_at", &DeadLetterStore::oldest_at);

  m.def(
      "build_lago_events",
      [](const std::string& call_id, std::int64_t timestamp_ms, const std::string& model, const Usage& usage,
         const py::object& cost, const std::vector<std::string>& codes, const std::string& charge_by,
         const std::string& key_alias, const std::string& user_id, const std::string& team_id,
         const std::string& end_user_id, bool unpriced, const py::object& billed_amount) {
        CallRecord call{call_id, timestamp_ms, model, usage, cost_arg(cost), unpriced, key_alias, user_id, team_id, end_user_id};
        call.billed_amount = billed_arg(billed_amount);
        BuiltEvents built = build_lago_events(call, EventOptions{codes, parse_charge_by(charge_by)});
        return py::make_tuple(built.events, built.missing_reason);
      },
      py::kw_only(), py::arg("call_id"), py::arg("timestamp_ms"), py::arg("model"), py::arg("usage"), py::arg("cost"),
      py::arg("codes"), py::arg("charge_by") = "end_user_id", py::arg("key_alias") = "", py::arg("user_id") = "",
      py::arg("team_id") = "", py::arg("end_user_id") = "", py::arg("unpriced") = false,
      py::arg("billed_amount") = py::none(),
      "The Lago event JSON of a call, one per code, and the reason when there is no id to charge.");
}

}  // namespace llmbill::bindings
