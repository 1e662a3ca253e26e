// How a reply from Lago's batch endpoint is read, as plain functions the tests call without a thread
// (../shared/docs/lago-api.md, "How a sender classifies replies").
//
// Every event of a batch ends in exactly one bucket: delivered (200, or a duplicate
// `value_already_exist`, which means an earlier attempt already stored it), dead (Lago refused that
// event for a reason a resend cannot fix), or retry (resend, as a new batch if others were split off).
// The batch as a whole gets one action telling the sender how long to wait before the next attempt.
#pragma once
#include <chrono>
#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace llmbill {

struct HttpReply {
  long status = 0;  // 0: no reply (connection refused, reset, timeout)
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string transport_error;                 // set when status == 0
};

enum class ReplyAction {
  done,          // nothing left to resend from this batch (or resend the rest at once)
  backoff,       // 5xx, timeout, connection error: jittered exponential backoff, then resend
  rate_limited,  // 429: wait `wait` (X-RateLimit-Reset / Retry-After), then resend
  config_error,  // 401/403/404 and unexpected statuses: keep the events, alert, retry slowly
  split,         // too many events (422 too_many_events, 413): resend in smaller batches (a single
                 // event answered 413 is dead-lettered instead: no smaller batch exists)
};

struct ReplyOutcome {
  ReplyAction action = ReplyAction::done;
  std::vector<std::size_t> delivered;   // indexes into the batch
  std::vector<std::size_t> duplicates;  // subset of delivered: already stored by an earlier attempt
  std::vector<std::size_t> dead;        // refused for good; dead_reasons[i] says why
  std::map<std::size_t, std::string> dead_reasons;
  std::vector<std::size_t> retry;
  std::chrono::milliseconds wait{0};    // for rate_limited: the server's reset time
  std::string error;                    // a one-line description for logs and counters
};

ReplyOutcome classify_reply(const HttpReply& reply, std::size_t batch_size);

// {"events":[e0,e1,...]} from event JSON objects (already serialised).
std::string batch_body(const std::vector<const std::string*>& events);

// LAGO_API_BASE with or without a trailing slash or /api/v1 → ".../api/v1/events/batch".
std::string lago_batch_url(std::string_view api_base);

// The URL with the password of its user info replaced by *** ("https://u:***@host/..."), for
// anything shown to people (readiness, logs); unchanged when it has none.
std::string redact_url_password(std::string_view url);

// The sender's batch size limit. A split (413, too_many_events) halves it at once; after
// kGrowAfter successful batches in a row it doubles back towards max_batch, so one 413 (a proxy in
// front of Lago, one oversized batch) does not cap every later batch for the life of the process.
class BatchLimit {
 public:
  static constexpr int kGrowAfter = 8;
  explicit BatchLimit(std::size_t max_batch) : max_(max_batch < 1 ? 1 : max_batch), limit_(max_) {}
  std::size_t get() const { return limit_; }
  void on_split(std::size_t sent) {
    limit_ = sent / 2 < 1 ? 1 : sent / 2;
    successes_ = 0;
  }
  void on_success() {
    if (limit_ < max_ && ++successes_ >= kGrowAfter) {
      limit_ = limit_ * 2 < max_ ? limit_ * 2 : max_;
      successes_ = 0;
    }
  }

 private:
  std::size_t max_;
  std::size_t limit_;
  int successes_ = 0;
};

// Backoff for the n-th consecutive failure (n >= 1): min(cap, base * 2^(n-1)) scaled by a uniform
// jitter in [0.5, 1.0], from `random01` in [0, 1).
std::chrono::milliseconds backoff_delay(int failures, std::chrono::milliseconds base, std::chrono::milliseconds cap,
                                        double random01);

}  // namespace llmbill
