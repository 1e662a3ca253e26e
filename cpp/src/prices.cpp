#include "llmbill/prices.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "llmbill/errors.hpp"

namespace llmbill {
namespace {

using nlohmann::json;

// The per-token fields llmbill bills, and where each lands in TokenRates.
struct RateField {
  std::string_view name;
  std::optional<Money> TokenRates::*slot;
};
constexpr std::array<RateField, 6> kRateFields{{
    {"input_cost_per_token", &TokenRates::input},
    {"output_cost_per_token", &TokenRates::output},
    {"cache_read_input_token_cost", &TokenRates::cache_read},
    {"cache_creation_input_token_cost", &TokenRates::cache_creation},
    {"cache_creation_input_token_cost_above_1hr", &TokenRates::cache_creation_1h},
    {"output_cost_per_reasoning_token", &TokenRates::reasoning},
}};

Money price_of(const json& value, const std::string& model, std::string_view field) {
  if (!value.is_number()) {
    throw PriceTableError("model '" + model + "': " + std::string(field) + " must be a number, got " + value.dump());
  }
  try {
    return Money::from_usd_price(value.get<double>());
  } catch (const Error& e) {
    throw PriceTableError("model '" + model + "': " + std::string(field) + ": " + e.what());
  }
}

// "input_cost_per_token_above_200k_tokens" → (input slot, 200000); nullopt for other fields.
std::optional<std::pair<std::optional<Money> TokenRates::*, std::int64_t>> tier_field(std::string_view key) {
  constexpr std::string_view kAbove = "_above_";
  constexpr std::string_view kSuffix = "k_tokens";
  for (const auto& field : kRateFields) {
    if (!key.starts_with(field.name) || key.size() <= field.name.size() + kAbove.size() + kSuffix.size()) continue;
    std::string_view rest = key.substr(field.name.size());
    if (!rest.starts_with(kAbove) || !rest.ends_with(kSuffix)) continue;
    std::string_view digits = rest.substr(kAbove.size(), rest.size() - kAbove.size() - kSuffix.size());
    std::int64_t thousands = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), thousands);
    if (ec == std::errc() && end == digits.data() + digits.size()) return std::pair{field.slot, thousands * 1000};
  }
  return std::nullopt;
}

PriceTier& tier_at(std::vector<PriceTier>& tiers, std::int64_t above) {
  auto it = std::find_if(tiers.begin(), tiers.end(), [&](const PriceTier& t) { return t.above_tokens == above; });
  if (it != tiers.end()) return *it;
  tiers.push_back(PriceTier{above, {}});
  return tiers.back();
}

std::int64_t int_field(const json& entry, const char* name) {
  auto it = entry.find(name);
  if (it == entry.end() || !it->is_number()) return 0;
  double v = it->get<double>();
  return v > 0 && v < 9e15 ? static_cast<std::int64_t>(v) : 0;
}

ModelPrice build_model(const std::string& name, const json& entry) {
  ModelPrice m;
  m.name = name;
  if (auto it = entry.find("litellm_provider"); it != entry.end() && it->is_string()) m.provider = it->get<std::string>();
  if (auto it = entry.find("mode"); it != entry.end() && it->is_string()) m.mode = it->get<std::string>();
  m.max_input_tokens = int_field(entry, "max_input_tokens");
  m.max_output_tokens = int_field(entry, "max_output_tokens");
  for (const auto& [key, value] : entry.items()) {
    if (value.is_null()) continue;
    if (key == "input_cost_per_request") {
      m.per_request = price_of(value, name, key);
      continue;
    }
    bool matched = false;
    for (const auto& field : kRateFields) {
      if (key == field.name) {
        m.base.*field.slot = price_of(value, name, key);
        matched = true;
      }
    }
    if (matched) continue;
    if (auto tier = tier_field(key)) tier_at(m.tiers, tier->second).rates.*(tier->first) = price_of(value, name, key);
  }
  // `tiered_pricing: [{range: [lo, hi], <rate fields>}, ...]`: the range starting at 0 is the base
  // (where the flat fields are absent); each later range is a tier above its lower bound.
  if (auto it = entry.find("tiered_pricing"); it != entry.end() && it->is_array()) {
    for (const auto& range : *it) {
      auto r = range.find("range");
      if (!range.is_object() || r == range.end() || !r->is_array() || r->empty() || !(*r)[0].is_number()) continue;
      auto lower = static_cast<std::int64_t>((*r)[0].get<double>());
      TokenRates rates;
      for (const auto& field : kRateFields) {
        if (auto f = range.find(field.name); f != range.end() && !f->is_null()) {
          rates.*field.slot = price_of(*f, name, "tiered_pricing." + std::string(field.name));
        }
      }
      if (lower <= 0) {
        TokenRates merged = rates;
        merged.overlay(m.base);  // flat fields win where both exist
        m.base = merged;
      } else {
        tier_at(m.tiers, lower).rates.overlay(rates);
      }
    }
  }
  std::sort(m.tiers.begin(), m.tiers.end(), [](const PriceTier& a, const PriceTier& b) { return a.above_tokens < b.above_tokens; });
  return m;
}

