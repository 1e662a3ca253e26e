#include "llmbill/spend_row.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "llmbill/settle.hpp"

using nlohmann::json;

namespace {

llmbill::CallRecord call() {
  llmbill::CallRecord c;
  c.call_id = "call-1";
  c.timestamp_ms = 1786000000123;
  c.model = "gpt-4o-mini";
  c.usage = {.prompt_tokens = 2000, .completion_tokens = 1000, .cached_tokens = 500, .reasoning_tokens = 7};
  c.cost = llmbill::Money::parse_usd("0.00000045");
  c.user_id = "u1";
  c.team_id = "t1";
  c.end_user_id = "cust";
  return c;
}

llmbill::SpendRowFields fields() {
  return {.call_type = "chat_completion", .api_key = "hash", .start_us = 1786000000123456,
          .end_us = 1786000000223456, .response_id = "chatcmpl-1", .tags_json = ""};
}

}  // namespace

TEST(SpendRow, ColumnsInOrderOneLine) {
  std::string line = llmbill::spend_row_line(call(), fields());
  ASSERT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1);
  json row = json::parse(line);
  EXPECT_EQ(row, json::parse(R"(["call-1","chat_completion","gpt-4o-mini","hash","u1","t1","cust","0.00000045",
      2000,1000,500,7,1786000000123456,1786000000223456,"success","{}","chatcmpl-1"])"));
}

TEST(SpendRow, MetadataCarriesWhatTheEventHoldsBeyondTheColumns) {
  llmbill::CallRecord c = call();
  c.unpriced = true;
  c.cost = llmbill::Money();
  c.usage.estimated = true;
  c.usage.cache_creation_tokens = 30;
  c.usage.cache_creation_1h_tokens = 10;
  c.key_alias = "al\"ias";
  llmbill::SpendRowFields f = fields();
  f.tags_json = R"(["a","b"])";
  json row = json::parse(llmbill::spend_row_line(c, f));
  EXPECT_EQ(row[7], "0");
  EXPECT_EQ(row[15].get<std::string>(),
            R"({"unpriced":true,"estimated":true,"key_alias":"al\"ias","cache_creation_tokens":30,)"
            R"("cache_creation_1h_tokens":10,"tags":["a","b"]})");
}

TEST(SpendRow, MarginedRowSpendsTheBilledAmountAndKeepsTheCost) {
  llmbill::CallRecord c = call();
  c.billed_amount = llmbill::Money::parse_usd("0.0000009");
  json row = json::parse(llmbill::spend_row_line(c, fields()));
  EXPECT_EQ(row[7], "0.0000009");
  EXPECT_EQ(json::parse(row[15].get<std::string>()), json::parse(R"({"response_cost":"0.00000045"})"));
}

TEST(SpendRow, StringsAreEscapedAsJson) {
  llmbill::CallRecord c = call();
  c.model = std::string("m\n\"\\ü\0x", 8);
  c.end_user_id = "";
  json row = json::parse(llmbill::spend_row_line(c, fields()));
  EXPECT_EQ(row[2].get<std::string>(), c.model);
  EXPECT_EQ(row[6], "");
}

TEST(SpendRow, SettleCallMakesTheRowAsBilled) {
  llmbill::Ledger ledger;
  llmbill::PriceTable table = llmbill::PriceTable::load_files({LLMBILL_PRICES_JSON});
  llmbill::CallRecord c = call();
  llmbill::SpendRowFields f = fields();
  llmbill::Settled s = llmbill::settle_call(ledger, nullptr, table.find("gpt-4o-mini"), c, "hash", &f);
  ASSERT_TRUE(s.cost.has_value());
  json row = json::parse(s.row_line);
  EXPECT_EQ(row[7], s.cost->total.to_usd_string());
  EXPECT_EQ(json::parse(row[15].get<std::string>()), json::object());
  llmbill::Settled without = llmbill::settle_call(ledger, nullptr, nullptr, c, "hash");
  EXPECT_TRUE(without.row_line.empty());
}
