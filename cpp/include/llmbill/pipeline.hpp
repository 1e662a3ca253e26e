// The billing pipeline: call → Lago events → durable spool → background sender → Lago.
//
// submit() builds the call's events, appends them to the spool and queues them; it returns once the
// events are on disk (per the spool's fsync policy) and never waits for the network. One sender
// thread, owned here, batches (at most max_batch, or whatever is queued after flush_interval), sends
// through its Transport, and classifies each reply (sender.hpp): delivered and dead-lettered events are
// acknowledged in the spool; the rest are resent, with backoff, forever — until close().
// Events left at close() stay in the spool and are resent by the next Pipeline on the same directory.
//
// Durability (issue 13): can_accept() says, before a caller does billable work, whether its events
// could be made durable now (the spool's reserve and last outcome, and nothing held in memory). An
// append that fails anyway (the call was already served) does not lose the event: it is held in a
// bounded in-memory list, and the sender retries it every tick — into the spool, or straight to Lago
// when the spool still cannot take it — until it is durable in one of them; stats().unspooled counts
// them and can_accept() stays false meanwhile. Only when that list is full too does submit() throw.
// A dead letter that cannot be written is kept and retried the same way. No exception ends the
// sender thread: anything thrown is counted (sender_errors, last_error), the batch is kept, and the
// sender backs off and retries.
//
// Thread safety: every public method may be called from any thread. The sender never calls back into
// the caller (Python learns state by polling stats()).
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "llmbill/deadletters.hpp"
#include "llmbill/event.hpp"
#include "llmbill/spool.hpp"
#include "llmbill/transport.hpp"

namespace llmbill {

struct PipelineOptions {
  EventOptions events;
  SpoolOptions spool;                         // spool.dir is required
  std::filesystem::path dead_letter_file;     // default: <spool.dir>/deadletters.jsonl
  std::size_t max_batch = 100;                // Lago's LAGO_EVENTS_BATCH_MAX_LENGTH
  std::chrono::milliseconds flush_interval{50};
  std::chrono::milliseconds backoff_base{100};
  std::chrono::milliseconds backoff_cap{30000};
  std::chrono::milliseconds config_error_retry{15000};  // 401/403/404: retry slowly, never drop
  std::size_t max_unspooled = 10000;  // events (and dead letters) held in memory while the disk fails
  // Send an event only once its external_subscription_id is known to Lago as active (see
  // set_subscriptions): Lago accepts events for a subscription it lacks and never bills them.
  bool gate_subscriptions = false;
};

struct PipelineStats {
  std::uint64_t enqueued = 0;       // events accepted (spooled), recovered ones included
  std::uint64_t recovered = 0;      // of which found in the spool at start
  std::uint64_t delivered = 0;      // stored by Lago (duplicates included)
  std::uint64_t duplicates = 0;     // answered value_already_exist: stored by an earlier attempt
  std::uint64_t retried = 0;        // event sends that had to be repeated
  std::uint64_t dead_lettered = 0;  // refused by Lago for good, or with no id to charge
  std::uint64_t no_charge_id = 0;   // calls with no id to charge (dead-lettered, never sent)
  std::uint64_t held = 0;           // events of a held code (dead-lettered, never sent)
  std::uint64_t batches = 0;        // HTTP requests made
  std::uint64_t config_errors = 0;  // 401/403/404 and unexpected statuses seen
  std::uint64_t pending = 0;        // queued or in flight (unspooled ones included)
  std::uint64_t unspooled = 0;      // held in memory: the spool could not take them (retried each tick)
  std::uint64_t spool_failures = 0; // appends or dead-letter writes that failed (each retried)
  std::uint64_t sender_errors = 0;  // exceptions caught in the sender thread (the work is retried)
  std::uint64_t spool_bytes = 0;
  std::uint64_t spool_free_bytes = 0;  // free on the spool's filesystem (last check, less appends)
  bool accepting = true;            // can_accept() when the figures were taken
  double oldest_pending_age_s = 0;  // by the events' own timestamps
  std::string last_error;
};

class Pipeline {
 public:
  Pipeline(PipelineOptions options, std::unique_ptr<Transport> transport);
  ~Pipeline();  // close(5 s)
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // Whether a new billable call's events can be made durable now: the spool keeps its reserve free,
  // its last append succeeded and nothing waits in memory. Cheap (no syscall): ask before every call.
  bool can_accept() const;
  // Returns the transaction ids queued (empty when the call had no id to charge and was
  // dead-lettered). When the spool cannot take the events they are held in memory and retried (see
  // above); throws SpoolFullError (nothing queued) only when that list is full too, Error after close().
  std::vector<std::string> submit(const CallRecord& call);
  // Queues an already-built event (a dead letter being replayed, a reconciliation resend) unchanged.
  // Returns false when the event's code is held (then it is dead-lettered, not queued).
  bool submit_event(const std::string& event_json);
  // Codes to hold, each with the reason: a code Lago does not know as a billable metric. Lago would
  // accept its events (200) and never bill them, and their transaction_ids would then be taken
  // (Lago's uniqueness ignores the code), so no later resend under the right code could bill them.
  // Events of a held code are dead-lettered by submit()/submit_event() instead of being sent; the
  // operator replays them once the code is fixed. Replaces the whole set (empty: hold nothing).
  void hold_codes(std::map<std::string, std::string> code_reasons);
  std::map<std::string, std::string> held_codes() const;
  // The subscription gate (options.gate_subscriptions). Each billed id is unknown until a watcher
  // says: "" (active in Lago: its events are sent) or a reason (missing: its events become dead
  // letters with that reason, replayed by the operator once it exists). Merged into what is known.
  // The sender never sends past an event of an unknown id (order kept; it waits, the caller does
  // not): unverified_subscriptions() lists those ids with their oldest event's timestamp (ms).
  void set_subscriptions(const std::map<std::string, std::string>& id_reasons);
  std::map<std::string, std::int64_t> unverified_subscriptions() const;
  std::map<std::string, std::string> held_subscriptions() const;
  // Waits until every event submitted before the call is delivered or dead-lettered, or the timeout
  // passes. Returns whether everything settled.
  bool flush(std::chrono::milliseconds timeout);
  // flush(timeout), then stops the sender and releases the spool (its lock too); what is left stays
  // in the spool for the next Pipeline. Events still held in memory get one last append; those that
  // cannot be spooled even then are named in warnings() (their calls are in the caller's own records,
  // e.g. the proxy's spend log, for `llmbill reconcile --fix`). Idempotent; never throws.
  bool close(std::chrono::milliseconds timeout);
  PipelineStats stats() const;
  std::vector<std::string> warnings() const;  // spool recovery warnings (and, after close, losses)
  DeadLetterStore& dead_letters() { return dead_letters_; }
  std::string describe() const;

