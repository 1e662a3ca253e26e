#include "llmbill/guard_book.hpp"

#include <algorithm>
#include <utility>

namespace llmbill {
namespace {

bool contains(const std::vector<std::string>& names, std::string_view name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace

std::string GuardBook::entity_key(std::string_view kind, std::string_view id) {
  std::string key;
  key.reserve(kind.size() + 1 + id.size());
  key.append(kind).push_back('\x1f');
  key.append(id);
  return key;
}

void GuardBook::put(EntityKind kind, std::string_view id, EntityGuard guard) {
  std::string key = entity_key(entity_kind_name(kind), id);
  std::lock_guard lock(mu_);
  if (guard.generation != generation_) {  // every older entry is stale: memory follows the current ones
    guards_.clear();
    generation_ = guard.generation;
  }
  guards_.insert_or_assign(std::move(key), std::move(guard));
}

std::optional<LimitSlot> GuardBook::slot_locked(EntityKind kind, std::string_view id, const GuardedCall& call,
                                                Outcome& outcome) const {
  std::string key = entity_key(entity_kind_name(kind), id);
  auto it = guards_.find(key);
  if (it == guards_.end() || it->second.generation != call.generation ||
      (it->second.valid_until && call.now >= *it->second.valid_until)) {
    outcome = Outcome::stale;
    return std::nullopt;
  }
  const EntityGuard& g = it->second;
  if (!g.plain || contains(g.limited_models, call.model) ||
      (g.allowed_models && !contains(*g.allowed_models, call.model)) ||
      (!call.user.empty() && contains(g.members_with_limits, call.user))) {
    outcome = Outcome::slow;
    return std::nullopt;
  }
  LimitSlot slot{.entity = std::move(key), .amount = call.amount, .headroom = std::nullopt,
                 .rpm = g.rpm, .tpm = g.tpm, .parallel = g.parallel, .tpd = g.tpd};
  if (g.max_budget) {
    const Money pending = ledger_.get(kind, id).spend;  // recorded here, not yet in the record
    const bool new_window = g.windowed && g.reset_at && call.now >= *g.reset_at;
    slot.headroom = *g.max_budget - (new_window ? pending : g.stored_spend + pending);
  }
  return slot;
}

GuardBook::Result GuardBook::admit(const GuardedCall& call) {
  std::vector<LimitSlot> slots;
  {
    std::lock_guard lock(mu_);
    const std::pair<EntityKind, std::string_view> entities[] = {
        {EntityKind::key, call.key}, {EntityKind::user, call.user}, {EntityKind::team, call.team},
        {EntityKind::customer, call.customer}};
    slots.reserve(4);
    for (const auto& [kind, id] : entities) {
      if (id.empty()) continue;
      Outcome outcome = Outcome::admitted;
      std::optional<LimitSlot> slot = slot_locked(kind, id, call, outcome);
      if (!slot) return {outcome};
      slots.push_back(std::move(*slot));
    }
  }
  if (limiter_.try_admit(slots, call.now)) return {Outcome::refused};
  std::lock_guard lock(mu_);
  const std::uint64_t handle = next_handle_++;
  calls_.emplace(handle, std::move(slots));
  return {Outcome::admitted, handle};
}

void GuardBook::release(std::uint64_t handle, std::int64_t tokens, double now) {
  std::vector<LimitSlot> slots;
  {
    std::lock_guard lock(mu_);
    auto it = calls_.find(handle);
    if (it == calls_.end()) return;  // released already
    slots = std::move(it->second);
    calls_.erase(it);
  }
  limiter_.release(slots, tokens, now);
}

std::vector<LimitSlot> GuardBook::slots_of(std::uint64_t handle) const {
  std::lock_guard lock(mu_);
  auto it = calls_.find(handle);
  return it == calls_.end() ? std::vector<LimitSlot>{} : it->second;
}

std::size_t GuardBook::entries() const {
  std::lock_guard lock(mu_);
  return guards_.size();
}

std::size_t GuardBook::calls_held() const {
  std::lock_guard lock(mu_);
  return calls_.size();
}

}  // namespace llmbill
