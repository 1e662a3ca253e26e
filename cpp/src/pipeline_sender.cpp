// The pipeline's sender thread (contract in llmbill/pipeline.hpp; the caller side is pipeline.cpp).
//
// Design notes — the sender
// - One thread, one loop: take a batch (lingering up to flush_interval so it can fill), send it,
//   classify the reply (sender.cpp), settle each event, then wait as the reply's action says.
// - Exception boundary: each iteration runs inside try/catch. Before, a dead-letter write or an
//   fdatasync error escaped run() and std::terminate ended the process; the event was still in the
//   spool, so after the restart it was dead-lettered again and crashed again. Now anything thrown is
//   counted (sender_errors, last_error), the batch goes back to the front of the queue and the sender
//   backs off as after a 5xx. A dead letter that cannot be written leaves its event unacknowledged
//   (resent later, and dead-lettered then), so nothing leaves the spool without a durable home.
// - Housekeeping each tick (fsync per policy, statvfs, memory retries) catches its own exceptions:
//   a failing disk must not stop the delivery of what is already spooled.
// - Events held in memory (seq 0) ride in ordinary batches when the spool still cannot take them:
//   Lago storing them is as durable as the spool. A retry of such an event goes back to memory, not
//   to the queue, so the next tick tries the spool first again.
// - Batch limit: BatchLimit (sender.hpp) halves on a split and grows back after successes.
#include <algorithm>
#include <random>

#include "llmbill/pipeline.hpp"
#include "pipeline_events.hpp"

