// Sharded, exact usage/spend accumulator (see ledger.hpp).
//
// Decisions:
// - Every update is all-or-nothing. Totals::add and += build the new value in a copy and assign it
//   only when every checked addition succeeded. Ledger::record locks all shards it touches (in index
//   order, so two records cannot deadlock), computes every entity's new totals, and commits only if
//   none overflowed; an overflowing call leaves the ledger exactly as it was.
// - drain() swaps each shard's map out under that shard's lock, so a concurrent record lands wholly
//   before the swap (this drain) or after it (the next one) for each entity. A record's entities may
//   straddle two drains, but no count is ever lost or counted twice.
// - The map key is one byte of EntityKind followed by the id, so one hash map holds every kind.
#include "llmbill/ledger.hpp"

#include <algorithm>
#include <functional>

#include "llmbill/errors.hpp"

namespace llmbill {
namespace {

void add_count(std::int64_t& into, std::int64_t value, const char* name) {
  if (__builtin_add_overflow(into, value, &into)) {
    throw UsageError(std::string("ledger total ") + name + " overflows a 64-bit count");
  }
}

std::string composite_key(EntityKind kind, std::string_view id) {
  std::string key;
  key.reserve(id.size() + 1);
  key.push_back(static_cast<char>(kind));
  key.append(id);
  return key;
}

EntityId entity_of(const std::string& composite) {
  return EntityId{static_cast<EntityKind>(static_cast<unsigned char>(composite[0])), composite.substr(1)};
}

using Entries = std::vector<std::pair<EntityId, Totals>>;

void sort_entries(Entries& entries) {
  std::sort(entries.begin(), entries.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
}

}  // namespace

std::string_view entity_kind_name(EntityKind kind) {
  switch (kind) {
    case EntityKind::key: return "key";
    case EntityKind::user: return "user";
    case EntityKind::team: return "team";
    case EntityKind::customer: return "customer";
    case EntityKind::model: return "model";
  }
  throw Error("unknown EntityKind " + std::to_string(static_cast<int>(kind)));
}

void Totals::add(const Usage& usage, Money cost) {
  usage.validate();
  Totals next = *this;
  add_count(next.requests, 1, "requests");
  add_count(next.prompt_tokens, usage.prompt_tokens, "prompt_tokens");
  add_count(next.completion_tokens, usage.completion_tokens, "completion_tokens");
  add_count(next.cached_tokens, usage.cached_tokens, "cached_tokens");
  add_count(next.cache_creation_tokens, usage.cache_creation_tokens, "cache_creation_tokens");
  add_count(next.reasoning_tokens, usage.reasoning_tokens, "reasoning_tokens");
  next.spend += cost;  // throws MoneyOverflowError
  *this = next;
}

Totals& Totals::operator+=(const Totals& other) {
  Totals next = *this;
  add_count(next.requests, other.requests, "requests");
  add_count(next.prompt_tokens, other.prompt_tokens, "prompt_tokens");
  add_count(next.completion_tokens, other.completion_tokens, "completion_tokens");
  add_count(next.cached_tokens, other.cached_tokens, "cached_tokens");
  add_count(next.cache_creation_tokens, other.cache_creation_tokens, "cache_creation_tokens");
  add_count(next.reasoning_tokens, other.reasoning_tokens, "reasoning_tokens");
  next.spend += other.spend;
  return *this = next;
}

Ledger::Shard& Ledger::shard_for(const std::string& composite) {
  return shards_[std::hash<std::string>{}(composite) % kShards];
}

const Ledger::Shard& Ledger::shard_for(const std::string& composite) const {
  return shards_[std::hash<std::string>{}(composite) % kShards];
}

void Ledger::record(const Attribution& who, std::string_view model, const Usage& usage, Money cost) {
  usage.validate();

  struct Target {
    std::string key;
    Shard* shard;
    Totals next;
  };
  std::array<Target, 5> targets;
  std::size_t n = 0;
  auto want = [&](EntityKind kind, std::string_view id) {
    if (id.empty()) return;
    targets[n].key = composite_key(kind, id);
    targets[n].shard = &shard_for(targets[n].key);
    ++n;
  };
  want(EntityKind::key, who.key);
  want(EntityKind::user, who.user);
  want(EntityKind::team, who.team);
  want(EntityKind::customer, who.customer);
  want(EntityKind::model, model);
  if (n == 0) return;

  // Lock each distinct shard once, lowest address first (shards_ is an array: a fixed total order).
  std::array<Shard*, 5> order;
  for (std::size_t i = 0; i < n; ++i) order[i] = targets[i].shard;
  std::sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(n));
  auto last = std::unique(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(n));
  std::array<std::unique_lock<std::mutex>, 5> locks;
  for (auto it = order.begin(); it != last; ++it) {
    locks[static_cast<std::size_t>(it - order.begin())] = std::unique_lock<std::mutex>((*it)->mutex);
  }

  // Find or create each entry, compute every new total, and only then write: nothing changes if an
  // addition overflows (or an allocation fails), and entries created here are removed again.
  std::array<Totals*, 5> slots{};
  std::array<bool, 5> created{};
  try {
    for (std::size_t i = 0; i < n; ++i) {
      auto [it, inserted] = targets[i].shard->totals.try_emplace(targets[i].key);
      slots[i] = &it->second;  // references into an unordered_map survive rehashing
      created[i] = inserted;
      targets[i].next = it->second;
      targets[i].next.add(usage, cost);
    }
  } catch (...) {
    for (std::size_t i = 0; i < n; ++i) {
      if (created[i]) targets[i].shard->totals.erase(targets[i].key);
    }
    throw;
  }
  for (std::size_t i = 0; i < n; ++i) *slots[i] = targets[i].next;
}

Totals Ledger::get(EntityKind kind, std::string_view id) const {
  std::string key = composite_key(kind, id);
  const Shard& shard = shard_for(key);
  std::lock_guard<std::mutex> lock(shard.mutex);
  auto found = shard.totals.find(key);
  return found == shard.totals.end() ? Totals{} : found->second;
}

std::vector<std::pair<EntityId, Totals>> Ledger::snapshot() const {
  Entries entries;
  for (const Shard& shard : shards_) {
    std::lock_guard<std::mutex> lock(shard.mutex);
    for (const auto& [key, totals] : shard.totals) entries.emplace_back(entity_of(key), totals);
  }
  sort_entries(entries);
  return entries;
}

std::vector<std::pair<EntityId, Totals>> Ledger::drain() {
  Entries entries;
  for (Shard& shard : shards_) {
    std::unordered_map<std::string, Totals> taken;
    {
      std::lock_guard<std::mutex> lock(shard.mutex);
      taken.swap(shard.totals);
    }
    for (auto& [key, totals] : taken) entries.emplace_back(entity_of(key), totals);
  }
  sort_entries(entries);
  return entries;
}

}  // namespace llmbill
