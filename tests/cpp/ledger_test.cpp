#include "llmbill/ledger.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "llmbill/errors.hpp"

using llmbill::Attribution;
using llmbill::EntityId;
using llmbill::EntityKind;
using llmbill::Ledger;
using llmbill::Money;
using llmbill::Totals;
using llmbill::Usage;

namespace {

Usage make(std::int64_t prompt, std::int64_t completion, std::int64_t cached = 0,
           std::int64_t creation = 0, std::int64_t reasoning = 0) {
  Usage u;
  u.prompt_tokens = prompt;
  u.completion_tokens = completion;
  u.cached_tokens = cached;
  u.cache_creation_tokens = creation;
  u.reasoning_tokens = reasoning;
  return u;
}

Totals totals_of(std::int64_t requests, const Usage& u, Money spend) {
  Totals t;
  t.requests = requests;
  t.prompt_tokens = u.prompt_tokens * requests;
  t.completion_tokens = u.completion_tokens * requests;
  t.cached_tokens = u.cached_tokens * requests;
  t.cache_creation_tokens = u.cache_creation_tokens * requests;
  t.reasoning_tokens = u.reasoning_tokens * requests;
  t.spend = spend;
  return t;
}

}  // namespace

TEST(Ledger, EntityKindNames) {
  EXPECT_EQ(llmbill::entity_kind_name(EntityKind::key), "key");
  EXPECT_EQ(llmbill::entity_kind_name(EntityKind::user), "user");
  EXPECT_EQ(llmbill::entity_kind_name(EntityKind::team), "team");
  EXPECT_EQ(llmbill::entity_kind_name(EntityKind::customer), "customer");
  EXPECT_EQ(llmbill::entity_kind_name(EntityKind::model), "model");
}

TEST(Ledger, RecordAttributesToEveryNonEmptyId) {
  Ledger ledger;
  Usage u = make(100, 20, 30, 10, 5);
  Money cost = Money::parse_usd("0.001");
  ledger.record({.key = "hk", .user = "u1", .team = "t1", .customer = "c1"}, "gpt-4o", u, cost);
  Totals want = totals_of(1, u, cost);
  EXPECT_EQ(ledger.get(EntityKind::key, "hk"), want);
  EXPECT_EQ(ledger.get(EntityKind::user, "u1"), want);
  EXPECT_EQ(ledger.get(EntityKind::team, "t1"), want);
  EXPECT_EQ(ledger.get(EntityKind::customer, "c1"), want);
  EXPECT_EQ(ledger.get(EntityKind::model, "gpt-4o"), want);
  // Same id string under another kind is another entity.
  EXPECT_EQ(ledger.get(EntityKind::team, "hk"), Totals{});

  auto snap = ledger.snapshot();
  ASSERT_EQ(snap.size(), 5u);
  EXPECT_EQ(snap[0].first, (EntityId{EntityKind::key, "hk"}));
  EXPECT_EQ(snap[1].first, (EntityId{EntityKind::user, "u1"}));
  EXPECT_EQ(snap[2].first, (EntityId{EntityKind::team, "t1"}));
  EXPECT_EQ(snap[3].first, (EntityId{EntityKind::customer, "c1"}));
  EXPECT_EQ(snap[4].first, (EntityId{EntityKind::model, "gpt-4o"}));
}

TEST(Ledger, SkipsEmptyIds) {
  Ledger ledger;
  ledger.record({.key = "", .user = "", .team = "t1", .customer = ""}, "", make(1, 1), Money{});
  auto snap = ledger.snapshot();
  ASSERT_EQ(snap.size(), 1u);
  EXPECT_EQ(snap[0].first, (EntityId{EntityKind::team, "t1"}));
  EXPECT_EQ(ledger.get(EntityKind::key, ""), Totals{});
  EXPECT_EQ(ledger.get(EntityKind::model, ""), Totals{});

  Ledger empty;
  empty.record({}, "", make(1, 1), Money::parse_usd("1"));
  EXPECT_TRUE(empty.snapshot().empty());
}

TEST(Ledger, MoneySumsAreExact) {
  Ledger ledger;
  Money price = Money::from_usd_price(3e-7);
  for (int i = 0; i < 1000; ++i) ledger.record({.key = "k"}, "m", make(1, 0), price);
  EXPECT_EQ(ledger.get(EntityKind::key, "k").spend.to_usd_string(), "0.0003");
  EXPECT_EQ(ledger.get(EntityKind::model, "m").requests, 1000);
  EXPECT_EQ(ledger.get(EntityKind::model, "m").prompt_tokens, 1000);
}

