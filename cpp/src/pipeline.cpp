// The pipeline's caller side: submit, hold, flush, close, stats (contract in llmbill/pipeline.hpp).
// The sender thread is in pipeline_sender.cpp.
//
// Design notes — holding events in memory (issue 13). Measured before: a full filesystem made
// submit() throw after the provider had answered; the proxy logged it and the call was served and
// never billed. Two parts fix it. (1) can_accept() lets the caller refuse before any work is done.
// (2) What still fails to append (calls admitted before the disk filled, another process filling it
// between two space checks) is held in `unspooled_` and counted in `not_durable_`; the sender retries
// it each tick, into the spool or straight to Lago. The list is bounded (max_unspooled): an unbounded
// one would trade a lost event for a lost process. Not chosen: blocking submit() until the disk has
// room (the caller's reply would wait on an operator), or writing elsewhere on the same disk.
#include "llmbill/pipeline.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include <nlohmann/json.hpp>

#include "llmbill/errors.hpp"
#include "pipeline_events.hpp"

namespace llmbill {
namespace pipeline_detail {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::int64_t timestamp_of(const std::string& event_json) {
  auto e = nlohmann::json::parse(event_json, nullptr, false);
  if (e.is_object()) {
    auto it = e.find("timestamp");
    double seconds = -1;
    if (it != e.end() && it->is_string()) {
      const std::string& text = it->get_ref<const std::string&>();
      char* end = nullptr;
      seconds = std::strtod(text.c_str(), &end);
      if (end == text.c_str() || *end != '\0') seconds = -1;  // Lago will judge it; age from now
    } else if (it != e.end() && it->is_number()) {
      seconds = it->get<double>();
    }
    if (std::isfinite(seconds) && seconds > 0 && seconds < 1e11) return static_cast<std::int64_t>(seconds * 1000);
  }
  return now_ms();
}

std::string transaction_id_of(const std::string& event_json) {
  auto e = nlohmann::json::parse(event_json, nullptr, false);
  if (e.is_object() && e.contains("transaction_id") && e["transaction_id"].is_string()) return e["transaction_id"];
  return "";
}

std::string subscription_of(const std::string& event_json) {
  auto e = nlohmann::json::parse(event_json, nullptr, false);
  if (e.is_object() && e.contains("external_subscription_id") && e["external_subscription_id"].is_string()) {
    return e["external_subscription_id"];
  }
  return "";
}

}  // namespace pipeline_detail

using namespace pipeline_detail;

namespace {

PipelineOptions with_defaults(PipelineOptions o) {
  if (o.spool.dir.empty()) throw Error("billing pipeline: no spool directory (LLMBILL_SPOOL_DIR)");
  if (o.dead_letter_file.empty()) o.dead_letter_file = o.spool.dir / "deadletters.jsonl";
  o.max_batch = std::clamp<std::size_t>(o.max_batch, 1, 100);
  return o;
}

}  // namespace

Pipeline::Pipeline(PipelineOptions options, std::unique_ptr<Transport> transport)
    : options_(with_defaults(std::move(options))),
      transport_(std::move(transport)),
      spool_(std::make_unique<Spool>(options_.spool)),
      dead_letters_(options_.dead_letter_file) {
  if (!transport_) throw Error("billing pipeline: no transport");
  std::vector<Pending> recovered;
  for (auto& r : spool_->take_recovered()) {
    std::int64_t ts = timestamp_of(r.payload);
    recovered.push_back(Pending{r.seq, std::move(r.payload), ts});
  }
  stats_.recovered = recovered.size();
  queue_spooled(std::move(recovered));
  sender_ = std::thread([this] { run(); });
}

Pipeline::~Pipeline() {
  try {
    close(std::chrono::seconds(5));
  } catch (const std::exception&) {
    // close() reports through warnings(); only allocation can throw here, and a destructor must not.
  }
}

void Pipeline::queue_spooled(std::vector<Pending> items) {
  if (items.empty()) return;
  std::lock_guard lock(mu_);
  const bool was_empty = queue_.empty();
  submitted_ += items.size();
  stats_.enqueued += items.size();
  for (auto& p : items) queue_.push_back(std::move(p));
  // Wake the sender when work appears (it then lingers up to flush_interval) or a batch is full.
  if (was_empty || queue_.size() >= options_.max_batch) wake_.notify_one();
}

void Pipeline::hold_unspooled(std::vector<Pending> items, const std::string& error) {
  std::lock_guard lock(mu_);
  ++stats_.spool_failures;
  if (not_durable_.load() + items.size() > options_.max_unspooled) {
    stats_.last_error = error + " (and " + std::to_string(not_durable_.load()) +
                        " events already held in memory: these are not billed)";
    throw SpoolFullError(stats_.last_error);
  }
  stats_.last_error = error + " (held in memory, retried until durable)";
  submitted_ += items.size();
  stats_.enqueued += items.size();
  not_durable_ += items.size();
  for (auto& p : items) {
    p.seq = 0;
    unspooled_.push_back(std::move(p));
  }
  wake_.notify_one();
}

void Pipeline::add_dead_letter(DeadLetter letter) {
  // On the caller's (request) thread: written now, fsynced as the spool's policy says — at the
  // sender's next tick for `interval` (an fsync here held the proxy's event loop ~2 ms a call).
  try {
    dead_letters_.add(letter, options_.spool.fsync == FsyncPolicy::every_record);
    return;
  } catch (const Error& e) {
    std::lock_guard lock(mu_);
    ++stats_.spool_failures;
    if (not_durable_.load() >= options_.max_unspooled) {
      stats_.last_error = std::string(e.what()) + " (memory list full: dead letter " + letter.id + " not kept)";
      throw;
    }
    stats_.last_error = std::string(e.what()) + " (dead letter held in memory, retried)";
    ++not_durable_;
    unwritten_letters_.push_back(UnwrittenLetter{std::move(letter), 0, false});
    wake_.notify_one();
  }
}

bool Pipeline::can_accept() const {
  if (not_durable_.load(std::memory_order_acquire) != 0) return false;
  std::shared_lock spool_lock(spool_mu_);
  return spool_ && spool_->can_accept();
}

std::vector<std::string> Pipeline::submit(const CallRecord& call) {
  {
    std::lock_guard lock(mu_);
    if (closed_) throw Error("billing pipeline is closed");
  }
  BuiltEvents built = build_lago_events(call, options_.events);
  if (!built.ok()) {
    add_dead_letter(DeadLetter{call.call_id, unbillable_event_json(call, options_.events), built.missing_reason, "",
                               static_cast<double>(now_ms()) / 1000.0});
    std::lock_guard lock(mu_);
    ++stats_.no_charge_id;
    ++stats_.dead_lettered;
    return {};
  }
  // build_lago_events makes one event per code, in the order of options_.events.codes.
  const bool several = options_.events.codes.size() > 1;
  std::vector<std::string> ids;
  std::vector<std::string> events;
  for (std::size_t i = 0; i < built.events.size(); ++i) {
    const std::string& code = options_.events.codes[i];
    std::string id = several ? call.call_id + ":" + code : call.call_id;
    if (std::string reason = held_reason(code); !reason.empty()) {
      dead_letter_held(id, built.events[i], reason);
      continue;
    }
    ids.push_back(std::move(id));
    events.push_back(std::move(built.events[i]));
  }
  if (events.empty()) return ids;
  std::vector<std::uint64_t> seqs;
  std::string failure;
  {
    std::shared_lock spool_lock(spool_mu_);
    if (!spool_) throw Error("billing pipeline is closed");
    try {
      seqs = events.size() == 1 ? std::vector<std::uint64_t>{spool_->append(events[0])} : spool_->append_batch(events);
    } catch (const Error& e) {
      failure = e.what();  // the call is served already: hold its events rather than lose them
    }
  }
  std::vector<Pending> items;
  items.reserve(events.size());
  for (std::size_t i = 0; i < events.size(); ++i) {
    items.push_back(Pending{failure.empty() ? seqs[i] : 0, std::move(events[i]), call.timestamp_ms});
  }
  if (failure.empty()) {
    queue_spooled(std::move(items));
  } else {
    hold_unspooled(std::move(items), failure);
  }
  return ids;
}

bool Pipeline::submit_event(const std::string& event_json) {
  auto e = nlohmann::json::parse(event_json, nullptr, false);
  if (!e.is_object() || !e.contains("transaction_id")) throw Error("not a Lago event (no transaction_id): " + event_json.substr(0, 200));
  if (auto code = e.find("code"); code != e.end() && code->is_string()) {
    if (std::string reason = held_reason(code->get<std::string>()); !reason.empty()) {
      dead_letter_held(transaction_id_of(event_json), event_json, reason);
      return false;
    }
  }
  // A replay or a reconciliation resend: the caller keeps its own copy until this returns, so a
  // failed append is thrown to it rather than held here.
  std::uint64_t seq;
  {
    std::shared_lock spool_lock(spool_mu_);
    if (!spool_) throw Error("billing pipeline is closed");
    seq = spool_->append(event_json);
  }
  queue_spooled({Pending{seq, event_json, timestamp_of(event_json)}});
  return true;
}

void Pipeline::hold_codes(std::map<std::string, std::string> code_reasons) {
  std::lock_guard lock(mu_);
  held_ = std::move(code_reasons);
  any_held_.store(!held_.empty(), std::memory_order_release);
}

void Pipeline::set_subscriptions(const std::map<std::string, std::string>& id_reasons) {
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, reason] : id_reasons) {
      subscriptions_[id] = reason;
      unverified_.erase(id);
    }
  }
  wake_.notify_all();  // the sender may be waiting on one of these
}

