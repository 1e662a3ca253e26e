#include "llmbill/cost.hpp"

#include <gtest/gtest.h>

#include "llmbill/errors.hpp"

using llmbill::compute_cost;
using llmbill::Money;
using llmbill::PriceTable;
using llmbill::Usage;

namespace {

const PriceTable& bundled() {
  static const PriceTable table = PriceTable::load_files({LLMBILL_PRICES_JSON});
  return table;
}

std::string total(const std::string& model, const Usage& u) {
  return compute_cost(bundled().resolve(model), u).total.to_usd_string();
}

}  // namespace

// Expectations are computed by hand from the bundled table's prices (noted per case).

TEST(Cost, Gpt4oWithCachedPrompt) {
  // in 2.5e-6, cache read 1.25e-6, out 1e-5: 800*2.5e-6 + 200*1.25e-6 + 500*1e-5
  Usage u{.prompt_tokens = 1000, .completion_tokens = 500, .cached_tokens = 200};
  auto c = compute_cost(bundled().resolve("gpt-4o"), u);
  EXPECT_EQ(c.input.to_usd_string(), "0.002");
  EXPECT_EQ(c.cache_read.to_usd_string(), "0.00025");
  EXPECT_EQ(c.output.to_usd_string(), "0.005");
  EXPECT_EQ(c.total.to_usd_string(), "0.00725");
}

TEST(Cost, Gpt4oMini) {
  // in 1.5e-7, out 6e-7: 2000*1.5e-7 + 1000*6e-7
  EXPECT_EQ(total("gpt-4o-mini", {.prompt_tokens = 2000, .completion_tokens = 1000}), "0.0009");
}

TEST(Cost, Claude35SonnetCacheReadAndWrite) {
  // in 3e-6, cache read 3e-7, cache write 3.75e-6, out 1.5e-5. Anthropic counted input 100,
  // cache read 1000, cache write 200 → prompt 1300:
  // 100*3e-6 + 1000*3e-7 + 200*3.75e-6 + 50*1.5e-5 = 0.0003 + 0.0003 + 0.00075 + 0.00075
  Usage u{.prompt_tokens = 1300, .completion_tokens = 50, .cached_tokens = 1000, .cache_creation_tokens = 200};
  auto c = compute_cost(bundled().resolve("anthropic.claude-3-5-sonnet-20241022-v2:0"), u);
  EXPECT_EQ(c.cache_creation.to_usd_string(), "0.00075");
  EXPECT_EQ(c.total.to_usd_string(), "0.0021");
}

TEST(Cost, OneHourCacheWritesAtTheirOwnRate) {
  // claude-sonnet-4-5: in 3e-6, cache read 3e-7, 5m write 3.75e-6, 1h write 6e-6, out 1.5e-5.
  // Anthropic counted input 100, read 1000, writes 3000 of which 2000 for 1 hour, output 50:
  // 100*3e-6 + 1000*3e-7 + (1000*3.75e-6 + 2000*6e-6) + 50*1.5e-5
  Usage u{.prompt_tokens = 4100, .completion_tokens = 50, .cached_tokens = 1000, .cache_creation_tokens = 3000,
          .cache_creation_1h_tokens = 2000};
  auto c = compute_cost(bundled().resolve("claude-sonnet-4-5"), u);
  EXPECT_EQ(c.input.to_usd_string(), "0.0003");
  EXPECT_EQ(c.cache_read.to_usd_string(), "0.0003");
  EXPECT_EQ(c.cache_creation_1h.to_usd_string(), "0.012");
  EXPECT_EQ(c.cache_creation.to_usd_string(), "0.01575");  // 0.00375 + 0.012: the 1h part is inside
  EXPECT_EQ(c.output.to_usd_string(), "0.00075");
  EXPECT_EQ(c.total.to_usd_string(), "0.0171");
  // Without the split the same writes would all cost the 5m rate: the split changes the bill.
  Usage flat = u;
  flat.cache_creation_1h_tokens = 0;
  EXPECT_EQ(compute_cost(bundled().resolve("claude-sonnet-4-5"), flat).total.to_usd_string(), "0.0126");
}

TEST(Cost, OneHourWritesFallBackToTheWriteRateWhenTheTableLacksIt) {
  auto table = PriceTable::from_json_texts({R"({"m": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6,
      "cache_creation_input_token_cost": 1.25e-6}, "bare": {"input_cost_per_token": 1e-6}})"});
  Usage u{.prompt_tokens = 300, .cache_creation_tokens = 200, .cache_creation_1h_tokens = 200};
  auto c = compute_cost(table.resolve("m"), u);
  EXPECT_EQ(c.cache_creation_1h.to_usd_string(), "0.00025");  // 200 * 1.25e-6
  EXPECT_EQ(c.total.to_usd_string(), "0.00035");
  // No write rate at all: writes, 1h or not, at the input rate (as before).
  EXPECT_EQ(compute_cost(table.resolve("bare"), u).total.to_usd_string(), "0.0003");
}

