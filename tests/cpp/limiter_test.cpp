#include "llmbill/limiter.hpp"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

using llmbill::LimitKind;
using llmbill::Limiter;
using llmbill::LimitRefusal;
using llmbill::LimitSlot;
using llmbill::Money;

namespace {

Money usd(const char* text) { return Money::parse_usd(text); }
constexpr double kMinute0 = 1'800'000'000.0;  // a minute's start (30,000,000 minutes)

}  // namespace

TEST(Limiter, TakesEverySlotOrNone) {
  Limiter limiter;
  std::vector<LimitSlot> both{{.entity = "key\x1fk", .amount = usd("2"), .headroom = usd("10"), .rpm = 5},
                              {.entity = "team\x1ft", .amount = usd("2"), .headroom = usd("2")}};
  EXPECT_FALSE(limiter.try_admit(both, kMinute0));
  auto refused = limiter.try_admit(both, kMinute0);
  ASSERT_TRUE(refused);
  EXPECT_EQ(*refused, (LimitRefusal{1, LimitKind::budget, usd("2"), 0.0}));  // the team holds 2 of its 2
  EXPECT_EQ(limiter.reserved_for("key\x1fk"), usd("2"));                   // nothing taken from the key
  EXPECT_EQ(limiter.minute_of("key\x1fk").requests, 1);
  limiter.release(both, 0, kMinute0);
  EXPECT_EQ(limiter.reservations_held(), 0u);
  EXPECT_EQ(limiter.in_flight_held(), 0u);
}

TEST(Limiter, BudgetRefusesWhenHeadroomIsSpentAlready) {
  Limiter limiter;  // spend past max_budget: a negative headroom refuses with nothing held
  std::vector<LimitSlot> call{{.entity = "customer\x1f""c", .amount = usd("1"), .headroom = usd("-0.5")}};
  auto refused = limiter.try_admit(call, kMinute0);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->limit, LimitKind::budget);
  EXPECT_EQ(refused->reserved, Money());
}

TEST(Limiter, ASlotWithoutRateLimitsIsCountedLikeOneWithThem) {
  Limiter limiter;
  LimitSlot plain{.entity = "customer\x1f""c", .amount = usd("1")};
  LimitSlot limited{.entity = "customer\x1f""c", .amount = usd("1"), .rpm = 2};
  EXPECT_FALSE(limiter.try_admit({plain}, kMinute0));
  EXPECT_EQ(limiter.minute_of(plain.entity).requests, 1);
  EXPECT_EQ(limiter.in_flight(plain.entity), 1);
  EXPECT_FALSE(limiter.try_admit({limited}, kMinute0 + 1));
  auto refused = limiter.try_admit({limited}, kMinute0 + 2);  // two this minute: the unlimited one counted
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->limit, LimitKind::rpm);
  EXPECT_DOUBLE_EQ(refused->wait_s, 58.0);
  limiter.release({plain, limited}, 5, kMinute0 + 3);
  EXPECT_EQ(limiter.minute_of(plain.entity).tokens, 10);
  EXPECT_EQ(limiter.in_flight_held(), 0u);
}

TEST(Limiter, TpmParallelAndTpdInTheirOrder) {
  Limiter limiter;
  LimitSlot tpm{.entity = "key\x1fk", .tpm = 100};
  EXPECT_FALSE(limiter.try_admit({tpm}, kMinute0));
  limiter.release({tpm}, 100, kMinute0 + 1);
  auto over = limiter.try_admit({tpm}, kMinute0 + 2);
  ASSERT_TRUE(over);
  EXPECT_EQ(over->limit, LimitKind::tpm);
  EXPECT_FALSE(limiter.try_admit({tpm}, kMinute0 + 60));  // the next minute starts at zero

  LimitSlot parallel{.entity = "user\x1fu", .parallel = 1};
  EXPECT_FALSE(limiter.try_admit({parallel}, kMinute0));
  auto busy = limiter.try_admit({parallel}, kMinute0);
  ASSERT_TRUE(busy);
  EXPECT_EQ(busy->limit, LimitKind::parallel);
  EXPECT_DOUBLE_EQ(busy->wait_s, 1.0);

  const double day0 = 1'800'000'000.0;  // a day is floor(now / 86400)
  LimitSlot tpd{.entity = "team\x1ft", .tpd = 50};
  EXPECT_FALSE(limiter.try_admit({tpd}, day0));
  limiter.release({tpd}, 50, day0);
  EXPECT_EQ(limiter.day_tokens(tpd.entity, day0), 50);
  auto today = limiter.try_admit({tpd}, day0 + 1);
  ASSERT_TRUE(today);
  EXPECT_EQ(today->limit, LimitKind::tpd);
  EXPECT_EQ(limiter.day_tokens(tpd.entity, day0 + 86400), 0);  // tomorrow's count is its own
}

TEST(Limiter, MinutesOfIdleEntitiesAreDroppedWhenTheirWindowPasses) {
  Limiter limiter;
  for (int i = 0; i < 10'000; ++i) {
    LimitSlot slot{.entity = "customer\x1f""c" + std::to_string(i), .amount = usd("0.5"), .rpm = 10};
    ASSERT_FALSE(limiter.try_admit({slot}, kMinute0 + 1));
    limiter.release({slot}, 7, kMinute0 + 2);
  }
  EXPECT_EQ(limiter.minutes_held(), 10'000u);
  EXPECT_EQ(limiter.reservations_held(), 0u);  // released: nothing held
  EXPECT_EQ(limiter.in_flight_held(), 0u);
  limiter.count_request("customer\x1fnext-minute", kMinute0 + 61);
  EXPECT_EQ(limiter.minutes_held(), 1u);
}

TEST(Limiter, CountsOfTheCurrentMinuteSurviveASweep) {
  Limiter limiter;
  limiter.count_request("key\x1fold", kMinute0 + 59);
  limiter.count_request("key\x1fk", kMinute0 + 60);
  limiter.count_request("key\x1fk", kMinute0 + 61);
  EXPECT_TRUE(limiter.rate_check("key\x1fk", 2, std::nullopt, std::nullopt, kMinute0 + 62));
  EXPECT_EQ(limiter.minute_of("key\x1fold").minute, -1);
  EXPECT_FALSE(limiter.rate_check("key\x1fk", 2, std::nullopt, std::nullopt, kMinute0 + 121));
}

TEST(Limiter, ConcurrentCallsNeverHoldMoreThanTheHeadroom) {
  Limiter limiter;  // 4 threads race for a budget of 10 calls' worth: at most 10 are held at once
  const Money each = usd("0.1");
  std::vector<std::thread> threads;
  std::vector<int> admitted(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::vector<LimitSlot> call{{.entity = "key\x1fshared", .amount = each, .headroom = usd("1")}};
      for (int i = 0; i < 1000; ++i) {
        if (!limiter.try_admit(call, kMinute0)) ++admitted[t];
        EXPECT_LE(limiter.reserved_for("key\x1fshared"), usd("1.1"));  // one call past the headroom at most
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(admitted[0] + admitted[1] + admitted[2] + admitted[3], 10);  // nothing released: 10 fit
  EXPECT_EQ(limiter.reserved_for("key\x1fshared"), usd("1"));
}
