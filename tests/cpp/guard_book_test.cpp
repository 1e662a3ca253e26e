#include "llmbill/guard_book.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using llmbill::EntityGuard;
using llmbill::EntityKind;
using llmbill::GuardBook;
using llmbill::GuardedCall;
using llmbill::Ledger;
using llmbill::Limiter;
using llmbill::Money;
using llmbill::Usage;
using Outcome = llmbill::GuardBook::Outcome;

namespace {

Money usd(const char* text) { return Money::parse_usd(text); }
constexpr double kNow = 1'800'000'000.0;
constexpr std::uint64_t kGen = 7;

EntityGuard budget(const char* max, const char* stored) {
  EntityGuard g;
  g.generation = kGen;
  g.max_budget = usd(max);
  g.stored_spend = usd(stored);
  return g;
}

GuardedCall call(Money amount, std::string_view customer = "c", std::string_view model = "gpt-4o") {
  return GuardedCall{.key = "h", .user = "", .team = "", .customer = customer, .model = model, .amount = amount,
                     .now = kNow, .generation = kGen};
}

struct Book {
  Limiter limiter;
  Ledger ledger;
  GuardBook book{limiter, ledger};
};

}  // namespace

TEST(GuardBook, AdmitsAPlainCallWithEachEntitysHeadroomAndReleasesIt) {
  Book b;
  b.book.put(EntityKind::key, "h", budget("10", "4"));
  b.book.put(EntityKind::customer, "c", budget("1", "0.25"));
  Usage usage;
  usage.prompt_tokens = 1;
  b.ledger.record({.key = "h", .customer = "c"}, "gpt-4o", usage, usd("0.5"));  // spent here, not flushed

  auto admitted = b.book.admit(call(usd("0.1")));
  ASSERT_EQ(admitted.outcome, Outcome::admitted);
  auto slots = b.book.slots_of(admitted.handle);
  ASSERT_EQ(slots.size(), 2u);
  EXPECT_EQ(slots[0].entity, GuardBook::entity_key("key", "h"));
  EXPECT_EQ(*slots[0].headroom, usd("5.5"));  // 10 - (4 stored + 0.5 pending)
  EXPECT_EQ(slots[1].entity, GuardBook::entity_key("customer", "c"));
  EXPECT_EQ(*slots[1].headroom, usd("0.25"));  // 1 - (0.25 + 0.5)
  EXPECT_EQ(slots[1].amount, usd("0.1"));
  EXPECT_EQ(b.limiter.reserved_for(slots[1].entity), usd("0.1"));

  b.book.release(admitted.handle, 42, kNow);
  EXPECT_EQ(b.limiter.reservations_held(), 0u);
  EXPECT_EQ(b.limiter.minute_of(slots[0].entity).tokens, 42);
  EXPECT_EQ(b.book.calls_held(), 0u);
  b.book.release(admitted.handle, 42, kNow);  // twice: nothing more
  EXPECT_EQ(b.limiter.minute_of(slots[0].entity).tokens, 42);
}

TEST(GuardBook, AnEntityNotCompiledAtTheCallsGenerationIsStale) {
  Book b;
  b.book.put(EntityKind::key, "h", budget("10", "0"));
  EXPECT_EQ(b.book.admit(call(usd("0.1"))).outcome, Outcome::stale);  // the customer was never compiled
  EXPECT_EQ(b.book.admit(call(usd("0.1"), "")).outcome, Outcome::admitted);
  GuardedCall later = call(usd("0.1"), "");
  later.generation = kGen + 1;
  EXPECT_EQ(b.book.admit(later).outcome, Outcome::stale);

  EntityGuard increased = budget("10", "0");
  increased.valid_until = kNow + 1;  // a temporary increase that ends in a second
  b.book.put(EntityKind::key, "h", increased);
  EXPECT_EQ(b.book.admit(call(usd("0.1"), "")).outcome, Outcome::admitted);
  GuardedCall after = call(usd("0.1"), "");
  after.now = kNow + 1;
  EXPECT_EQ(b.book.admit(after).outcome, Outcome::stale);
}

