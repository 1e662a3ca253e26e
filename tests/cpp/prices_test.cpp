#include "llmbill/prices.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "llmbill/errors.hpp"

using llmbill::Money;
using llmbill::PriceTable;

namespace {

std::string bundled_text() {
  std::ifstream in(LLMBILL_PRICES_JSON);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

const PriceTable& bundled() {
  static const PriceTable table = PriceTable::load_files({LLMBILL_PRICES_JSON});
  return table;
}

Money usd(const char* s) { return Money::parse_usd(s); }

}  // namespace

// Every numeric cost field of the bundled table — billed by llmbill or not, nested or not — is an
// exact integer in Money's unit after normalisation, moves by at most 1e-11 relative, and the
// largest one times 1e12 tokens stays in range.
TEST(PriceTable, EveryBundledPriceIsExactInTheUnit) {
  auto doc = nlohmann::json::parse(bundled_text());
  std::size_t checked = 0;
  double largest = 0;
  std::function<void(const std::string&, const nlohmann::json&)> visit = [&](const std::string& path,
                                                                              const nlohmann::json& v) {
    if (v.is_number()) {
      double price = v.get<double>();
      if (price < 0) return;  // none today; a negative price would be refused at load
      Money m = Money::from_usd_price(price);
      double back = std::strtod(m.to_usd_string().c_str(), nullptr);
      if (price != 0) EXPECT_LE(std::fabs(back - price) / price, 1e-11) << path;
      largest = std::max(largest, price);
      ++checked;
    } else if (v.is_object()) {
      for (const auto& [k, child] : v.items()) visit(path + "." + k, child);
    } else if (v.is_array()) {
      for (std::size_t i = 0; i < v.size(); ++i) visit(path + "[" + std::to_string(i) + "]", v[i]);
    }
  };
  for (const auto& [model, entry] : doc.items()) {
    if (!entry.is_object() || model == "sample_spec") continue;
    for (const auto& [field, value] : entry.items()) {
      if (field.find("cost") != std::string::npos || field == "tiered_pricing") visit(model + "." + field, value);
    }
  }
  EXPECT_GT(checked, 10000u);
  EXPECT_NO_THROW(Money::from_usd_price(largest).times(1'000'000'000'000));
  EXPECT_GT(bundled().size(), 4000u);
}

TEST(PriceTable, ResolvesExactAndProviderPrefixedNames) {
  const auto& t = bundled();
  EXPECT_EQ(t.resolve("gpt-4o").base.input, usd("0.0000025"));
  EXPECT_EQ(t.resolve("openai/gpt-4o").name, "gpt-4o");
  EXPECT_EQ(t.resolve("azure/gpt-4o").name, "azure/gpt-4o");
  EXPECT_EQ(t.resolve("anthropic/claude-sonnet-4-5").name, "claude-sonnet-4-5");
  EXPECT_EQ(t.resolve("vertex_ai/gemini-2.5-pro").name, "gemini-2.5-pro");  // vertex_ai-language-models
  EXPECT_EQ(t.find("anthropic/gpt-4o"), nullptr);  // gpt-4o is not an Anthropic model
  EXPECT_THROW(t.resolve("no-such-model"), llmbill::UnknownModelError);
  EXPECT_THROW(t.resolve("openai/no-such-model"), llmbill::UnknownModelError);
}

TEST(PriceTable, ReadsTiersFromBothNotations) {
  const auto& gemini = bundled().resolve("gemini-2.5-pro");
  ASSERT_EQ(gemini.tiers.size(), 1u);
  EXPECT_EQ(gemini.tiers[0].above_tokens, 200000);
  EXPECT_EQ(gemini.tiers[0].rates.input, usd("0.0000025"));
  const auto& qwen = bundled().resolve("dashscope/qwen-flash");  // tiered_pricing list only
  EXPECT_EQ(qwen.base.input, usd("0.00000005"));
  ASSERT_EQ(qwen.tiers.size(), 1u);
  EXPECT_EQ(qwen.tiers[0].above_tokens, 256000);
  EXPECT_EQ(qwen.tiers[0].rates.output, usd("0.000002"));
}

TEST(PriceTable, UserFileOverridesFieldByFieldAndExtends) {
  auto t = PriceTable::from_json_texts(
      {bundled_text(),
       R"({"gpt-4o": {"input_cost_per_token": 0.000003},
           "my-model": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6, "litellm_provider": "openai"}})"});
  EXPECT_EQ(t.resolve("gpt-4o").base.input, usd("0.000003"));
  EXPECT_EQ(t.resolve("gpt-4o").base.output, usd("0.00001"));  // untouched field kept
  EXPECT_EQ(t.resolve("openai/my-model").base.output, usd("0.000002"));
}

TEST(PriceTable, BadPricesNameTheModelAndField) {
  try {
    PriceTable::from_json_texts({R"({"m": {"input_cost_per_token": "cheap"}})"});
    FAIL();
  } catch (const llmbill::PriceTableError& e) {
    EXPECT_NE(std::string(e.what()).find("'m': input_cost_per_token"), std::string::npos) << e.what();
  }
  EXPECT_THROW(PriceTable::from_json_texts({R"({"m": {"output_cost_per_token": -1}})"}), llmbill::PriceTableError);
  EXPECT_THROW(PriceTable::from_json_texts({"not json"}), llmbill::PriceTableError);
  EXPECT_THROW(PriceTable::load_files({"/nonexistent/prices.json"}), llmbill::PriceTableError);
}

TEST(PriceTable, CustomPricesOverrideOrStandAlone) {
  llmbill::CustomPrices custom{.input = usd("0.000001"), .output = usd("0.000002")};
  auto known = bundled().resolve_with("gemini-2.5-pro", custom);
  EXPECT_TRUE(known.custom);
  EXPECT_EQ(known.base.input, usd("0.000001"));
  EXPECT_TRUE(known.tiers.empty());
  auto unknown = bundled().resolve_with("openai/my-fine-tune", custom);
  EXPECT_EQ(unknown.name, "openai/my-fine-tune");
  EXPECT_TRUE(unknown.priced());
  EXPECT_THROW(bundled().resolve_with("openai/my-fine-tune", {}), llmbill::UnknownModelError);
}