std::map<std::string, std::int64_t> Pipeline::unverified_subscriptions() const {
  std::lock_guard lock(mu_);
  return unverified_;
}

std::map<std::string, std::string> Pipeline::held_subscriptions() const {
  std::lock_guard lock(mu_);
  std::map<std::string, std::string> out;
  for (const auto& [id, reason] : subscriptions_) {
    if (!reason.empty()) out.emplace(id, reason);
  }
  return out;
}

std::map<std::string, std::string> Pipeline::held_codes() const {
  std::lock_guard lock(mu_);
  return held_;
}

std::string Pipeline::held_reason(const std::string& code) const {
  if (!any_held_.load(std::memory_order_acquire)) return {};  // the common case: no lock taken
  std::lock_guard lock(mu_);
  auto it = held_.find(code);
  return it == held_.end() ? std::string() : it->second;
}

void Pipeline::dead_letter_held(const std::string& id, const std::string& event_json, const std::string& reason) {
  // Stored before we return, like any dead letter (or held in memory and retried when the write fails).
  add_dead_letter(DeadLetter{id, event_json, reason, "", static_cast<double>(now_ms()) / 1000.0});
  std::lock_guard lock(mu_);
  ++stats_.held;
  ++stats_.dead_lettered;
}

bool Pipeline::flush(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  const std::uint64_t target = submitted_;
  ++flushers_;
  wake_.notify_one();
  bool done = settled_.wait_for(lock, timeout, [&] { return finished_ >= target || stopping_; });
  --flushers_;
  return done && finished_ >= target;
}