TEST(Ledger, SnapshotSortsAndDrainResets) {
  Ledger ledger;
  ledger.record({.team = "b"}, "", make(1, 0), Money::parse_usd("0.5"));
  ledger.record({.team = "a"}, "", make(2, 0), Money::parse_usd("0.25"));
  ledger.record({.key = "z"}, "", make(3, 0), Money{});
  auto snap = ledger.snapshot();
  ASSERT_EQ(snap.size(), 3u);
  EXPECT_EQ(snap[0].first, (EntityId{EntityKind::key, "z"}));
  EXPECT_EQ(snap[1].first, (EntityId{EntityKind::team, "a"}));
  EXPECT_EQ(snap[2].first, (EntityId{EntityKind::team, "b"}));

  auto drained = ledger.drain();
  EXPECT_EQ(drained, snap);
  EXPECT_TRUE(ledger.snapshot().empty());
  EXPECT_TRUE(ledger.drain().empty());
  EXPECT_EQ(ledger.get(EntityKind::team, "a"), Totals{});
  ledger.record({.team = "a"}, "", make(2, 0), Money::parse_usd("0.25"));
  EXPECT_EQ(ledger.get(EntityKind::team, "a").requests, 1);
}

TEST(Totals, AddAndMergeAreCheckedAndAtomic) {
  constexpr auto kMax = std::numeric_limits<std::int64_t>::max();
  Totals t;
  t.add(make(10, 4, 2, 1, 3), Money::parse_usd("0.1"));
  Totals before = t;
  EXPECT_THROW(t.add(make(kMax, 0), Money{}), llmbill::UsageError);
  EXPECT_EQ(t, before);
  EXPECT_THROW(t.add(make(1, 0), Money::from_units(std::numeric_limits<llmbill::int128>::max())),
               llmbill::MoneyOverflowError);
  EXPECT_EQ(t, before);
  EXPECT_THROW(t.add(make(1, 0, 2), Money{}), llmbill::UsageError);  // invalid usage
  EXPECT_EQ(t, before);

  Totals sum = t;
  sum += t;
  EXPECT_EQ(sum, totals_of(2, make(10, 4, 2, 1, 3), Money::parse_usd("0.2")));
  Totals huge;
  huge.completion_tokens = kMax;
  Totals kept = sum;
  EXPECT_THROW(sum += huge, llmbill::UsageError);
  EXPECT_EQ(sum, kept);
}

TEST(Ledger, OverflowLeavesEveryEntityUnchanged) {
  Ledger ledger;
  ledger.record({.key = "k", .team = "t"}, "m", make(1, 0), Money{});
  // Push only the team to the brink, then record on key+team+model: the team overflows.
  Usage big = make(std::numeric_limits<std::int64_t>::max() - 1, 0);
  ledger.record({.team = "t"}, "", big, Money{});
  auto before = ledger.snapshot();
  EXPECT_THROW(ledger.record({.key = "k", .user = "new-user", .team = "t"}, "m", make(5, 0), Money{}),
               llmbill::UsageError);
  EXPECT_EQ(ledger.snapshot(), before);  // no partial update, no empty entry for new-user
  EXPECT_THROW(ledger.record({.key = "k"}, "m", make(1, 0, 5), Money{}), llmbill::UsageError);
  EXPECT_EQ(ledger.snapshot(), before);
}

TEST(Ledger, ConcurrentRecordAndDrainIsExact) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 10000;
  Ledger ledger;
  const Usage usage = make(12, 7, 3, 2, 1);
  const Money price = Money::from_usd_price(3e-7);

  std::atomic<int> running{kThreads};
  std::map<EntityId, Totals> drained;
  int drains = 0;
  std::thread drainer([&] {
    while (running.load() > 0) {
      for (auto& [id, totals] : ledger.drain()) drained[id] += totals;
      ++drains;
      std::this_thread::yield();
    }
  });
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      Attribution who{.key = "key-" + std::to_string(t % 3), .user = "user-" + std::to_string(t),
                      .team = "team", .customer = t % 2 == 0 ? "even" : ""};
      for (int i = 0; i < kPerThread; ++i) {
        ledger.record(who, i % 2 == 0 ? "model-a" : "model-b", usage, price.times(1 + i % 5));
      }
      running.fetch_sub(1);
    });
  }
  for (auto& w : writers) w.join();
  drainer.join();
  for (auto& [id, totals] : ledger.snapshot()) drained[id] += totals;

  // Expected, computed without threads.
  std::map<EntityId, Totals> want;
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      Money cost = price.times(1 + i % 5);
      want[{EntityKind::key, "key-" + std::to_string(t % 3)}].add(usage, cost);
      want[{EntityKind::user, "user-" + std::to_string(t)}].add(usage, cost);
      want[{EntityKind::team, "team"}].add(usage, cost);
      if (t % 2 == 0) want[{EntityKind::customer, "even"}].add(usage, cost);
      want[{EntityKind::model, i % 2 == 0 ? "model-a" : "model-b"}].add(usage, cost);
    }
  }
  EXPECT_EQ(drained, want);
  EXPECT_GT(drains, 0);
  EXPECT_EQ(drained[(EntityId{EntityKind::team, "team"})].requests, kThreads * kPerThread);
  // 80000 calls, each 1..5 x 3e-7 USD: mean 3 x 3e-7 -> exactly 0.072 USD.
  EXPECT_EQ(drained[(EntityId{EntityKind::team, "team"})].spend.to_usd_string(), "0.072");
}