TEST(Cost, OneHourRateOfTheAppliedTier) {
  // claude-haiku-5-5 above 100k: in 5e-7, 5m write 6.25e-7, 1h write 1e-6 (base 1h: 2e-7).
  // input 48000 + writes 102000 (100000 for 1h) = 150000 > 100000:
  // 48000*5e-7 + 2000*6.25e-7 + 100000*1e-6
  Usage u{.prompt_tokens = 150000, .cache_creation_tokens = 102000, .cache_creation_1h_tokens = 100000};
  auto c = compute_cost(bundled().resolve("claude-haiku-5-5"), u);
  EXPECT_EQ(c.tier_above_tokens, 100000);
  EXPECT_EQ(c.cache_creation_1h.to_usd_string(), "0.1");
  EXPECT_EQ(c.total.to_usd_string(), "0.12525");
  // A tier with a write rate but no 1h rate: its write rate, not the (cheaper) base 1h rate.
  auto table = PriceTable::from_json_texts({R"({"m": {"input_cost_per_token": 1e-6,
      "cache_creation_input_token_cost": 1.25e-6, "cache_creation_input_token_cost_above_1hr": 2e-6,
      "input_cost_per_token_above_1k_tokens": 2e-6, "cache_creation_input_token_cost_above_1k_tokens": 2.5e-6}})"});
  Usage big{.prompt_tokens = 2000, .cache_creation_tokens = 1000, .cache_creation_1h_tokens = 1000};
  EXPECT_EQ(compute_cost(table.resolve("m"), big).cache_creation_1h.to_usd_string(), "0.0025");
  Usage small{.prompt_tokens = 1000, .cache_creation_tokens = 500, .cache_creation_1h_tokens = 500};
  EXPECT_EQ(compute_cost(table.resolve("m"), small).cache_creation_1h.to_usd_string(), "0.001");  // base 1h
}

TEST(Cost, DeploymentWriteRateAlsoPricesOneHourWrites) {
  // A deployment's own cache-write price replaces the table's, and the table's 1h rate with it.
  llmbill::CustomPrices custom{.cache_creation = Money::parse_usd("0.000001")};
  auto price = bundled().resolve_with("claude-sonnet-4-5", custom);
  Usage u{.prompt_tokens = 100, .cache_creation_tokens = 100, .cache_creation_1h_tokens = 100};
  EXPECT_EQ(compute_cost(price, u).cache_creation.to_usd_string(), "0.0001");
}

TEST(Cost, TierAbove200kAppliesToTheWholeRequest) {
  // gemini-2.5-pro: in 1.25e-6 / 2.5e-6 above 200k; out 1e-5 / 1.5e-5 above 200k.
  EXPECT_EQ(total("gemini-2.5-pro", {.prompt_tokens = 200000, .completion_tokens = 1000}), "0.26");
  auto c = compute_cost(bundled().resolve("gemini-2.5-pro"), {.prompt_tokens = 250000, .completion_tokens = 1000});
  EXPECT_EQ(c.tier_above_tokens, 200000);
  EXPECT_EQ(c.total.to_usd_string(), "0.64");  // 250000*2.5e-6 + 1000*1.5e-5
}

TEST(Cost, TieredPricingListRanges) {
  // dashscope/qwen-flash: above 256k in 2.5e-7, out 2e-6: 300000*2.5e-7 + 10*2e-6
  EXPECT_EQ(total("dashscope/qwen-flash", {.prompt_tokens = 300000, .completion_tokens = 10}), "0.07502");
  EXPECT_EQ(total("dashscope/qwen-flash", {.prompt_tokens = 1000, .completion_tokens = 10}), "0.000054");
}

TEST(Cost, EmbeddingModel) {
  // text-embedding-3-small: 2e-8 per token
  EXPECT_EQ(total("text-embedding-3-small", {.prompt_tokens = 12345}), "0.0002469");
}

TEST(Cost, ReasoningBilledAsOutputWithoutItsOwnRate) {
  // o1: out 6e-5; 1000 completion of which 400 reasoning, all at 6e-5 → 0.06; in 10*1.5e-5
  auto c = compute_cost(bundled().resolve("o1"), {.prompt_tokens = 10, .completion_tokens = 1000, .reasoning_tokens = 400});
  EXPECT_EQ(c.reasoning.to_usd_string(), "0.024");
  EXPECT_EQ(c.total.to_usd_string(), "0.06015");
}