bool Pipeline::close(std::chrono::milliseconds timeout) {
  {
    std::lock_guard lock(mu_);
    if (closed_) return queue_.empty() && in_flight_ == 0 && not_durable_.load() == 0;
    closed_ = true;
  }
  bool all = flush(timeout);
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  transport_->interrupt();  // a send in progress returns now; its events stay in the spool
  wake_.notify_all();
  settled_.notify_all();
  if (sender_.joinable()) sender_.join();
  std::unique_lock spool_lock(spool_mu_);
  std::vector<std::string> losses;
  try {
    spool_what_is_left();
  } catch (const std::exception& e) {
    losses.push_back(std::string("billing pipeline: events held in memory could not be spooled at close: ") + e.what());
  }
  try {
    spool_->sync();
  } catch (const std::exception& e) {
    losses.push_back(std::string("billing pipeline: final fsync failed: ") + e.what());
  }
  final_warnings_ = spool_->warnings();
  final_warnings_.insert(final_warnings_.end(), losses.begin(), losses.end());
  spool_.reset();
  return all && losses.empty();
}

// At close, with the sender joined: one last append of what is only in memory; what still fails is
// named in the warnings (the caller's own records, e.g. the spend log, let reconcile resend it).
void Pipeline::spool_what_is_left() {
  std::vector<Pending> left;
  std::vector<UnwrittenLetter> letters;
  {
    std::lock_guard lock(mu_);
    left = std::move(unspooled_);
    unspooled_.clear();
    std::deque<Pending> spooled;
    for (auto& p : queue_) (p.seq == 0 ? left.push_back(std::move(p)) : spooled.push_back(std::move(p)));
    queue_.swap(spooled);
    letters = std::move(unwritten_letters_);
    unwritten_letters_.clear();
  }
  std::string lost;
  if (!left.empty()) {
    std::vector<std::string> payloads;
    for (const auto& p : left) payloads.push_back(p.json);
    try {
      spool_->append_batch(payloads);
      not_durable_ -= left.size();
    } catch (const Error& e) {
      lost = std::to_string(left.size()) + " event(s) (" + e.what() + "):";
      for (const auto& p : left) lost += " " + transaction_id_of(p.json);
    }
  }
  std::vector<std::uint64_t> acks;
  for (const UnwrittenLetter& u : letters) {
    try {
      dead_letters_.add(u.letter);
    } catch (const Error& e) {
      // One whose event is in the spool is refused again after the restart, and written then.
      if (u.seq == 0) lost += " dead letter " + u.letter.id + " (" + e.what() + ")";
      continue;
    }
    if (u.seq != 0) acks.push_back(u.seq);
    else --not_durable_;
  }
  spool_->ack(acks);
  try {
    dead_letters_.sync_written();  // submit()'s letters since the sender's last tick
  } catch (const std::exception& e) {
    note_sender_error(e.what());  // written, so a process exit keeps them; only power loss could not
  }
  if (!lost.empty()) throw Error("lost: " + lost);
}

