// Cost lookups per second from C++ (benchmarks.md, scenario 6): PriceTable::resolve + compute_cost over
// a fixed mix of realistic calls against the bundled table, beside a baseline in the same binary that
// does the same lookup and the same formula in plain doubles (no exact money, no itemised Cost).
//
// The baseline table is built from the loaded PriceTable (every model, so the hash map has the same
// size and the same keys), and both sides are checked to agree on every call of the mix before
// anything is timed. The figure to read is the ratio: llmbill calls/s ÷ baseline calls/s, both
// medians of interleaved repetitions in one run.
//
//   cost_bench [--quick] [any --benchmark_* flag]
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "llmbill/cost.hpp"
#include "llmbill/prices.hpp"
#include "summary.hpp"

namespace {

using llmbill::Usage;

struct Call {
  std::string model;  // as it arrives in a request
  Usage usage;
};

// Prompt counts include cache reads and writes (usage.hpp): an Anthropic reply's input_tokens 2,000
// + cache_read 14,000 + cache_creation 2,000 is prompt_tokens 18,000 here.
const std::vector<Call>& mix() {
  static const std::vector<Call> calls = {
      {"gpt-4o", {.prompt_tokens = 3200, .completion_tokens = 450, .cached_tokens = 2048}},
      {"gpt-4o-mini", {.prompt_tokens = 900, .completion_tokens = 220}},
      {"claude-sonnet-4-5",
       {.prompt_tokens = 18000, .completion_tokens = 700, .cached_tokens = 14000, .cache_creation_tokens = 2000}},
      {"gemini-2.5-pro", {.prompt_tokens = 240000, .completion_tokens = 3000, .cached_tokens = 120000}},  // > 200k tier
      {"text-embedding-3-small", {.prompt_tokens = 512}},
      {"openai/gpt-4o", {.prompt_tokens = 1500, .completion_tokens = 600}},  // provider-prefixed name
  };
  return calls;
}

const llmbill::PriceTable& table() {
  static const llmbill::PriceTable t = llmbill::PriceTable::load_files({LLMBILL_PRICES_JSON});
  return t;
}

// ---- The baseline: the same resolution and formula, in doubles ------------------------------------

struct DoubleRates {
  std::optional<double> input, output, cache_read, cache_creation, reasoning;
  void overlay(const DoubleRates& o) {
    if (o.input) input = o.input;
    if (o.output) output = o.output;
    if (o.cache_read) cache_read = o.cache_read;
    if (o.cache_creation) cache_creation = o.cache_creation;
    if (o.reasoning) reasoning = o.reasoning;
  }
};

struct DoubleModel {
  std::string provider;
  DoubleRates base;
  std::vector<std::pair<std::int64_t, DoubleRates>> tiers;  // ascending thresholds
  double per_request = 0;
};

std::optional<double> to_double(const std::optional<llmbill::Money>& m) {
  if (!m) return std::nullopt;
  return m->to_usd_double();
}

DoubleRates to_double(const llmbill::TokenRates& r) {
  return {to_double(r.input), to_double(r.output), to_double(r.cache_read), to_double(r.cache_creation),
          to_double(r.reasoning)};
}

class DoubleTable {
 public:
  explicit DoubleTable(const llmbill::PriceTable& source) {
    for (const std::string& name : source.names()) {
      const llmbill::ModelPrice& m = source.resolve(name);
      DoubleModel d{m.provider, to_double(m.base), {}, m.per_request ? m.per_request->to_usd_double() : 0.0};
      for (const auto& tier : m.tiers) d.tiers.emplace_back(tier.above_tokens, to_double(tier.rates));
      models_.emplace(name, std::move(d));
    }
  }

  // Exact key, else `<provider>/<name>` when <name>'s provider is that provider or of its family.
  const DoubleModel* find(std::string_view model) const {
    if (auto it = models_.find(std::string(model)); it != models_.end()) return &it->second;
    auto slash = model.find('/');
    if (slash == std::string_view::npos) return nullptr;
    auto it = models_.find(std::string(model.substr(slash + 1)));
    if (it == models_.end()) return nullptr;
    std::string_view prefix = model.substr(0, slash), provider = it->second.provider;
    bool family = provider.size() > prefix.size() && provider.starts_with(prefix) &&
                  (provider[prefix.size()] == '-' || provider[prefix.size()] == '_');
    bool ok = provider == prefix || family || (prefix == "openai" && provider == "text-completion-openai");
    return ok ? &it->second : nullptr;
  }

