// The billing pipeline (benchmarks.md, scenario 5): events through Pipeline::submit → spool → sender →
// a real HTTP fake Lago, with FsyncPolicy::every_record and ::interval, and the same-run baselines
// each figure is read against:
//   pipeline/<policy>/threads:T  events/s from the first submit until flush() returned (all delivered);
//                                the caller's submit latency p50/p99 (steady_clock around each call);
//                                flush_ms: time from the last submit until flush() returned;
//                                cpu_us_per_event: the process's CPU time (all threads) per event.
//   baseline/write+fdatasync     the disk's own ceiling: one write(2) + fdatasync per record of the same
//                                size in the same file system (what every_record cannot beat).
//   baseline/write               one write(2) per record, no sync (the floor of any spool append).
//   baseline/transport_direct    llmbill's libcurl transport posting prebuilt 100-event batches straight
//                                to the same fake, no spool, no queue: the fake + transport ceiling.
//   memory/transport_down        VmRSS growth per event queued while Lago is unreachable (a closed
//                                port), N events, after malloc_trim; beside it the event's own JSON
//                                size, and the heap bytes in use per event (mallinfo2) as a cross-check.
// Every pipeline run must deliver exactly N events (checked in the pipeline's stats and in the fake's
// own count, GET /_fake/wait?count=0) or it is reported as an error, not a result.
//
//   pipeline_bench [--quick] [--fake python|cpp] [--python EXE] [--lago-url URL --api-key K]
//                  [any --benchmark_* flag]
// --fake python (the default when tests/python/fakes/lago.py exists) runs the test suite's strict fake
// Lago under EXE as a child process; --fake cpp runs bench/fake_lago, built beside this program;
// --lago-url uses a server already running. Each run resets the fake and checks its event count.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_util.hpp"
#include "llmbill/cost.hpp"
#include "llmbill/event.hpp"
#include "llmbill/pipeline.hpp"
#include "llmbill/prices.hpp"
#include "llmbill/transport.hpp"
#include "summary.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using llmbill::bench::percentile;

