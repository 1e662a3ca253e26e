#include "llmbill/limiter.hpp"

#include <cmath>
#include <iterator>

namespace llmbill {
namespace {

std::int64_t minute_of_time(double now) { return static_cast<std::int64_t>(std::floor(now / 60.0)); }
std::int64_t day_of_time(double now) { return static_cast<std::int64_t>(std::floor(now / 86400.0)); }

template <class Map, class Keep>
void erase_unless(Map& map, Keep keep) {
  for (auto it = map.begin(); it != map.end();) it = keep(it->second) ? std::next(it) : map.erase(it);
}

}  // namespace

std::string_view limit_kind_name(LimitKind kind) {
  switch (kind) {
    case LimitKind::budget: return "budget";
    case LimitKind::rpm: return "rpm";
    case LimitKind::tpm: return "tpm";
    case LimitKind::parallel: return "parallel";
    case LimitKind::tpd: return "tpd";
  }
  return "?";
}

MinuteCount& Limiter::minute_locked(const std::string& entity, double now) {
  const std::int64_t current = minute_of_time(now);
  if (current > pruned_minute_) {  // the first count of a new minute: the older ones are over
    pruned_minute_ = current;
    erase_unless(minutes_, [current](const MinuteCount& m) { return m.minute >= current; });
  }
  MinuteCount& m = minutes_[entity];
  if (m.minute != current) m = MinuteCount{current, 0, 0};
  return m;
}

std::optional<std::pair<LimitKind, double>> Limiter::rate_check_locked(const std::string& entity,
                                                                       std::optional<std::int64_t> rpm,
                                                                       std::optional<std::int64_t> tpm,
                                                                       std::optional<std::int64_t> parallel,
                                                                       double now) {
  const MinuteCount& m = minute_locked(entity, now);
  const double wait = 60.0 - std::fmod(now, 60.0);
  if (rpm && m.requests >= *rpm) return std::pair{LimitKind::rpm, wait};
  if (tpm && m.tokens >= *tpm) return std::pair{LimitKind::tpm, wait};
  if (parallel) {
    auto it = in_flight_.find(entity);
    if ((it == in_flight_.end() ? 0 : it->second) >= *parallel) return std::pair{LimitKind::parallel, 1.0};
  }
  return std::nullopt;
}

std::int64_t Limiter::day_tokens_locked(const std::string& entity, double now) const {
  auto it = days_.find(entity);
  return it != days_.end() && it->second.day == day_of_time(now) ? it->second.tokens : 0;
}

void Limiter::add_day_tokens_locked(const std::string& entity, std::int64_t tokens, double now) {
  const std::int64_t today = day_of_time(now);
  if (today > pruned_day_) {  // yesterday's counts are over: memory follows today's entities
    pruned_day_ = today;
    erase_unless(days_, [today](const Day& d) { return d.day >= today; });
  }
  const std::int64_t before = day_tokens_locked(entity, now);
  days_[entity] = Day{today, before + tokens};
}

std::optional<LimitRefusal> Limiter::try_admit(const std::vector<LimitSlot>& slots, double now) {
  std::lock_guard lock(mu_);
  for (std::size_t i = 0; i < slots.size(); ++i) {
    const LimitSlot& slot = slots[i];
    auto held = reserved_.find(slot.entity);
    const Money reserved = held == reserved_.end() ? Money() : held->second;
    if (slot.headroom && reserved >= *slot.headroom) return LimitRefusal{i, LimitKind::budget, reserved, 0.0};
    if (slot.rpm || slot.tpm || slot.parallel) {  // else its minute is counted below, unchecked
      if (auto refused = rate_check_locked(slot.entity, slot.rpm, slot.tpm, slot.parallel, now)) {
        return LimitRefusal{i, refused->first, reserved, refused->second};
      }
    }
    if (slot.tpd && day_tokens_locked(slot.entity, now) >= *slot.tpd) {
      return LimitRefusal{i, LimitKind::tpd, reserved, 86400.0 - std::fmod(now, 86400.0)};
    }
  }
  for (const LimitSlot& slot : slots) {
    ++minute_locked(slot.entity, now).requests;
    ++in_flight_[slot.entity];
    if (!slot.amount.is_zero()) reserved_[slot.entity] += slot.amount;
  }
  return std::nullopt;
}

void Limiter::release(const std::vector<LimitSlot>& slots, std::int64_t tokens, double now) {
  std::lock_guard lock(mu_);
  for (const LimitSlot& slot : slots) {
    minute_locked(slot.entity, now).tokens += tokens;
    if (auto it = in_flight_.find(slot.entity); it != in_flight_.end() && --it->second <= 0) in_flight_.erase(it);
    if (!slot.amount.is_zero()) {
      auto it = reserved_.find(slot.entity);
      const Money rest = (it == reserved_.end() ? Money() : it->second) - slot.amount;
      if (rest > Money()) {
        reserved_[slot.entity] = rest;
      } else if (it != reserved_.end()) {
        reserved_.erase(it);
      }
    }
    if (slot.tpd) add_day_tokens_locked(slot.entity, tokens, now);
  }
}

std::optional<std::pair<LimitKind, double>> Limiter::rate_check(const std::string& entity,
                                                                std::optional<std::int64_t> rpm,
                                                                std::optional<std::int64_t> tpm,
                                                                std::optional<std::int64_t> parallel, double now) {
  std::lock_guard lock(mu_);
  return rate_check_locked(entity, rpm, tpm, parallel, now);
}

void Limiter::count_request(const std::string& entity, double now) {
  std::lock_guard lock(mu_);
  ++minute_locked(entity, now).requests;
}

void Limiter::count_tokens(const std::string& entity, std::int64_t tokens, double now) {
  std::lock_guard lock(mu_);
  minute_locked(entity, now).tokens += tokens;
}

Money Limiter::reserved_for(const std::string& entity) const {
  std::lock_guard lock(mu_);
  auto it = reserved_.find(entity);
  return it == reserved_.end() ? Money() : it->second;
}

std::int64_t Limiter::in_flight(const std::string& entity) const {
  std::lock_guard lock(mu_);
  auto it = in_flight_.find(entity);
  return it == in_flight_.end() ? 0 : it->second;
}

MinuteCount Limiter::minute_of(const std::string& entity) const {
  std::lock_guard lock(mu_);
  auto it = minutes_.find(entity);
  return it == minutes_.end() ? MinuteCount{} : it->second;
}

std::int64_t Limiter::day_tokens(const std::string& entity, double now) const {
  std::lock_guard lock(mu_);
  return day_tokens_locked(entity, now);
}

std::size_t Limiter::minutes_held() const {
  std::lock_guard lock(mu_);
  return minutes_.size();
}

std::size_t Limiter::days_held() const {
  std::lock_guard lock(mu_);
  return days_.size();
}

std::size_t Limiter::reservations_held() const {
  std::lock_guard lock(mu_);
  return reserved_.size();
}

std::size_t Limiter::in_flight_held() const {
  std::lock_guard lock(mu_);
  return in_flight_.size();
}

}  // namespace llmbill