bool provider_matches(std::string_view prefix, std::string_view provider) {
  if (provider == prefix) return true;
  // A family: `vertex_ai` covers `vertex_ai-language-models`, `bedrock` covers `bedrock_converse`.
  if (provider.size() > prefix.size() && provider.starts_with(prefix)) {
    char sep = provider[prefix.size()];
    if (sep == '-' || sep == '_') return true;
  }
  return prefix == "openai" && provider == "text-completion-openai";
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw PriceTableError("cannot read price table " + path.string());
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

}  // namespace

void TokenRates::overlay(const TokenRates& other) {
  for (const auto& field : kRateFields) {
    if (other.*field.slot) this->*field.slot = other.*field.slot;
  }
}

PriceTable PriceTable::from_json_texts(const std::vector<std::string>& texts) {
  json merged = json::object();
  for (std::size_t i = 0; i < texts.size(); ++i) {
    json doc = json::parse(texts[i], nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded() || !doc.is_object()) {
      throw PriceTableError("price table #" + std::to_string(i + 1) + " is not a JSON object of models");
    }
    for (auto& [name, entry] : doc.items()) {
      if (!entry.is_object()) throw PriceTableError("model '" + name + "': entry must be an object");
      json& target = merged[name];
      if (!target.is_object()) target = json::object();
      target.update(entry);  // field by field: a user file overrides only what it names
    }
  }
  PriceTable table;
  for (const auto& [name, entry] : merged.items()) {
    if (name == "sample_spec") continue;  // the format's documentation entry, not a model
    table.models_.emplace(name, build_model(name, entry));
  }
  return table;
}

PriceTable PriceTable::load_files(const std::vector<std::filesystem::path>& paths) {
  std::vector<std::string> texts;
  texts.reserve(paths.size());
  for (const auto& p : paths) texts.push_back(read_file(p));
  try {
    return from_json_texts(texts);
  } catch (const PriceTableError& e) {
    std::string which;
    for (const auto& p : paths) which += (which.empty() ? "" : ", ") + p.string();
    throw PriceTableError(std::string(e.what()) + " (loading " + which + ")");
  }
}

const ModelPrice* PriceTable::find(std::string_view model) const noexcept {
  if (auto it = models_.find(model); it != models_.end()) return &it->second;
  auto slash = model.find('/');
  if (slash == std::string_view::npos) return nullptr;
  auto it = models_.find(model.substr(slash + 1));
  if (it != models_.end() && provider_matches(model.substr(0, slash), it->second.provider)) return &it->second;
  return nullptr;
}

const ModelPrice& PriceTable::resolve(std::string_view model) const {
  if (const ModelPrice* m = find(model)) return *m;
  throw UnknownModelError("unknown model '" + std::string(model) +
                          "': not in the price table (set a custom price or add it with LLMBILL_PRICES)");
}

ModelPrice PriceTable::resolve_with(std::string_view model, const CustomPrices& custom) const {
  const ModelPrice* known = find(model);
  if (custom.empty()) return resolve(model);
  ModelPrice m = known ? *known : ModelPrice{};
  if (!known) m.name = std::string(model);
  m.custom = true;
  if (custom.input || custom.output) m.tiers.clear();
  if (custom.input) m.base.input = custom.input;
  if (custom.output) m.base.output = custom.output;
  if (custom.cache_read) m.base.cache_read = custom.cache_read;
  if (custom.cache_creation) {
    m.base.cache_creation = custom.cache_creation;
    // The table's 1h rate goes with the table's write rate: 1h writes now fall back to the custom one.
    m.base.cache_creation_1h.reset();
  }
  if (custom.per_request) m.per_request = custom.per_request;
  return m;
}

std::vector<std::string> PriceTable::names() const {
  std::vector<std::string> out;
  out.reserve(models_.size());
  for (const auto& [name, _] : models_) out.push_back(name);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace llmbill