 private:
  std::unordered_map<std::string, DoubleModel> models_;
};

double double_cost(const DoubleModel& m, const Usage& u) {
  DoubleRates r = m.base;
  for (const auto& [above, rates] : m.tiers) {
    if (u.prompt_tokens > above) r.overlay(rates);
  }
  const double input = r.input.value_or(0), output = r.output.value_or(0);
  const auto uncached = static_cast<double>(u.prompt_tokens - u.cached_tokens - u.cache_creation_tokens);
  return input * uncached + r.cache_read.value_or(input) * static_cast<double>(u.cached_tokens) +
         r.cache_creation.value_or(input) * static_cast<double>(u.cache_creation_tokens) +
         output * static_cast<double>(u.completion_tokens - u.reasoning_tokens) +
         r.reasoning.value_or(output) * static_cast<double>(u.reasoning_tokens) + m.per_request;
}

const DoubleTable& double_table() {
  static const DoubleTable t(table());
  return t;
}

// ---- Benchmarks ---------------------------------------------------------------------------------

const std::int64_t kCallsPerIteration = static_cast<std::int64_t>(mix().size());

void BM_llmbill_resolve_cost(benchmark::State& state) {
  const auto& t = table();
  for (auto _ : state) {
    for (const Call& call : mix()) {
      llmbill::Cost c = llmbill::compute_cost(t.resolve(call.model), call.usage);
      benchmark::DoNotOptimize(c);
    }
  }
  state.SetItemsProcessed(state.iterations() * kCallsPerIteration);
}

void BM_baseline_double_resolve_cost(benchmark::State& state) {
  const auto& t = double_table();
  for (auto _ : state) {
    for (const Call& call : mix()) {
      double c = double_cost(*t.find(call.model), call.usage);
      benchmark::DoNotOptimize(c);
    }
  }
  state.SetItemsProcessed(state.iterations() * kCallsPerIteration);
}

// The same two with the model already resolved: what the arithmetic alone costs.
void BM_llmbill_cost_preresolved(benchmark::State& state) {
  std::vector<const llmbill::ModelPrice*> prices;
  for (const Call& call : mix()) prices.push_back(&table().resolve(call.model));
  for (auto _ : state) {
    for (std::size_t i = 0; i < prices.size(); ++i) {
      llmbill::Cost c = llmbill::compute_cost(*prices[i], mix()[i].usage);
      benchmark::DoNotOptimize(c);
    }
  }
  state.SetItemsProcessed(state.iterations() * kCallsPerIteration);
}

void BM_baseline_double_cost_preresolved(benchmark::State& state) {
  std::vector<const DoubleModel*> prices;
  for (const Call& call : mix()) prices.push_back(double_table().find(call.model));
  for (auto _ : state) {
    for (std::size_t i = 0; i < prices.size(); ++i) {
      double c = double_cost(*prices[i], mix()[i].usage);
      benchmark::DoNotOptimize(c);
    }
  }
  state.SetItemsProcessed(state.iterations() * kCallsPerIteration);
}

BENCHMARK(BM_llmbill_resolve_cost);
BENCHMARK(BM_baseline_double_resolve_cost);
BENCHMARK(BM_llmbill_cost_preresolved);
BENCHMARK(BM_baseline_double_cost_preresolved);

// Both sides must compute the same thing, or the ratio means nothing.
bool check_agreement() {
  bool ok = true;
  for (const Call& call : mix()) {
    const double exact = llmbill::compute_cost(table().resolve(call.model), call.usage).total.to_usd_double();
    const DoubleModel* d = double_table().find(call.model);
    const double approx = d ? double_cost(*d, call.usage) : -1;
    const bool same = std::fabs(exact - approx) <= 1e-12 * std::max(1.0, std::fabs(exact));
    std::printf("  %-24s llmbill %-14.10g baseline %-14.10g %s\n", call.model.c_str(), exact, approx,
                same ? "" : "MISMATCH");
    ok = ok && same;
  }
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  // Defaults first so that flags given on the command line (parsed later) override them.
  bool quick = false;
  std::vector<std::string> args{argv[0], "--benchmark_enable_random_interleaving=true",
                                "--benchmark_report_aggregates_only=true"};
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) quick = true;
  }
  args.emplace_back(quick ? "--benchmark_repetitions=3" : "--benchmark_repetitions=7");
  args.emplace_back(quick ? "--benchmark_min_time=0.05" : "--benchmark_min_time=0.3");
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") != 0) args.emplace_back(argv[i]);
  }
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  int cargc = static_cast<int>(cargs.size());

  std::printf("price table: %s (%zu models)\nthe mix, priced both ways:\n", LLMBILL_PRICES_JSON, table().size());
  if (!check_agreement()) {
    std::fprintf(stderr, "cost_bench: llmbill and the double baseline disagree: no result\n");
    return 1;
  }
  benchmark::Initialize(&cargc, cargs.data());
  if (benchmark::ReportUnrecognizedArguments(cargc, cargs.data())) return 2;
  llmbill::bench::SummaryReporter reporter(::isatty(STDOUT_FILENO) != 0);
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  auto ips = [&](const char* name) { return reporter.figure(name, "items_per_second"); };
  std::printf("\ncost lookups from C++ (calls/s, medians; ratio to the same-run double baseline):\n");
  llmbill::bench::print_ratio("llmbill resolve + compute_cost", ips("BM_llmbill_resolve_cost"),
                              ips("BM_baseline_double_resolve_cost"), "calls/s");
  llmbill::bench::print_ratio("baseline: same lookup + formula in doubles", ips("BM_baseline_double_resolve_cost"),
                              ips("BM_baseline_double_resolve_cost"), "calls/s");
  llmbill::bench::print_ratio("llmbill compute_cost, model pre-resolved", ips("BM_llmbill_cost_preresolved"),
                              ips("BM_baseline_double_cost_preresolved"), "calls/s");
  llmbill::bench::print_ratio("baseline: formula in doubles, pre-resolved", ips("BM_baseline_double_cost_preresolved"),
                              ips("BM_baseline_double_cost_preresolved"), "calls/s");
  for (const auto& e : reporter.errors()) std::fprintf(stderr, "error: %s\n", e.c_str());
  return reporter.errors().empty() ? 0 : 1;
}