struct Config {
  std::string lago_url;
  std::string api_key = "bench-key";
  std::string fake_kind;  // python (the test suite's strict fake), cpp (bench/fake_lago), or external
  std::string python = "python3";
  std::string fake;  // which fake Lago, for the output
  std::size_t n_sync = 1000;  // every_record: an fdatasync takes 0.25 to 4 ms here, by the disk's load
  std::size_t n_interval = 100000;
  std::size_t n_memory = 100000;
  std::size_t n_direct = 20000;  // transport_direct: enough 100-event batches to show the ceiling
  int repetitions = 5;
};
Config g;

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// CPU seconds used by this process so far, every thread (the submitter and the sender) included.
double process_cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  return s(u.ru_utime) + s(u.ru_stime);
}
double micros(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

llmbill::EventOptions event_options() { return {.codes = {"llm_usage"}, .charge_by = llmbill::ChargeBy::end_user_id}; }

// One realistic call: gpt-4o with cached tokens, priced from the bundled table, all ids present.
llmbill::CallRecord sample_call() {
  static const llmbill::PriceTable table = llmbill::PriceTable::load_files({LLMBILL_PRICES_JSON});
  llmbill::CallRecord call;
  call.call_id = "chatcmpl-bench-" + std::to_string(::getpid());
  call.timestamp_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
  call.model = "gpt-4o";
  call.usage = {.prompt_tokens = 3200, .completion_tokens = 450, .cached_tokens = 2048};
  call.cost = llmbill::compute_cost(table.resolve(call.model), call.usage).total;
  call.key_alias = "team-a-prod";
  call.user_id = "user-17";
  call.team_id = "team-a";
  call.end_user_id = "customer-42";
  return call;
}

std::size_t event_bytes() {
  static const std::size_t n = llmbill::build_lago_events(sample_call(), event_options()).events.at(0).size();
  return n;
}

// Both fakes answer these; an external server without them is simply not cross-checked.
void reset_fake() { llmbill::bench::http_request(g.lago_url + "/_fake/reset", /*post=*/true); }

// Events the fake has stored so far; -1 when it cannot tell. (/_fake/wait with count=0 answers at
// once with the count; the Python fake's /_fake/stats deep-copies every event, seconds at 100k.)
std::int64_t fake_events() {
  auto body = llmbill::bench::http_request(g.lago_url + "/_fake/wait?count=0&timeout=1");
  if (!body) return -1;
  auto j = nlohmann::json::parse(*body, nullptr, false);
  return j.is_object() && j.contains("events") ? j["events"].get<std::int64_t>() : -1;
}

// A prefix no earlier run in this process used: the strict fake rejects a repeated transaction_id.
std::string unique_prefix() {
  static int runs = 0;
  return sample_call().call_id + "-r" + std::to_string(++runs) + "-";
}

void pipeline_run(benchmark::State& state, llmbill::FsyncPolicy policy, int threads, std::size_t n) {
  for (auto _ : state) {
    reset_fake();  // the test suite's fake keeps every event: start each run empty
    llmbill::bench::TempDir dir;
    llmbill::PipelineOptions options;
    options.events = event_options();
    options.spool.dir = dir.path() / "spool";
    options.spool.fsync = policy;
    const std::int64_t fake_before = fake_events();
    llmbill::Pipeline pipeline(options, llmbill::make_lago_transport(g.lago_url, g.api_key));

    std::vector<std::vector<double>> latencies(static_cast<std::size_t>(threads));
    const std::string run_prefix = unique_prefix();
    auto submitter = [&](int t, std::size_t count) {
      llmbill::CallRecord call = sample_call();
      const std::string prefix = run_prefix + std::to_string(t) + "-";
      auto& lat = latencies[static_cast<std::size_t>(t)];
      lat.reserve(count);
      for (std::size_t i = 0; i < count; ++i) {
        call.call_id = prefix + std::to_string(i);
        const auto t0 = Clock::now();
        pipeline.submit(call);
        lat.push_back(micros(Clock::now() - t0));
      }
    };
    const double cpu_start = process_cpu_seconds();
    const auto start = Clock::now();
    if (threads == 1) {
      submitter(0, n);
    } else {
      std::vector<std::thread> pool;
      for (int t = 0; t < threads; ++t) pool.emplace_back(submitter, t, n / static_cast<std::size_t>(threads));
      for (auto& th : pool) th.join();
    }
    const auto submitted = Clock::now();
    const bool flushed = pipeline.flush(std::chrono::seconds(120));
    const auto done = Clock::now();
    const double cpu = process_cpu_seconds() - cpu_start;
    const llmbill::PipelineStats stats = pipeline.stats();
    pipeline.close(std::chrono::seconds(5));

    const std::size_t expected = n / static_cast<std::size_t>(threads) * static_cast<std::size_t>(threads);
    const std::int64_t fake_after = fake_before < 0 ? -1 : fake_events();
    if (!flushed || stats.delivered != expected || stats.dead_lettered != 0 ||
        (fake_before >= 0 && fake_after - fake_before != static_cast<std::int64_t>(expected))) {
      state.SkipWithError(("not all delivered: delivered " + std::to_string(stats.delivered) + " of " +
                           std::to_string(expected) + ", fake counted " + std::to_string(fake_after - fake_before) +
                           ", last error: " + stats.last_error).c_str());
      return;
    }
    std::vector<double> all;
    for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
    const double total = seconds(done - start);
    state.SetIterationTime(total);
    state.counters["events_per_s"] = static_cast<double>(expected) / total;
    state.counters["submit_events_per_s"] = static_cast<double>(expected) / seconds(submitted - start);
    state.counters["flush_ms"] = seconds(done - submitted) * 1000;
    state.counters["submit_p50_us"] = percentile(all, 0.50);
    state.counters["submit_p99_us"] = percentile(all, 0.99);
    state.counters["submit_p999_us"] = percentile(all, 0.999);
    state.counters["submit_max_us"] = all.back();
    state.counters["batches"] = static_cast<double>(stats.batches);
    state.counters["cpu_us_per_event"] = cpu * 1e6 / static_cast<double>(expected);
    state.counters["fake_checked"] = fake_before >= 0 ? 1 : 0;
  }
}

// write(2) (+ fdatasync) of records the size of a spooled event (20-byte header + the event JSON).
void disk_baseline(benchmark::State& state, bool sync, std::size_t n) {
  const std::string record(20 + event_bytes(), 'x');
  for (auto _ : state) {
    llmbill::bench::TempDir dir;
    int fd = ::open((dir.path() / "records.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    std::vector<double> lat;
    lat.reserve(n);
    const double cpu_start = process_cpu_seconds();
    const auto start = Clock::now();
    for (std::size_t i = 0; i < n; ++i) {
      const auto t0 = Clock::now();
      bool ok = ::write(fd, record.data(), record.size()) == static_cast<ssize_t>(record.size());
      if (sync) ok = ok && ::fdatasync(fd) == 0;
      lat.push_back(micros(Clock::now() - t0));
      if (!ok) {
        state.SkipWithError("write failed");
        ::close(fd);
        return;
      }
    }
    const double total = seconds(Clock::now() - start);
    const double cpu = process_cpu_seconds() - cpu_start;
    ::close(fd);
    state.SetIterationTime(total);
    state.counters["events_per_s"] = static_cast<double>(n) / total;
    state.counters["cpu_us_per_event"] = cpu * 1e6 / static_cast<double>(n);
    state.counters["submit_p50_us"] = percentile(lat, 0.50);
    state.counters["submit_p99_us"] = percentile(lat, 0.99);
  }
}

// Prebuilt 100-event batches straight through the transport to the fake: its ceiling.
void transport_baseline(benchmark::State& state, std::size_t n) {
  // Ids are unique across batches (the strict fake rejects resends); building them is not timed.
  std::vector<std::string> events;
  llmbill::CallRecord call = sample_call();
  const std::string prefix = unique_prefix();
  for (std::size_t i = 0; i < std::max<std::size_t>(100, n / 100 * 100); ++i) {
    call.call_id = prefix + std::to_string(i);
    events.push_back(llmbill::build_lago_events(call, event_options()).events.at(0));
  }
  const std::size_t batches = events.size() / 100;
  std::vector<std::vector<const std::string*>> batch_list(batches);
  for (std::size_t i = 0; i < batches * 100; ++i) batch_list[i / 100].push_back(&events[i]);
  for (auto _ : state) {
    reset_fake();
    auto transport = llmbill::make_lago_transport(g.lago_url, g.api_key);
    std::vector<double> lat;
    const std::int64_t fake_before = fake_events();
    const auto start = Clock::now();
    for (std::size_t i = 0; i < batches; ++i) {
      const auto t0 = Clock::now();
      llmbill::HttpReply reply = transport->send(batch_list[i]);
      lat.push_back(micros(Clock::now() - t0));
      if (reply.status != 200) {
        state.SkipWithError(("fake Lago answered " + std::to_string(reply.status) + " " + reply.transport_error).c_str());
        return;
      }
    }
    const double total = seconds(Clock::now() - start);
    const std::int64_t fake_after = fake_before < 0 ? -1 : fake_events();
    if (fake_before >= 0 && fake_after - fake_before != static_cast<std::int64_t>(batches * 100)) {
      state.SkipWithError(("the fake stored " + std::to_string(fake_after - fake_before) + " of " +
                           std::to_string(batches * 100) + " events").c_str());
      return;
    }
    state.SetIterationTime(total);
    state.counters["events_per_s"] = static_cast<double>(batches * 100) / total;
    state.counters["batch_p50_us"] = percentile(lat, 0.50);
    state.counters["batch_p99_us"] = percentile(lat, 0.99);
  }
}

// RSS growth while N events wait in memory for an unreachable Lago (connections refused).
void memory_transport_down(benchmark::State& state, std::size_t n) {
  for (auto _ : state) {
    llmbill::bench::TempDir dir;
    llmbill::PipelineOptions options;
    options.events = event_options();
    options.spool.dir = dir.path() / "spool";
    options.spool.fsync = llmbill::FsyncPolicy::interval;
    const std::string down = "http://127.0.0.1:" + std::to_string(llmbill::bench::closed_port());
    llmbill::Pipeline pipeline(options, llmbill::make_lago_transport(down, g.api_key));
    llmbill::CallRecord call = sample_call();
    const std::string prefix = unique_prefix();
    constexpr std::size_t kWarmup = 1000;  // first segment, first batch in flight, allocator arenas
    for (std::size_t i = 0; i < kWarmup; ++i) {
      call.call_id = prefix + "w" + std::to_string(i);
      pipeline.submit(call);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    // Hand free heap pages back first: memory freed earlier (the price table's JSON parse) would
    // otherwise be reused without showing in VmRSS, and the growth would be understated.
    ::malloc_trim(0);
    const std::int64_t before = llmbill::bench::rss_bytes();
    const std::size_t heap_before = ::mallinfo2().uordblks;
    const auto start = Clock::now();
    for (std::size_t i = 0; i < n; ++i) {
      call.call_id = prefix + std::to_string(i);
      pipeline.submit(call);
    }
    const double total = seconds(Clock::now() - start);
    const std::int64_t after = llmbill::bench::rss_bytes();
    const std::size_t heap_after = ::mallinfo2().uordblks;
    const llmbill::PipelineStats stats = pipeline.stats();
    pipeline.close(std::chrono::milliseconds(0));
    if (stats.delivered != 0 || stats.pending != n + kWarmup) {
      state.SkipWithError(("expected " + std::to_string(n + kWarmup) + " pending, got " + std::to_string(stats.pending) +
                           " (delivered " + std::to_string(stats.delivered) + ")").c_str());
      return;
    }
    state.SetIterationTime(total);
    state.counters["bytes_per_event"] = static_cast<double>(after - before) / static_cast<double>(n);
    state.counters["heap_bytes_per_event"] =
        (static_cast<double>(heap_after) - static_cast<double>(heap_before)) / static_cast<double>(n);
    state.counters["event_json_bytes"] = static_cast<double>(event_bytes());
    state.counters["rss_delta_mb"] = static_cast<double>(after - before) / 1e6;
    state.counters["events"] = static_cast<double>(n);
  }
}

void print_summary(const llmbill::bench::SummaryReporter& r) {
  using llmbill::bench::print_ratio;
  auto f = [&](const char* name, const char* counter) { return r.figure(name, counter); };
  const char* er1 = "pipeline/every_record/threads:1";
  const char* er4 = "pipeline/every_record/threads:4";
  const char* iv = "pipeline/interval/threads:1";
  std::printf("\nbilling pipeline (medians; fake Lago: %s)\n", g.fake.c_str());
  std::printf("events/s, first submit until flush() returned, vs same-run baselines:\n");
  const double sync_base = f("baseline/write+fdatasync", "events_per_s");
  print_ratio("every_record, 1 thread  / write+fdatasync", f(er1, "events_per_s"), sync_base, "ev/s");
  print_ratio("every_record, 4 threads / write+fdatasync", f(er4, "events_per_s"), sync_base, "ev/s");
  print_ratio("interval, 1 thread / transport direct", f(iv, "events_per_s"), f("baseline/transport_direct", "events_per_s"), "ev/s");
  print_ratio("interval, 1 thread / write (no sync)", f(iv, "events_per_s"), f("baseline/write", "events_per_s"), "ev/s");
  std::printf("submit latency seen by the caller (us) vs one write(2) [+ fdatasync] of the same bytes:\n");
  print_ratio("every_record p50 / write+fdatasync p50", f(er1, "submit_p50_us"), f("baseline/write+fdatasync", "submit_p50_us"), "us");
  print_ratio("every_record p99 / write+fdatasync p99", f(er1, "submit_p99_us"), f("baseline/write+fdatasync", "submit_p99_us"), "us");
  print_ratio("interval p50 / write p50", f(iv, "submit_p50_us"), f("baseline/write", "submit_p50_us"), "us");
  print_ratio("interval p99 / write p99", f(iv, "submit_p99_us"), f("baseline/write", "submit_p99_us"), "us");
  std::printf("flush() after the last submit: every_record %.1f ms, interval %.1f ms\n", f(er1, "flush_ms"), f(iv, "flush_ms"));
  print_ratio("memory per queued event / its JSON bytes", f("memory/transport_down", "bytes_per_event"),
              f("memory/transport_down", "event_json_bytes"), "B");
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::vector<std::string> passthrough;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--quick") quick = true;
    else if (a == "--lago-url" && i + 1 < argc) g.lago_url = argv[++i];
    else if (a == "--fake" && i + 1 < argc) g.fake_kind = argv[++i];
    else if (a == "--python" && i + 1 < argc) g.python = argv[++i];
    else if (a == "--api-key" && i + 1 < argc) g.api_key = argv[++i];
    else passthrough.push_back(a);
  }
  if (quick) {
    g.n_sync = 200;
    g.n_interval = 10000;
    g.n_memory = 100000;
    g.n_direct = 3000;
    g.repetitions = 1;
  }
  const std::string python_fake = std::string(LLMBILL_SOURCE_DIR) + "/tests/python/fakes/lago.py";
  if (!g.lago_url.empty()) g.fake_kind = "external";
  if (g.fake_kind.empty()) g.fake_kind = std::filesystem::exists(python_fake) ? "python" : "cpp";
  std::unique_ptr<llmbill::bench::ChildServer> fake;
  if (g.fake_kind == "python") {
    fake = std::make_unique<llmbill::bench::ChildServer>(std::vector<std::string>{
        g.python, python_fake, "--port", "0", "--api-key", g.api_key, "--no-request-log"});
    g.fake = "tests/python/fakes/lago.py (the test suite's strict fake, ThreadingHTTPServer), own process";
  } else if (g.fake_kind == "cpp") {
    fake = std::make_unique<llmbill::bench::ChildServer>(
        std::vector<std::string>{LLMBILL_FAKE_LAGO, "--port", "0", "--api-key", g.api_key});
    g.fake = "bench/fake_lago.cpp (C++ epoll responder, keep-alive, TCP_NODELAY), own process";
  } else if (g.fake_kind == "external") {
    g.fake = "external at " + g.lago_url;
  } else {
    std::fprintf(stderr, "pipeline_bench: --fake takes python or cpp\n");
    return 2;
  }
  if (fake) g.lago_url = "http://127.0.0.1:" + std::to_string(fake->port());

  std::vector<std::string> args{argv[0], "--benchmark_enable_random_interleaving=true"};
  args.insert(args.end(), passthrough.begin(), passthrough.end());
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  int cargc = static_cast<int>(cargs.size());
  benchmark::Initialize(&cargc, cargs.data());
  if (benchmark::ReportUnrecognizedArguments(cargc, cargs.data())) return 2;
  benchmark::AddCustomContext("fake_lago", g.fake);
  benchmark::AddCustomContext("event_json_bytes", std::to_string(event_bytes()));

  auto reg = [](const std::string& name, auto fn) {
    auto* b = benchmark::RegisterBenchmark(name.c_str(), fn);
    b->Iterations(1)->Repetitions(g.repetitions)->UseManualTime()->Unit(benchmark::kMillisecond);
    if (g.repetitions > 1) b->ReportAggregatesOnly(true);
  };
  using llmbill::FsyncPolicy;
  reg("pipeline/every_record/threads:1", [](benchmark::State& s) { pipeline_run(s, FsyncPolicy::every_record, 1, g.n_sync); });
  reg("pipeline/every_record/threads:4", [](benchmark::State& s) { pipeline_run(s, FsyncPolicy::every_record, 4, g.n_sync); });
  reg("pipeline/interval/threads:1", [](benchmark::State& s) { pipeline_run(s, FsyncPolicy::interval, 1, g.n_interval); });
  reg("baseline/write+fdatasync", [](benchmark::State& s) { disk_baseline(s, true, g.n_sync); });
  reg("baseline/write", [](benchmark::State& s) { disk_baseline(s, false, g.n_interval); });
  reg("baseline/transport_direct", [](benchmark::State& s) { transport_baseline(s, g.n_direct); });
  reg("memory/transport_down", [](benchmark::State& s) { memory_transport_down(s, g.n_memory); });

  std::printf("fake Lago: %s\nevent JSON: %zu bytes\n", g.fake.c_str(), event_bytes());
  llmbill::bench::SummaryReporter reporter(::isatty(STDOUT_FILENO) != 0);
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  print_summary(reporter);
  for (const auto& e : reporter.errors()) std::fprintf(stderr, "error: %s\n", e.c_str());
  return reporter.errors().empty() ? 0 : 1;
}