namespace llmbill {
using namespace pipeline_detail;

namespace {

// What a dead letter keeps of Lago's reply: the body as Lago sent it (bounded), else what went wrong.
std::string reply_text(const HttpReply& reply, const ReplyOutcome& outcome) {
  constexpr std::size_t kMax = 16 * 1024;
  if (reply.body.empty()) return reply.transport_error.empty() ? outcome.error : reply.transport_error;
  if (reply.body.size() <= kMax) return reply.body;
  return reply.body.substr(0, kMax) + "... (" + std::to_string(reply.body.size()) + " bytes)";
}

}  // namespace

void Pipeline::run() {
  std::mt19937_64 rng(std::random_device{}());
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  BatchLimit limit(options_.max_batch);
  int failures = 0;
  while (true) {
    std::vector<Pending> batch;
    std::chrono::milliseconds wait{0};
    try {
      housekeeping();
      std::vector<std::pair<Pending, std::string>> held;
      const bool more = next_batch(batch, limit.get(), held);
      if (!held.empty()) settle_held(held);
      if (!more) break;                // stopping
      if (batch.empty()) continue;     // a tick without work
      try {
        spool_->maybe_sync();  // the batch's records reach the disk before we report them delivered
      } catch (const std::exception& e) {
        note_sender_error(e.what());  // counted; the send goes on: Lago storing them is durable too
      }
      std::vector<const std::string*> events;
      events.reserve(batch.size());
      for (const auto& p : batch) events.push_back(&p.json);
      HttpReply reply = transport_->send(events);
      ReplyOutcome outcome = classify_reply(reply, batch.size());
      settle(batch, outcome, outcome.dead.empty() ? std::string() : reply_text(reply, outcome));
      const std::size_t sent = batch.size();
      batch.clear();  // settled: nothing to put back if what follows throws
      switch (outcome.action) {
        case ReplyAction::done:
          failures = 0;
          limit.on_success();
          break;
        case ReplyAction::split: limit.on_split(sent); break;
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
    } catch (const std::exception& e) {
      note_sender_error(e.what());
      requeue(batch);
      wait = backoff_delay(++failures, options_.backoff_base, options_.backoff_cap, unit(rng));
    } catch (...) {
      note_sender_error("unknown exception");
      requeue(batch);
      wait = backoff_delay(++failures, options_.backoff_base, options_.backoff_cap, unit(rng));
    }
    if (wait.count() > 0) pause(wait);
  }
}

bool Pipeline::next_batch(std::vector<Pending>& batch, std::size_t limit,
                          std::vector<std::pair<Pending, std::string>>& held) {
  const auto tick = std::max(std::chrono::milliseconds(1), std::min(options_.flush_interval, options_.spool.fsync_interval));
  std::unique_lock lock(mu_);
  wake_.wait_for(lock, options_.flush_interval, [&] { return stopping_ || !queue_.empty(); });
  if (stopping_) return false;
  if (queue_.empty()) return true;
  // Linger so a batch can fill, unless it is full already or someone waits in flush().
  auto deadline = std::chrono::steady_clock::now() + options_.flush_interval;
  while (!stopping_ && queue_.size() < limit && flushers_ == 0 && std::chrono::steady_clock::now() < deadline) {
    wake_.wait_until(lock, std::min(deadline, std::chrono::steady_clock::now() + tick));
  }
  if (stopping_) return false;
  bool waiting = false;  // the front's billed id is not verified yet: nothing past it is sent
  while (batch.size() < limit && !queue_.empty()) {
    if (options_.gate_subscriptions) {
      const std::string id = subscription_of(queue_.front().json);
      auto known = subscriptions_.find(id);
      if (!id.empty() && known == subscriptions_.end()) {
        auto [it, fresh] = unverified_.try_emplace(id, queue_.front().timestamp_ms);
        if (!fresh) it->second = std::min(it->second, queue_.front().timestamp_ms);
        waiting = true;
        break;
      }
      if (known != subscriptions_.end() && !known->second.empty()) {
        held.emplace_back(std::move(queue_.front()), known->second);
        queue_.pop_front();
        continue;
      }
    }
    batch.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  const std::size_t n = batch.size();
  if (n == 0) {
    // Only an unverified id ahead: wait for the watcher (set_subscriptions wakes us), not a spin.
    if (waiting && held.empty()) wake_.wait_for(lock, options_.flush_interval);
    return !stopping_;
  }
  in_flight_ = n;
  in_flight_oldest_ms_ = batch.front().timestamp_ms;
  for (const auto& p : batch) in_flight_oldest_ms_ = std::min(in_flight_oldest_ms_, p.timestamp_ms);
  return true;
}

void Pipeline::settle(std::vector<Pending>& batch, const ReplyOutcome& outcome, const std::string& reply) {
  std::vector<std::uint64_t> acks;
  std::vector<UnwrittenLetter> unwritten;
  std::size_t dead = 0;
  std::size_t from_memory = 0;  // settled events that were only in memory
  std::string letter_error;
  acks.reserve(outcome.delivered.size() + outcome.dead.size());
  for (std::size_t i : outcome.delivered) {
    if (batch[i].seq != 0) acks.push_back(batch[i].seq);
    else ++from_memory;
  }
  for (std::size_t i : outcome.dead) {
    auto reason = outcome.dead_reasons.find(i);
    DeadLetter letter{transaction_id_of(batch[i].json), batch[i].json,
                      reason == outcome.dead_reasons.end() ? outcome.error : reason->second, reply,
                      static_cast<double>(now_ms()) / 1000.0};
    try {
      dead_letters_.add(letter);
    } catch (const std::exception& e) {
      // Not acknowledged: the event stays in the spool (or, if it was only in memory, stays counted
      // as such) until the letter is written; it is not resent, so the rest of its batch goes on.
      letter_error = e.what();
      unwritten.push_back(UnwrittenLetter{std::move(letter), batch[i].seq, true});
      continue;
    }
    ++dead;
    if (batch[i].seq != 0) acks.push_back(batch[i].seq);
    else ++from_memory;
  }
  spool_->ack(acks);  // the sender thread runs only while spool_ exists

  std::lock_guard lock(mu_);
  // Retries go back to the front, in their original order, ahead of newer events; ones that were
  // only in memory go back to memory, so the next tick tries the spool first.
  for (auto it = outcome.retry.rbegin(); it != outcome.retry.rend(); ++it) {
    if (batch[*it].seq == 0) unspooled_.push_back(std::move(batch[*it]));
    else queue_.push_front(std::move(batch[*it]));
  }
  for (auto& u : unwritten) unwritten_letters_.push_back(std::move(u));
  in_flight_ = 0;
  finished_ += outcome.delivered.size() + dead;
  not_durable_ -= from_memory;
  stats_.delivered += outcome.delivered.size();
  stats_.duplicates += outcome.duplicates.size();
  stats_.dead_lettered += dead;
  stats_.retried += outcome.retry.size();
  ++stats_.batches;
  if (outcome.action == ReplyAction::config_error) ++stats_.config_errors;
  if (!outcome.error.empty()) stats_.last_error = outcome.error;
  if (!letter_error.empty()) {
    ++stats_.spool_failures;
    stats_.last_error = "dead letter not written (its event is kept, retried): " + letter_error;
  }
  settled_.notify_all();
}

void Pipeline::settle_held(std::vector<std::pair<Pending, std::string>>& held) {
  // Settled as if Lago had refused them, with the hold's reason: stored as dead letters and
  // acknowledged (or kept for retry when the letter cannot be written), never sent.
  std::vector<Pending> batch;
  ReplyOutcome outcome;
  batch.reserve(held.size());
  for (std::size_t i = 0; i < held.size(); ++i) {
    batch.push_back(std::move(held[i].first));
    outcome.dead.push_back(i);
    outcome.dead_reasons[i] = held[i].second;
  }
  std::size_t flight;
  {
    std::lock_guard lock(mu_);
    flight = in_flight_;
  }
  settle(batch, outcome, "");
  std::lock_guard lock(mu_);
  in_flight_ = flight;  // settle() ends a batch; the batch taken with these is still to be sent
  --stats_.batches;
  stats_.held += held.size();
  held.clear();
}

void Pipeline::requeue(std::vector<Pending>& batch) {
  std::lock_guard lock(mu_);
  for (auto it = batch.rbegin(); it != batch.rend(); ++it) {
    if (it->json.empty()) continue;  // moved out by a settle that threw part-way: already placed
    if (it->seq == 0) unspooled_.push_back(std::move(*it));
    else queue_.push_front(std::move(*it));
  }
  batch.clear();
  in_flight_ = 0;
}

void Pipeline::housekeeping() noexcept {
  try {
    spool_->maybe_sync();
    dead_letters_.sync_written();  // what submit() dead-lettered without waiting on the disk
  } catch (const std::exception& e) {
    note_sender_error(e.what());
  }
  spool_->refresh_space();
  spool_->tidy();  // the next segment made here, not by a caller's append (spool.cpp's notes)
  try {
    retry_unspooled();
    retry_dead_letters();
  } catch (const std::exception& e) {
    note_sender_error(e.what());
  }
}

void Pipeline::retry_unspooled() {
  std::vector<Pending> items;
  {
    std::lock_guard lock(mu_);
    if (unspooled_.empty()) return;
    items.swap(unspooled_);
  }
  std::string error;
  try {
    std::vector<std::string> payloads;
    payloads.reserve(items.size());
    for (const auto& p : items) payloads.push_back(p.json);
    std::vector<std::uint64_t> seqs = spool_->append_batch(payloads);
    for (std::size_t i = 0; i < items.size(); ++i) items[i].seq = seqs[i];
  } catch (const std::exception& e) {
    error = e.what();
  }
  std::lock_guard lock(mu_);
  if (error.empty()) {
    not_durable_ -= items.size();
  } else {
    ++stats_.spool_failures;
    stats_.last_error = error + " (" + std::to_string(not_durable_.load()) + " events held in memory)";
  }
  // Spooled now, or (still seq 0) sent straight to Lago: either way they are next in line.
  for (auto it = items.rbegin(); it != items.rend(); ++it) queue_.push_front(std::move(*it));
}

void Pipeline::retry_dead_letters() {
  std::vector<UnwrittenLetter> letters;
  {
    std::lock_guard lock(mu_);
    if (unwritten_letters_.empty()) return;
    letters.swap(unwritten_letters_);
  }
  std::vector<UnwrittenLetter> failed;
  std::vector<std::uint64_t> acks;
  std::size_t from_memory = 0, settled = 0;
  std::string error;
  for (auto& u : letters) {
    try {
      dead_letters_.add(u.letter);
    } catch (const std::exception& e) {
      error = e.what();
      failed.push_back(std::move(u));
      continue;
    }
    if (u.seq != 0) acks.push_back(u.seq);
    else ++from_memory;
    if (u.from_batch) ++settled;
  }
  spool_->ack(acks);
  std::lock_guard lock(mu_);
  not_durable_ -= from_memory;
  finished_ += settled;
  stats_.dead_lettered += settled;
  for (auto& u : failed) unwritten_letters_.push_back(std::move(u));
  if (!error.empty()) {
    ++stats_.spool_failures;
    stats_.last_error = "dead letter not written (held in memory, retried): " + error;
  }
  if (settled > 0) settled_.notify_all();
}

void Pipeline::pause(std::chrono::milliseconds wait) {
  // Back off, but keep syncing the spool meanwhile: events keep arriving during an outage.
  const auto tick = std::max(std::chrono::milliseconds(1), std::min(options_.flush_interval, options_.spool.fsync_interval));
  const auto until = std::chrono::steady_clock::now() + wait;
  std::unique_lock lock(mu_);
  while (!stopping_ && std::chrono::steady_clock::now() < until) {
    wake_.wait_until(lock, std::min(until, std::chrono::steady_clock::now() + tick));
    lock.unlock();
    housekeeping();
    lock.lock();
  }
}

void Pipeline::note_sender_error(const std::string& what) noexcept {
  try {
    std::lock_guard lock(mu_);
    ++stats_.sender_errors;
    stats_.last_error = "billing sender: " + what;
  } catch (...) {
    // Out of memory while reporting: the counter is what is lost, never an event.
  }
}

}  // namespace llmbill
