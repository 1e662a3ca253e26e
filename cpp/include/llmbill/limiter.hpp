// This process's limits on calls in flight, per entity: a reservation of each call's upper-bound
// cost against its budgets, requests and tokens per UTC minute, parallel requests, tokens per UTC
// day. The proxy's in-process limiter (python/llmbill/proxy/limits.py states the overspend bound it
// gives, and holds the Redis twin for several processes).
//
// A call is a list of slots, one per entity it counts against (key, user, team, member, customer,
// and per-model entities): try_admit checks every slot and takes all of them or none, release gives
// them back with the tokens the call used. Rate windows are fixed minutes and days (UTC, from the
// caller's clock: `now` in seconds since the epoch). Memory follows the entities active lately: at
// the first count of a new minute the older minutes are dropped in one pass, likewise days, and
// reservations and in-flight counts are dropped when they reach zero.
//
// Thread safety: every method takes one mutex.
//
//   Limiter limiter;
//   std::vector<LimitSlot> call{{.entity = "key\x1fh", .amount = bound, .headroom = budget - spend}};
//   if (auto refused = limiter.try_admit(call, now)) { /* refused->index, refused->limit */ }
//   limiter.release(call, tokens, now);
#pragma once
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "llmbill/money.hpp"

namespace llmbill {

enum class LimitKind : std::uint8_t { budget, rpm, tpm, parallel, tpd };
std::string_view limit_kind_name(LimitKind kind);

// One entity's share of a call: what it checks and what it holds.
struct LimitSlot {
  std::string entity;             // the entity's key (one entity, one key, whoever builds it)
  Money amount;                   // held while the call is in flight
  std::optional<Money> headroom;  // max_budget - spend: refused once what calls hold reaches it
  std::optional<std::int64_t> rpm, tpm, parallel, tpd;
};

struct LimitRefusal {
  std::size_t index;  // the first slot over a limit, in the call's order
  LimitKind limit;
  Money reserved;  // what calls in flight held on that slot's entity
  double wait_s;   // until the limit may let a call through
  bool operator==(const LimitRefusal&) const = default;
};

struct MinuteCount {
  std::int64_t minute = -1;  // minutes since the epoch
  std::int64_t requests = 0;
  std::int64_t tokens = 0;
};

class Limiter {
 public:
  // Checks every slot in order — budget (held >= headroom), then rpm, tpm and parallel when any is
  // set, then tpd — and takes all of them (a request in each entity's minute, one in flight, the
  // amount held) or none.
  std::optional<LimitRefusal> try_admit(const std::vector<LimitSlot>& slots, double now);
  // Gives back what try_admit took for `slots`; the call's tokens count in each entity's minute
  // (and day, for a slot with a tpd limit).
  void release(const std::vector<LimitSlot>& slots, std::int64_t tokens, double now);

  // One entity's rate limits without a slot (a deployment's own rpm and tpm, when routing picks one).
  std::optional<std::pair<LimitKind, double>> rate_check(const std::string& entity, std::optional<std::int64_t> rpm,
                                                         std::optional<std::int64_t> tpm,
                                                         std::optional<std::int64_t> parallel, double now);
  void count_request(const std::string& entity, double now);
  void count_tokens(const std::string& entity, std::int64_t tokens, double now);

  // What is held and counted now (tests, and the refusal messages' figures).
  Money reserved_for(const std::string& entity) const;
  std::int64_t in_flight(const std::string& entity) const;
  MinuteCount minute_of(const std::string& entity) const;  // as last counted; minute -1 when none
  std::int64_t day_tokens(const std::string& entity, double now) const;
  std::size_t minutes_held() const;
  std::size_t days_held() const;
  std::size_t reservations_held() const;
  std::size_t in_flight_held() const;

 private:
  struct Day {
    std::int64_t day = -1;
    std::int64_t tokens = 0;
  };
  MinuteCount& minute_locked(const std::string& entity, double now);
  std::optional<std::pair<LimitKind, double>> rate_check_locked(const std::string& entity,
                                                                std::optional<std::int64_t> rpm,
                                                                std::optional<std::int64_t> tpm,
                                                                std::optional<std::int64_t> parallel, double now);
  std::int64_t day_tokens_locked(const std::string& entity, double now) const;
  void add_day_tokens_locked(const std::string& entity, std::int64_t tokens, double now);

  mutable std::mutex mu_;
  std::unordered_map<std::string, Money> reserved_;
  std::unordered_map<std::string, std::int64_t> in_flight_;
  std::unordered_map<std::string, MinuteCount> minutes_;
  std::int64_t pruned_minute_ = -1;  // the minute whose first count last swept out the older minutes
  std::unordered_map<std::string, Day> days_;
  std::int64_t pruned_day_ = -1;
};

}  // namespace llmbill
