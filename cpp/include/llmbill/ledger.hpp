// A thread-safe accumulator of usage and spend per entity (key, internal user, team, customer) and
// per model. Many threads record at once; a persister periodically drains it and writes the deltas.
//
// Money is exact (Money, integer units). Thread safety: every method may be called concurrently from
// any thread without the GIL; the map is sharded so unrelated entities do not contend.
//
//   Ledger ledger;
//   ledger.record({.key = "hash", .team = "t1"}, "gpt-4o", usage, cost);
//   ledger.get(EntityKind::team, "t1").spend == cost
#pragma once
#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "llmbill/money.hpp"
#include "llmbill/usage.hpp"

namespace llmbill {

enum class EntityKind : std::uint8_t { key, user, team, customer, model };
std::string_view entity_kind_name(EntityKind kind);

// Who a call is attributed to; an empty string means "none".
struct Attribution {
  std::string key;       // hashed virtual key
  std::string user;      // internal user id
  std::string team;      // team id
  std::string customer;  // end user (the OpenAI `user` field)
};

struct Totals {
  std::int64_t requests = 0;
  std::int64_t prompt_tokens = 0;
  std::int64_t completion_tokens = 0;
  std::int64_t cached_tokens = 0;
  std::int64_t cache_creation_tokens = 0;
  std::int64_t reasoning_tokens = 0;
  Money spend;

  void add(const Usage& usage, Money cost);  // throws MoneyOverflowError / UsageError on overflow
  Totals& operator+=(const Totals& other);
  bool operator==(const Totals&) const = default;
};

struct EntityId {
  EntityKind kind;
  std::string id;
  bool operator==(const EntityId&) const = default;
  auto operator<=>(const EntityId&) const = default;
};

class Ledger {
 public:
  // Adds one call to each non-empty id of `who` and to `model` (when non-empty). All or nothing:
  // invalid usage (UsageError) or an overflowing total (UsageError / MoneyOverflowError) changes nothing.
  void record(const Attribution& who, std::string_view model, const Usage& usage, Money cost);
  // Totals since the last drain; zero totals for an unknown id.
  Totals get(EntityKind kind, std::string_view id) const;
  // Every entity with its totals since the last drain, sorted by (kind, id).
  std::vector<std::pair<EntityId, Totals>> snapshot() const;
  // Like snapshot(), and resets what it returns: a record racing with drain lands either in this
  // drain or in the next one, never in both or neither.
  std::vector<std::pair<EntityId, Totals>> drain();

 private:
  static constexpr std::size_t kShards = 16;
  struct Shard {
    mutable std::mutex mutex;
    std::unordered_map<std::string, Totals> totals;  // key: kind byte + id
  };
  Shard& shard_for(const std::string& composite);
  const Shard& shard_for(const std::string& composite) const;
  std::array<Shard, kShards> shards_;
};

}  // namespace llmbill
