#include "llmbill/event.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "llmbill/errors.hpp"

using llmbill::CallRecord;
using llmbill::ChargeBy;
using llmbill::EventOptions;
using nlohmann::json;

namespace {

CallRecord sample_call() {
  CallRecord c;
  c.call_id = "call-1";
  c.timestamp_ms = 1786000000123;
  c.model = "gpt-4o";
  c.usage = {.prompt_tokens = 1000, .completion_tokens = 500, .cached_tokens = 200, .reasoning_tokens = 100};
  c.cost = llmbill::Money::parse_usd("0.00725");
  c.key_alias = "alias";
  c.user_id = "user-1";
  c.team_id = "team-1";
  c.end_user_id = "cust-1";
  return c;
}

}  // namespace

// Field by field against ../shared/docs/lago-api.md.
TEST(LagoEvent, FieldsFollowTheContract) {
  auto built = llmbill::build_lago_events(sample_call(), EventOptions{{"openai_tokens"}, ChargeBy::end_user_id});
  ASSERT_TRUE(built.ok());
  ASSERT_EQ(built.events.size(), 1u);
  json e = json::parse(built.events[0]);
  EXPECT_EQ(e["transaction_id"], "call-1");
  EXPECT_EQ(e["external_subscription_id"], "cust-1");
  EXPECT_EQ(e["external_customer_id"], "cust-1");
  EXPECT_EQ(e["code"], "openai_tokens");
  EXPECT_EQ(e["timestamp"], "1786000000.123");  // seconds with milliseconds, never ms as seconds
  const json& p = e["properties"];
  EXPECT_EQ(p["input_tokens"], 1000);
  EXPECT_EQ(p["output_tokens"], 500);
  EXPECT_EQ(p["prompt_tokens"], 1000);
  EXPECT_EQ(p["completion_tokens"], 500);
  EXPECT_EQ(p["total_tokens"], 1500);
  EXPECT_EQ(p["cached_tokens"], 200);
  EXPECT_EQ(p["reasoning_tokens"], 100);
  EXPECT_EQ(p["cache_creation_tokens"], 0);
  EXPECT_EQ(p["model"], "gpt-4o");
  EXPECT_EQ(p["response_cost"], "0.00725");
  EXPECT_EQ(p["key_alias"], "alias");
  EXPECT_EQ(p["team_id"], "team-1");
  EXPECT_EQ(p["user_id"], "user-1");
  EXPECT_EQ(p["end_user_id"], "cust-1");
  for (const auto& [k, v] : p.items()) EXPECT_TRUE(v.is_string() || v.is_number()) << k << " must be flat";
  std::set<std::string> allowed{"transaction_id", "external_subscription_id", "external_customer_id", "code",
                                "timestamp", "properties"};
  for (const auto& [k, v] : e.items()) EXPECT_TRUE(allowed.count(k)) << k;
}

TEST(LagoEvent, OneHourCacheWritesAreItemisedOnlyWhenPresent) {
  auto call = sample_call();
  EXPECT_FALSE(json::parse(llmbill::build_lago_events(call, EventOptions{{"c"}, ChargeBy::end_user_id}).events.at(0))
                   ["properties"].contains("cache_creation_1h_tokens"));
  call.usage.prompt_tokens += 300;
  call.usage.cache_creation_tokens = 300;
  call.usage.cache_creation_1h_tokens = 120;
  const json p = json::parse(llmbill::build_lago_events(call, EventOptions{{"c"}, ChargeBy::end_user_id}).events.at(0))
                     ["properties"];
  EXPECT_EQ(p["cache_creation_tokens"], 300);
  EXPECT_EQ(p["cache_creation_1h_tokens"], 120);
}

TEST(LagoEvent, ChargeByPicksTheId) {
  auto call = sample_call();
  for (auto [by, id] : {std::pair{ChargeBy::end_user_id, "cust-1"}, std::pair{ChargeBy::user_id, "user-1"},
                        std::pair{ChargeBy::team_id, "team-1"}}) {
    auto built = llmbill::build_lago_events(call, EventOptions{{"c"}, by});
    EXPECT_EQ(json::parse(built.events.at(0))["external_subscription_id"], id);
  }
  EXPECT_EQ(llmbill::parse_charge_by("team_id"), ChargeBy::team_id);
  EXPECT_THROW(llmbill::parse_charge_by("org_id"), llmbill::Error);
}

TEST(LagoEvent, NoIdToChargeIsNeverSentWithANullId) {
  auto call = sample_call();
  call.team_id.clear();
  auto built = llmbill::build_lago_events(call, EventOptions{{"c"}, ChargeBy::team_id});
  EXPECT_FALSE(built.ok());
  EXPECT_TRUE(built.events.empty());
  EXPECT_NE(built.missing_reason.find("team_id"), std::string::npos);
  json kept = json::parse(llmbill::unbillable_event_json(call, EventOptions{{"c"}, ChargeBy::team_id}));
  EXPECT_FALSE(kept.contains("external_subscription_id"));
}

TEST(LagoEvent, SeveralCodesGetDistinctTransactionIds) {
  auto built = llmbill::build_lago_events(sample_call(), EventOptions{{"input", "output"}, ChargeBy::end_user_id});
  ASSERT_EQ(built.events.size(), 2u);
  EXPECT_EQ(json::parse(built.events[0])["transaction_id"], "call-1:input");
  EXPECT_EQ(json::parse(built.events[1])["transaction_id"], "call-1:output");
}

TEST(LagoEvent, SameCallSameBytes) {
  EventOptions o{{"c"}, ChargeBy::end_user_id};
  EXPECT_EQ(llmbill::build_lago_events(sample_call(), o).events, llmbill::build_lago_events(sample_call(), o).events);
  EXPECT_EQ(llmbill::lago_timestamp(1786000000005), "1786000000.005");
}

TEST(LagoEvent, IdsWithQuotesControlsAndBadUtf8StayValidJson) {
  auto call = sample_call();
  call.end_user_id = "cust \"quoted\" \\ back\nline \xc3\xa9 \xff end";
  auto built = llmbill::build_lago_events(call, EventOptions{{"c"}, ChargeBy::end_user_id});
  json e = json::parse(built.events.at(0));  // would throw on invalid JSON or UTF-8
  EXPECT_EQ(e["external_subscription_id"], "cust \"quoted\" \\ back\nline \xc3\xa9 \xef\xbf\xbd end");
  EXPECT_EQ(e["properties"]["end_user_id"], e["external_subscription_id"]);
}

// A margin: the billed amount rides beside response_cost, exact; without one the event is unchanged.
TEST(LagoEvent, BilledAmountOnlyWhenAMarginApplies) {
  auto call = sample_call();
  const EventOptions options{{"c"}, ChargeBy::end_user_id};
  const std::string plain = llmbill::build_lago_events(call, options).events.at(0);
  EXPECT_EQ(plain.find("billed_amount"), std::string::npos);
  call.billed_amount = llmbill::Money::parse_usd("0.0083375000000000001");
  const std::string with = llmbill::build_lago_events(call, options).events.at(0);
  json p = json::parse(with)["properties"];
  EXPECT_EQ(p["response_cost"], "0.00725");
  EXPECT_EQ(p["billed_amount"], "0.0083375000000000001");
}