TEST(GuardBook, AnEntryOfANewerGenerationClearsTheOlderOnes) {
  Book b;
  b.book.put(EntityKind::key, "h", budget("10", "0"));
  b.book.put(EntityKind::customer, "c", budget("10", "0"));
  EntityGuard newer = budget("10", "0");
  newer.generation = kGen + 1;
  b.book.put(EntityKind::key, "h", newer);
  EXPECT_EQ(b.book.entries(), 1u);
}

TEST(GuardBook, WhatThePythonPlanDecidesGoesTheSlowWay) {
  Book b;
  EntityGuard blocked = budget("10", "0");
  blocked.plain = false;
  b.book.put(EntityKind::key, "h", blocked);
  b.book.put(EntityKind::customer, "c", budget("10", "0"));
  EXPECT_EQ(b.book.admit(call(usd("0.1"))).outcome, Outcome::slow);

  EntityGuard per_model = budget("10", "0");
  per_model.limited_models = {"gpt-4o"};
  b.book.put(EntityKind::key, "h", per_model);
  EXPECT_EQ(b.book.admit(call(usd("0.1"))).outcome, Outcome::slow);
  EXPECT_EQ(b.book.admit(call(usd("0.1"), "c", "other")).outcome, Outcome::admitted);

  EntityGuard some_models = budget("10", "0");
  some_models.allowed_models = std::vector<std::string>{"other"};
  b.book.put(EntityKind::customer, "c", some_models);
  EXPECT_EQ(b.book.admit(call(usd("0.1"), "c", "gpt-4o")).outcome, Outcome::slow);

  EntityGuard team = budget("10", "0");
  team.members_with_limits = {"u"};
  b.book.put(EntityKind::key, "h", budget("10", "0"));
  b.book.put(EntityKind::user, "u", budget("10", "0"));
  b.book.put(EntityKind::team, "t", team);
  GuardedCall member = call(usd("0.1"), "");
  member.user = "u";
  member.team = "t";
  EXPECT_EQ(b.book.admit(member).outcome, Outcome::slow);
}

TEST(GuardBook, ACallALimitRefusesIsRefusedHoldingNothing) {
  Book b;
  b.book.put(EntityKind::key, "h", budget("10", "0"));
  b.book.put(EntityKind::customer, "c", budget("1", "0.95"));
  EXPECT_EQ(b.book.admit(call(usd("0.1"))).outcome, Outcome::admitted);  // 0.05 of headroom: admitted
  EXPECT_EQ(b.book.admit(call(usd("0.1"))).outcome, Outcome::refused);   // 0.1 held >= 0.05
  EXPECT_EQ(b.limiter.reserved_for(GuardBook::entity_key("key", "h")), usd("0.1"));  // only the first
}

TEST(GuardBook, PastTheResetOnlyTheLedgersSpendCounts) {
  Book b;
  EntityGuard windowed = budget("1", "0.9");
  windowed.windowed = true;
  windowed.reset_at = kNow - 1;  // the window rolled over; the flush has not written the reset yet
  b.book.put(EntityKind::key, "h", windowed);
  auto admitted = b.book.admit(call(usd("0.1"), ""));
  ASSERT_EQ(admitted.outcome, Outcome::admitted);
  EXPECT_EQ(*b.book.slots_of(admitted.handle)[0].headroom, usd("1"));
  b.book.release(admitted.handle, 0, kNow);
  EntityGuard not_yet = windowed;
  not_yet.reset_at = kNow + 1;
  b.book.put(EntityKind::key, "h", not_yet);
  auto before = b.book.admit(call(usd("0.01"), ""));
  ASSERT_EQ(before.outcome, Outcome::admitted);
  EXPECT_EQ(*b.book.slots_of(before.handle)[0].headroom, usd("0.1"));
}
