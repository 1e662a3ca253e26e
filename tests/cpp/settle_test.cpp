#include "llmbill/settle.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "llmbill/errors.hpp"
#include "llmbill/transport.hpp"
#include "temp_dir.hpp"

using namespace std::chrono_literals;
using llmbill::EntityKind;
using nlohmann::json;

namespace {

const llmbill::PriceTable& bundled() {
  static const llmbill::PriceTable table = llmbill::PriceTable::load_files({LLMBILL_PRICES_JSON});
  return table;
}

class SettleCall : public ::testing::Test {
 protected:
  llmbill::testing::TempDir dir_{"llmbill-settle"};
  llmbill::Ledger ledger_;

  std::unique_ptr<llmbill::Pipeline> open() {
    llmbill::PipelineOptions o;
    o.events = {{"tokens"}, llmbill::ChargeBy::end_user_id};
    o.spool.dir = dir_.path() / "spool";
    o.spool.fsync = llmbill::FsyncPolicy::never;
    o.flush_interval = 5ms;
    return std::make_unique<llmbill::Pipeline>(std::move(o), llmbill::make_file_transport(sink()));
  }
  std::filesystem::path sink() const { return dir_.path() / "events.jsonl"; }
  std::vector<json> delivered() const {
    std::vector<json> out;
    std::ifstream in(sink());
    for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
    return out;
  }
  static llmbill::CallRecord call(const std::string& id) {
    llmbill::CallRecord c;
    c.call_id = id;
    c.timestamp_ms = 1786000000000;
    c.model = "gpt-4o-mini";
    c.usage = {.prompt_tokens = 2000, .completion_tokens = 1000};
    c.key_alias = "alias";
    c.user_id = "u1";
    c.team_id = "t1";
    c.end_user_id = "cust";
    return c;
  }
};

TEST_F(SettleCall, PricesRecordsAndSpoolsOnce) {
  auto pipeline = open();
  const auto& price = bundled().resolve("gpt-4o-mini");
  auto c = call("call-1");
  llmbill::Settled s = llmbill::settle_call(ledger_, pipeline.get(), &price, c, "keyhash");
  ASSERT_TRUE(s.cost.has_value());
  EXPECT_EQ(s.cost->total.to_usd_string(), "0.0009");  // 2000 * 1.5e-7 + 1000 * 6e-7
  EXPECT_EQ(s.spool_error, "");
  for (auto kind : {EntityKind::key, EntityKind::user, EntityKind::team, EntityKind::customer, EntityKind::model}) {
    std::string id = kind == EntityKind::key    ? "keyhash"
                     : kind == EntityKind::user ? "u1"
                     : kind == EntityKind::team ? "t1"
                     : kind == EntityKind::customer ? "cust" : "gpt-4o-mini";
    auto t = ledger_.get(kind, id);
    EXPECT_EQ(t.requests, 1) << id;
    EXPECT_EQ(t.spend.to_usd_string(), "0.0009") << id;
    EXPECT_EQ(t.prompt_tokens, 2000) << id;
  }
  ASSERT_TRUE(pipeline->flush(5s));
  auto events = delivered();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["transaction_id"], "call-1");
  EXPECT_EQ(events[0]["external_subscription_id"], "cust");
  EXPECT_EQ(events[0]["properties"]["response_cost"], "0.0009");
  EXPECT_FALSE(events[0]["properties"].contains("unpriced"));
}

TEST_F(SettleCall, UnpricedIsCountedByTokensAndFlagged) {
  auto pipeline = open();
  auto c = call("call-2");
  llmbill::Settled s = llmbill::settle_call(ledger_, pipeline.get(), nullptr, c, "keyhash");
  EXPECT_FALSE(s.cost.has_value());
  EXPECT_TRUE(c.unpriced);
  auto t = ledger_.get(EntityKind::customer, "cust");
  EXPECT_EQ(t.requests, 1);
  EXPECT_EQ(t.completion_tokens, 1000);
  EXPECT_EQ(t.spend.to_usd_string(), "0");
  ASSERT_TRUE(pipeline->flush(5s));
  auto events = delivered();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["properties"]["response_cost"], "0");
  EXPECT_EQ(events[0]["properties"]["unpriced"], "true");  // Lago properties are strings
}

TEST_F(SettleCall, WithoutPipelineOnlyTheLedger) {
  const auto& price = bundled().resolve("gpt-4o-mini");
  auto c = call("call-3");
  llmbill::Settled s = llmbill::settle_call(ledger_, nullptr, &price, c, "");
  EXPECT_EQ(s.spool_error, "");
  EXPECT_EQ(ledger_.get(EntityKind::team, "t1").spend.to_usd_string(), "0.0009");
  EXPECT_EQ(ledger_.get(EntityKind::key, "").requests, 0);  // no key: nothing under an empty id
}

TEST_F(SettleCall, SpoolFailureIsReportedAfterTheLedgerTookTheCall) {
  auto pipeline = open();
  ASSERT_TRUE(pipeline->close(5s));
  const auto& price = bundled().resolve("gpt-4o-mini");
  auto c = call("call-4");
  llmbill::Settled s;
  EXPECT_NO_THROW(s = llmbill::settle_call(ledger_, pipeline.get(), &price, c, "keyhash"));
  EXPECT_NE(s.spool_error.find("closed"), std::string::npos) << s.spool_error;
  EXPECT_EQ(ledger_.get(EntityKind::key, "keyhash").spend.to_usd_string(), "0.0009");  // billed once, by the ledger
}

TEST_F(SettleCall, UncountableUsageChangesNothing) {
  auto pipeline = open();
  const auto& price = bundled().resolve("gpt-4o-mini");
  auto c = call("call-5");
  c.usage.completion_tokens = -1;
  EXPECT_THROW(llmbill::settle_call(ledger_, pipeline.get(), &price, c, "keyhash"), llmbill::Error);
  EXPECT_TRUE(ledger_.snapshot().empty());
  ASSERT_TRUE(pipeline->flush(1s));
  EXPECT_TRUE(delivered().empty());
}

}  // namespace