PipelineStats Pipeline::stats() const {
  PipelineStats s;
  std::int64_t oldest = 0;
  {
    std::lock_guard lock(mu_);
    s = stats_;
    s.pending = queue_.size() + in_flight_ + unspooled_.size();
    for (const auto& u : unwritten_letters_) s.pending += u.from_batch ? 1 : 0;  // waits for its letter
    s.unspooled = not_durable_.load();
    // Retries return to the front, so the front (or the batch in flight) holds the oldest event.
    if (!queue_.empty()) oldest = queue_.front().timestamp_ms;
    if (in_flight_ > 0 && (oldest == 0 || in_flight_oldest_ms_ < oldest)) oldest = in_flight_oldest_ms_;
    for (const auto& p : unspooled_) {
      if (oldest == 0 || p.timestamp_ms < oldest) oldest = p.timestamp_ms;
    }
  }
  {
    std::shared_lock spool_lock(spool_mu_);
    if (spool_) {
      SpoolStats sp = spool_->stats();
      s.spool_bytes = sp.bytes;
      s.spool_free_bytes = sp.free_bytes;
      s.accepting = sp.accepting && s.unspooled == 0;
      if (!sp.last_error.empty()) s.last_error = sp.last_error;  // the spool is failing now
    } else {
      s.accepting = false;
    }
  }
  if (oldest > 0) s.oldest_pending_age_s = static_cast<double>(std::max<std::int64_t>(0, now_ms() - oldest)) / 1000.0;
  return s;
}

std::vector<std::string> Pipeline::warnings() const {
  std::shared_lock spool_lock(spool_mu_);
  return spool_ ? spool_->warnings() : final_warnings_;
}

std::string Pipeline::describe() const { return transport_->describe(); }

}  // namespace llmbill
