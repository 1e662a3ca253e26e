// The guards' state for a proxy call, in the core: each entity's limits as its record says them,
// its stored spend, and the check of a whole call — every entity's slot built and taken in the
// limiter — in one step. What the proxy's Python plan (python/llmbill/proxy/guards.py) does for a
// call, for the calls whose every entity is plain (see `EntityGuard::plain` below); for any other the
// answer is `slow` and the Python plan decides, against the same limiter.
//
// The entries are compiled by the proxy from its records (entity_limits, the one reader of a
// record's limits) and stamped with its record cache's generation, which moves with every record
// the cache installs, replaces or forgets and every spend it writes into one. A call passes the
// generation it sees; an entry of another generation is `stale`, and the proxy compiles the
// call's entities again before asking once more. So an entry never outlives what it was made from,
// and the book holds only entries of the latest generation (an entry of a newer one clears it).
//
// A call's spend for an entity = the stored spend (the record's, as compiled) + what this process's
// ledger holds for it (recorded, not yet flushed); past the record's budget_reset_at, with a budget
// window set, only the ledger's. The proxy asks only while no flush is writing (the ledger then
// holds everything not yet in the records).
//
// Thread safety: the book's map under one mutex; the limiter and the ledger are thread-safe.
#pragma once
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "llmbill/ledger.hpp"
#include "llmbill/limiter.hpp"
#include "llmbill/money.hpp"

namespace llmbill {

struct EntityGuard {
  std::uint64_t generation = 0;
  std::optional<Money> max_budget;
  Money stored_spend;
  std::optional<double> reset_at;  // budget_reset_at, seconds since the epoch
  bool windowed = false;           // a budget_duration is set (reset_at then starts a new window)
  std::optional<std::int64_t> rpm, tpm, parallel, tpd;
  std::optional<double> valid_until;  // a temporary budget increase's end: the entry is stale after it
  // Not plain: blocked, its budget not exact in units, its calls asking for prepaid credits. A call
  // of a non-plain entity goes the slow way (which refuses it or does what the book does not).
  bool plain = true;
  std::vector<std::string> limited_models;                // per-model limits: a call to one is slow
  std::optional<std::vector<std::string>> allowed_models;  // a customer's `models`: others are slow
  std::vector<std::string> members_with_limits;           // a team's: a member's call is slow
};

// A call's entities: the key's hash, its user and team ("" for none) and the customer ("" for none).
struct GuardedCall {
  std::string_view key, user, team, customer, model;
  Money amount;  // the call's upper bound, reserved against every entity
  double now;    // seconds since the epoch
  std::uint64_t generation;
};

class GuardBook {
 public:
  enum class Outcome : std::uint8_t { admitted, slow, stale, refused };
  struct Result {
    Outcome outcome;
    std::uint64_t handle = 0;  // admitted: what release() takes
  };

  GuardBook(Limiter& limiter, const Ledger& ledger) : limiter_(limiter), ledger_(ledger) {}

  void put(EntityKind kind, std::string_view id, EntityGuard guard);
  // Slow when an entity is not plain, the model has per-model limits or is not allowed, or the key's
  // user has member limits in its team; refused, holding nothing, when a limit refuses the call (the
  // slow way, run on the same state, refuses it too and words the refusal).
  Result admit(const GuardedCall& call);
  // Gives back what the call holds; its tokens count in each entity's minute (and day).
  void release(std::uint64_t handle, std::int64_t tokens, double now);
  // The slots an admitted call holds (tests compare them with the Python plan's).
  std::vector<LimitSlot> slots_of(std::uint64_t handle) const;
  std::size_t entries() const;
  std::size_t calls_held() const;

  // An entity's key in the limiter: kind, a unit separator, id — as the proxy writes it.
  static std::string entity_key(std::string_view kind, std::string_view id);

 private:
  std::optional<LimitSlot> slot_locked(EntityKind kind, std::string_view id, const GuardedCall& call,
                                       Outcome& outcome) const;

  Limiter& limiter_;
  const Ledger& ledger_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, EntityGuard> guards_;  // by entity_key, all of generation_
  std::uint64_t generation_ = 0;
  std::unordered_map<std::uint64_t, std::vector<LimitSlot>> calls_;
  std::uint64_t next_handle_ = 1;
};

}  // namespace llmbill
