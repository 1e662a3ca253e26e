// A console reporter that also remembers one figure per benchmark (the median over repetitions when
// there are several), so a bench program can print its ratios against the baseline measured in the
// same run after Google Benchmark's own table. Shared by cost_bench and pipeline_bench.
#pragma once
#include <benchmark/benchmark.h>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace llmbill::bench {

class SummaryReporter : public benchmark::ConsoleReporter {
 public:
  // Colour only on a terminal (a custom display reporter does not see --benchmark_color).
  explicit SummaryReporter(bool color) : ConsoleReporter(color ? OO_ColorTabular : OO_Tabular) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    benchmark::ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.error_occurred) {
        errors_.push_back(run.benchmark_name() + ": " + run.error_message);
        continue;
      }
      const std::string& name = run.run_name.function_name;  // as registered: no /iterations:1 etc.
      const bool median = run.run_type == Run::RT_Aggregate && run.aggregate_name == "median";
      const bool single = run.run_type == Run::RT_Iteration && run.repetitions <= 1;
      if (!median && !single) continue;
      for (const auto& [counter, value] : run.counters) figures_[name][counter] = value.value;
    }
  }

  // The counter's value for a benchmark (its median when repeated); 0 when it did not run.
  double figure(const std::string& benchmark, const std::string& counter) const {
    auto b = figures_.find(benchmark);
    if (b == figures_.end()) return 0;
    auto c = b->second.find(counter);
    return c == b->second.end() ? 0 : c->second;
  }
  const std::vector<std::string>& errors() const { return errors_; }

 private:
  std::map<std::string, std::map<std::string, double>> figures_;
  std::vector<std::string> errors_;
};

// "name: 1.23e+06 /s  = 0.42 x baseline" (or "not run").
inline void print_ratio(const char* label, double value, double baseline, const char* unit) {
  if (value <= 0 || baseline <= 0) {
    std::printf("  %-44s not run\n", label);
    return;
  }
  std::printf("  %-44s %12.4g %-8s %8.3f x baseline\n", label, value, unit, value / baseline);
}

}  // namespace llmbill::bench