TEST(Cost, PerRequestPrice) {
  // perplexity/pplx-7b-online: 0.005 per request + out 2.8e-7 * 100
  EXPECT_EQ(total("perplexity/pplx-7b-online", {.prompt_tokens = 10, .completion_tokens = 100}), "0.005028");
}

TEST(Cost, DeploymentOverride) {
  llmbill::CustomPrices custom{.input = Money::parse_usd("0.000001"), .output = Money::parse_usd("0.000002")};
  auto price = bundled().resolve_with("openai/my-fine-tune", custom);
  EXPECT_EQ(compute_cost(price, {.prompt_tokens = 10, .completion_tokens = 20}).total.to_usd_string(), "0.00005");
  auto gpt = bundled().resolve_with("gpt-4o", custom);  // overrides the table's 2.5e-6 / 1e-5
  EXPECT_EQ(compute_cost(gpt, {.prompt_tokens = 10, .completion_tokens = 20}).total.to_usd_string(), "0.00005");
}

TEST(Cost, RefusesUnpricedModelsAndBadUsage) {
  llmbill::ModelPrice unpriced;
  unpriced.name = "per-second-only";
  EXPECT_THROW(compute_cost(unpriced, {.prompt_tokens = 1}), llmbill::UnknownModelError);
  EXPECT_THROW(compute_cost(bundled().resolve("gpt-4o"), {.prompt_tokens = 10, .cached_tokens = 11}), llmbill::UsageError);
}

TEST(Cost, SumOfManyCallsIsExact) {
  Money sum;
  for (int i = 0; i < 10000; ++i) sum += compute_cost(bundled().resolve("gpt-4o-mini"), {.prompt_tokens = 7, .completion_tokens = 3}).total;
  EXPECT_EQ(sum.to_usd_string(), "0.0285");  // 10000 * (7*1.5e-7 + 3*6e-7)
}

TEST(CostUpperBound, EveryTokenAtTheHighestRateOfItsSide) {
  // claude 3.5 sonnet (bedrock): in 3e-6, cache write 3.75e-6 (the highest prompt rate), out 1.5e-5.
  const auto& claude = bundled().resolve("anthropic.claude-3-5-sonnet-20241022-v2:0");
  EXPECT_EQ(llmbill::cost_upper_bound(claude, 1000, 100).to_usd_string(), "0.00525");  // 1000*3.75e-6 + 100*1.5e-5
  // Whatever the split, a call within the counts costs no more than the bound.
  const Usage worst{.prompt_tokens = 1000, .completion_tokens = 100, .cache_creation_tokens = 1000};
  EXPECT_EQ(compute_cost(claude, worst).total, llmbill::cost_upper_bound(claude, 1000, 100));
}

TEST(CostUpperBound, HighestTierAppliesWhateverThePrompt) {
  // gemini-2.5-pro: above 200k in 2.5e-6, out 1.5e-5 — used even for a small prompt (it is a bound).
  const auto& pro = bundled().resolve("gemini-2.5-pro");
  EXPECT_EQ(llmbill::cost_upper_bound(pro, 1000, 1000).to_usd_string(), "0.0175");
  EXPECT_GE(llmbill::cost_upper_bound(pro, 250000, 1000), compute_cost(pro, {.prompt_tokens = 250000, .completion_tokens = 1000}).total);
}

TEST(CostUpperBound, ReasoningRatePerRequestAndRefusals) {
  llmbill::ModelPrice p;
  p.name = "reasoner";
  p.base.input = Money::parse_usd("0.000001");
  p.base.output = Money::parse_usd("0.000002");
  p.base.reasoning = Money::parse_usd("0.000005");  // reasoning dearer than output
  p.per_request = Money::parse_usd("0.01");
  EXPECT_EQ(llmbill::cost_upper_bound(p, 10, 100).to_usd_string(), "0.01051");  // 10*1e-6 + 100*5e-6 + 0.01
  EXPECT_EQ(compute_cost(p, {.prompt_tokens = 10, .completion_tokens = 100, .reasoning_tokens = 100}).total,
            llmbill::cost_upper_bound(p, 10, 100));
  EXPECT_THROW(llmbill::cost_upper_bound(p, -1, 0), llmbill::UsageError);
  llmbill::ModelPrice unpriced;
  EXPECT_THROW(llmbill::cost_upper_bound(unpriced, 1, 1), llmbill::UnknownModelError);
}