 private:
  struct Pending {
    std::uint64_t seq;  // 0: not in the spool, held in memory (seqs start at 1)
    std::string json;
    std::int64_t timestamp_ms;
  };
  // A dead letter whose write failed, retried by the sender each tick.
  struct UnwrittenLetter {
    DeadLetter letter;
    std::uint64_t seq = 0;    // its event's spool record, acknowledged once the letter is written (0: none)
    bool from_batch = false;  // refused by Lago: counted as finished and dead-lettered once written
  };
  void queue_spooled(std::vector<Pending> items);
  // After a failed append: keeps the events in memory for the sender; throws when the list is full.
  void hold_unspooled(std::vector<Pending> items, const std::string& error);
  // A dead letter stored now, or kept in memory for the sender to store when the write fails.
  void add_dead_letter(DeadLetter letter);

  // The sender thread (pipeline_sender.cpp).
  void run();
  // `held`: events of a held subscription taken off the queue with their reasons (gate on).
  bool next_batch(std::vector<Pending>& batch, std::size_t limit,
                  std::vector<std::pair<Pending, std::string>>& held);
  void settle_held(std::vector<std::pair<Pending, std::string>>& held);
  // `reply`: Lago's reply body (or the transport error), kept with each dead letter of the batch. A
  // letter that cannot be written is kept for retry_dead_letters(); its event stays unacknowledged.
  void settle(std::vector<Pending>& batch, const ReplyOutcome& outcome, const std::string& reply);
  void requeue(std::vector<Pending>& batch);  // after an exception: the whole batch goes back
  void housekeeping() noexcept;               // each tick: fsync per policy, free space, memory retries
  void retry_unspooled();
  void retry_dead_letters();
  void pause(std::chrono::milliseconds wait);  // back off, housekeeping meanwhile; returns on stop
  void note_sender_error(const std::string& what) noexcept;
  // Events and letters only in memory, taken out at close() for a last append.
  void spool_what_is_left();

  // The reason when `code` is held, else empty.
  std::string held_reason(const std::string& code) const;
  void dead_letter_held(const std::string& id, const std::string& event_json, const std::string& reason);

  PipelineOptions options_;
  std::unique_ptr<Transport> transport_;
  std::unique_ptr<Spool> spool_;  // released by close(), so the next Pipeline can open the directory
  mutable std::shared_mutex spool_mu_;  // submit/stats (shared) vs close (exclusive)
  std::vector<std::string> final_warnings_;
  DeadLetterStore dead_letters_;

  mutable std::mutex mu_;
  std::condition_variable wake_;     // the sender: work, flush or stop
  std::condition_variable settled_;  // flush() waiters
  std::deque<Pending> queue_;
  std::vector<Pending> unspooled_;           // held in memory, not in queue_ (under mu_)
  std::vector<UnwrittenLetter> unwritten_letters_;  // dead letters whose write failed (under mu_)
  std::atomic<std::size_t> not_durable_{0};  // events and letters only in memory (not in the spool)
  std::size_t in_flight_ = 0;
  std::int64_t in_flight_oldest_ms_ = 0;
  std::uint64_t submitted_ = 0;  // events ever queued (the flush target)
  std::uint64_t finished_ = 0;   // events delivered or dead-lettered
  int flushers_ = 0;
  bool stopping_ = false;
  bool closed_ = false;
  PipelineStats stats_;
  std::map<std::string, std::string> held_;  // code -> reason (under mu_)
  std::map<std::string, std::string> subscriptions_;  // billed id -> "" (active) or hold reason (under mu_)
  std::map<std::string, std::int64_t> unverified_;    // billed ids the sender waits on -> oldest ts (under mu_)
  std::atomic<bool> any_held_{false};         // lets submit() skip mu_ when nothing is held
  std::thread sender_;
};

}  // namespace llmbill
