#include "llmbill/pipeline.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>

#include <nlohmann/json.hpp>

#include "llmbill/errors.hpp"

namespace llmbill {
namespace {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The event's own timestamp ("1786000000.123"), for the oldest-pending age; now when unreadable.
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

// What a dead letter keeps of Lago's reply: the body as Lago sent it (bounded), else what went wrong.
std::string reply_text(const HttpReply& reply, const ReplyOutcome& outcome) {
  constexpr std::size_t kMax = 16 * 1024;
  if (reply.body.empty()) return reply.transport_error.empty() ? outcome.error : reply.transport_error;
  if (reply.body.size() <= kMax) return reply.body;
  return reply.body.substr(0, kMax) + "... (" + std::to_string(reply.body.size()) + " bytes)";
}

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

Pipeline::~Pipeline() { close(std::chrono::seconds(5)); }

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

std::vector<std::string> Pipeline::submit(const CallRecord& call) {
  {
    std::lock_guard lock(mu_);
    if (closed_) throw Error("billing pipeline is closed");
  }
  BuiltEvents built = build_lago_events(call, options_.events);
  if (!built.ok()) {
    dead_letters_.add(DeadLetter{call.call_id, unbillable_event_json(call, options_.events), built.missing_reason, "",
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
  {
    std::shared_lock spool_lock(spool_mu_);
    if (!spool_) throw Error("billing pipeline is closed");
    seqs = events.size() == 1 ? std::vector<std::uint64_t>{spool_->append(events[0])} : spool_->append_batch(events);
  }
  std::vector<Pending> items;
  items.reserve(seqs.size());
  for (std::size_t i = 0; i < seqs.size(); ++i) items.push_back(Pending{seqs[i], std::move(events[i]), call.timestamp_ms});
  queue_spooled(std::move(items));
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
  // Stored before we return, like any dead letter: the caller's call is on disk, only not sent.
  dead_letters_.add(DeadLetter{id, event_json, reason, "", static_cast<double>(now_ms()) / 1000.0});
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
    if (closed_) return queue_.empty() && in_flight_ == 0;
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
  spool_->sync();
  final_warnings_ = spool_->warnings();
  spool_.reset();
  return all;
}

void Pipeline::run() {
  std::mt19937_64 rng(std::random_device{}());
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::size_t batch_limit = options_.max_batch;
  int failures = 0;
  const auto tick = std::min(options_.flush_interval, options_.spool.fsync_interval);

  while (true) {
    std::vector<Pending> batch;
    {
      std::unique_lock lock(mu_);
      wake_.wait_for(lock, options_.flush_interval, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) break;
      if (queue_.empty()) {
        lock.unlock();
        spool_->maybe_sync();
        continue;
      }
      // Linger so a batch can fill, unless it is full already or someone waits in flush().
      auto deadline = std::chrono::steady_clock::now() + options_.flush_interval;
      while (!stopping_ && queue_.size() < batch_limit && flushers_ == 0 &&
             std::chrono::steady_clock::now() < deadline) {
        wake_.wait_until(lock, std::min(deadline, std::chrono::steady_clock::now() + tick));
      }
      if (stopping_) break;
      std::size_t n = std::min(batch_limit, queue_.size());
      batch.reserve(n);
      for (std::size_t i = 0; i < n; ++i) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      in_flight_ = n;
      in_flight_oldest_ms_ = batch.front().timestamp_ms;
      for (const auto& p : batch) in_flight_oldest_ms_ = std::min(in_flight_oldest_ms_, p.timestamp_ms);
    }
    spool_->maybe_sync();  // the batch's records reach the disk before we report them delivered

    std::vector<const std::string*> events;
    events.reserve(batch.size());
    for (const auto& p : batch) events.push_back(&p.json);
    HttpReply reply = transport_->send(events);
    ReplyOutcome outcome = classify_reply(reply, batch.size());
    settle(batch, outcome, outcome.dead.empty() ? std::string() : reply_text(reply, outcome));

    std::chrono::milliseconds wait{0};
    switch (outcome.action) {
      case ReplyAction::done: failures = 0; break;
      case ReplyAction::split: batch_limit = std::max<std::size_t>(1, batch.size() / 2); break;
      case ReplyAction::backoff:
        wait = backoff_delay(++failures, options_.backoff_base, options_.backoff_cap, unit(rng));
        break;
      case ReplyAction::rate_limited:
        ++failures;
        wait = outcome.wait + std::chrono::milliseconds(static_cast<long long>(unit(rng) * 250));
        break;
      case ReplyAction::config_error:
        ++failures;
        wait = options_.config_error_retry;
        break;
    }
    if (wait.count() > 0) {
      // Back off, but keep syncing the spool meanwhile: events keep arriving during an outage.
      const auto until = std::chrono::steady_clock::now() + wait;
      std::unique_lock lock(mu_);
      while (!stopping_ && std::chrono::steady_clock::now() < until) {
        wake_.wait_until(lock, std::min(until, std::chrono::steady_clock::now() + tick));
        lock.unlock();
        spool_->maybe_sync();
        lock.lock();
      }
    }
  }
}

void Pipeline::settle(std::vector<Pending>& batch, const ReplyOutcome& outcome, const std::string& reply) {
  std::vector<std::uint64_t> acks;
  acks.reserve(outcome.delivered.size() + outcome.dead.size());
  for (std::size_t i : outcome.delivered) acks.push_back(batch[i].seq);
  for (std::size_t i : outcome.dead) {
    auto reason = outcome.dead_reasons.find(i);
    dead_letters_.add(DeadLetter{transaction_id_of(batch[i].json), batch[i].json,
                                 reason == outcome.dead_reasons.end() ? outcome.error : reason->second, reply,
                                 static_cast<double>(now_ms()) / 1000.0});
    acks.push_back(batch[i].seq);
  }
  spool_->ack(acks);  // the sender thread runs only while spool_ exists

  std::lock_guard lock(mu_);
  // Retries go back to the front, in their original order, ahead of newer events.
  for (auto it = outcome.retry.rbegin(); it != outcome.retry.rend(); ++it) queue_.push_front(std::move(batch[*it]));
  in_flight_ = 0;
  finished_ += outcome.delivered.size() + outcome.dead.size();
  stats_.delivered += outcome.delivered.size();
  stats_.duplicates += outcome.duplicates.size();
  stats_.dead_lettered += outcome.dead.size();
  stats_.retried += outcome.retry.size();
  ++stats_.batches;
  if (outcome.action == ReplyAction::config_error) ++stats_.config_errors;
  if (!outcome.error.empty()) stats_.last_error = outcome.error;
  settled_.notify_all();
}

PipelineStats Pipeline::stats() const {
  PipelineStats s;
  std::int64_t oldest = 0;
  {
    std::lock_guard lock(mu_);
    s = stats_;
    s.pending = queue_.size() + in_flight_;
    // Retries return to the front, so the front (or the batch in flight) holds the oldest event.
    if (!queue_.empty()) oldest = queue_.front().timestamp_ms;
    if (in_flight_ > 0 && (oldest == 0 || in_flight_oldest_ms_ < oldest)) oldest = in_flight_oldest_ms_;
  }
  {
    std::shared_lock spool_lock(spool_mu_);
    if (spool_) s.spool_bytes = spool_->stats().bytes;
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
