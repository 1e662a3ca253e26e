// The model price table: LiteLLM's `model_prices_and_context_window.json` format, normalised to
// exact Money at load (see money.hpp), with model-name resolution.
//
// Which fields are read (per token unless named): input_cost_per_token, output_cost_per_token,
// cache_read_input_token_cost, cache_creation_input_token_cost, cache_creation_input_token_cost_above_1hr
// (1-hour cache writes), output_cost_per_reasoning_token, their `*_above_<N>k_tokens` variants, the
// `tiered_pricing` list (`range: [lo, hi]`), and input_cost_per_request. Service-tier variants
// (`*_batches`, `*_priority`, `*_flex`, ...) and per-second/per-image/per-character prices are not
// billed by llmbill: a model whose
// only prices are of those kinds resolves, but priced() is false and compute_cost refuses it.
//
// Resolution (find/resolve): the exact key first; then `<provider>/<name>` resolves to the entry
// `<name>` when that entry's litellm_provider is the provider (or a family of it: `vertex_ai` covers
// `vertex_ai-language-models`, `openai` covers `text-completion-openai`). Unknown → UnknownModelError.
//
// Thread safety: a loaded table is immutable; share it freely across threads.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <functional>
#include <unordered_map>
#include <vector>

#include "llmbill/money.hpp"

namespace llmbill {

// Per-token rates; an absent rate falls back as compute_cost says.
struct TokenRates {
  std::optional<Money> input;
  std::optional<Money> output;
  std::optional<Money> cache_read;
  std::optional<Money> cache_creation;
  std::optional<Money> cache_creation_1h;  // 1-hour cache writes (Anthropic); absent → cache_creation
  std::optional<Money> reasoning;

  void overlay(const TokenRates& other);  // other's present rates replace ours
  bool operator==(const TokenRates&) const = default;
};

// Rates that apply to the whole request when its prompt exceeds `above_tokens`.
struct PriceTier {
  std::int64_t above_tokens = 0;
  TokenRates rates;
};

struct ModelPrice {
  std::string name;      // the table key (or the deployment's model for a custom price)
  std::string provider;  // litellm_provider
  std::string mode;      // chat, embedding, completion, ...
  TokenRates base;
  std::vector<PriceTier> tiers;  // ascending by above_tokens
  std::optional<Money> per_request;
  std::int64_t max_input_tokens = 0;  // 0 = unknown
  std::int64_t max_output_tokens = 0;
  bool custom = false;  // prices came from a deployment's config, not the table

  bool priced() const { return base.input || base.output || per_request; }
};

// Per-deployment prices from a config's litellm_params; each present field overrides the table.
struct CustomPrices {
  std::optional<Money> input;
  std::optional<Money> output;
  std::optional<Money> cache_read;
  std::optional<Money> cache_creation;
  std::optional<Money> per_request;
  bool empty() const { return !input && !output && !cache_read && !cache_creation && !per_request; }
};

class PriceTable {
 public:
  PriceTable() = default;
  // Loads JSON documents in order; a later document's entry for an existing model replaces that
  // model's fields one by one (a user file extends or overrides the bundled table).
  // Throws PriceTableError naming the model and field of an unusable price.
  static PriceTable from_json_texts(const std::vector<std::string>& texts);
  static PriceTable load_files(const std::vector<std::filesystem::path>& paths);

  const ModelPrice* find(std::string_view model) const noexcept;
  const ModelPrice& resolve(std::string_view model) const;  // throws UnknownModelError
  // The table's price with a deployment's overrides. A model the table does not know is fine when
  // the overrides price it; custom input/output prices drop the table's tiers (they no longer apply).
  ModelPrice resolve_with(std::string_view model, const CustomPrices& custom) const;

  std::size_t size() const { return models_.size(); }
  std::vector<std::string> names() const;

 private:
  // Transparent hashing: find(string_view) looks up without building a std::string.
  struct NameHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, ModelPrice, NameHash, std::equal_to<>> models_;
};

}  // namespace llmbill
