// A PROTOTYPE of the billing steps of a native request path (docs/native-request-path.md): what one
// chat call costs when everything the proxy does around the upstream hop runs in C++ on the existing
// core library, timed step by step. Not a proxy — no sockets: the HTTP server and the upstream client
// are not here (the note prices them from the fakes' figures). Each "call":
//
//   request    parse the client's JSON body (nlohmann): model, user, max_tokens, the prompt's size
//   key        SHA-256 of the bearer token (OpenSSL), hex, lookup among 10,000 virtual keys
//   guards     deployment and customer lookups; for the key and the customer: blocked?, spend +
//              reserved >= max_budget?, a requests-per-minute window; the upper-bound cost (every
//              prompt byte a token, max_tokens completion) through compute_cost; reserve it (a mutex)
//   usage      usage_from_response on a canned chat.completion reply (~400 bytes)
//   cost       compute_cost for the actual usage
//   settle     Ledger::record (key, customer, model), release the reservations, a spend-log row
//              (a struct of a dozen fields) appended to the batch a writer would drain
//   call id    16 random bytes, hex (the proxy's uuid4().hex)
//   spool      Pipeline::submit: the Lago event built, appended to the spool (interval fsync, as
//              shipped), queued for the sender thread — whose transport here answers 200 at once
//
//   native_path_proto [--calls N] [--json FILE]
//
// Prints the median and p99 of each step (steady_clock around it, ~20 ns of clock included), the
// whole chain's calls/s, and CPU per call of the calling thread and of the process (the sender
// thread included). The same steps' share of llmbill-proxy's CPU today comes from its profile
// (bench/profile_proxy.py); the note sets the two side by side.
#include <openssl/sha.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "bench_util.hpp"
#include "llmbill/cost.hpp"
#include "llmbill/ledger.hpp"
#include "llmbill/pipeline.hpp"
#include "llmbill/prices.hpp"
#include "llmbill/sender.hpp"
#include "llmbill/usage.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using llmbill::Money;

constexpr std::string_view kRequest =
    R"({"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello in five words."}],)"
    R"("user":"bench-customer","max_tokens":256})";
constexpr std::string_view kReply =
    R"({"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini-2024-07-18",)"
    R"("system_fingerprint":"fp_bench","choices":[{"index":0,"message":{"role":"assistant",)"
    R"("content":"Hello from the fast fake upstream."},"logprobs":null,"finish_reason":"stop"}],)"
    R"("usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19,)"
    R"("prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}})";

struct Guarded {  // what the proxy keeps per entity in memory: limits, spend, in-flight reservations
  Money max_budget;
  Money spend;
  Money reserved;
  bool blocked = false;
  int rpm = 0;  // 0: none
  std::deque<std::int64_t> window;  // call times (ms) in the last minute, when rpm is set
};

struct Key {
  std::string alias, user_id, team_id;
  Guarded guard;
};

struct Deployment {
  std::string upstream_model;
  llmbill::ModelPrice price;
};

struct SpendLogRow {  // the columns settle.py writes per call
  std::string request_id, call_type, model, api_key, user, team_id, end_user;
  Money spend;
  std::int64_t prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens;
  std::int64_t start_ms, end_ms;
};

class OkTransport : public llmbill::Transport {  // Lago answering 200 at once: the sender's cost, no I/O
 public:
  llmbill::HttpReply send(const std::vector<const std::string*>& events) override {
    llmbill::HttpReply r;
    r.status = 200;
    r.body = "{\"events_received\":" + std::to_string(events.size()) + "}";
    return r;
  }
  std::string describe() const override { return "ok (in process)"; }
};

std::string sha256_hex(std::string_view s) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), digest);
  static constexpr char hex[] = "0123456789abcdef";
  std::string out(2 * SHA256_DIGEST_LENGTH, '0');
  for (int i = 0; i < SHA256_DIGEST_LENGTH; ++i) {
    out[static_cast<std::size_t>(2 * i)] = hex[digest[i] >> 4];
    out[static_cast<std::size_t>(2 * i + 1)] = hex[digest[i] & 15];
  }
  return out;
}

double thread_cpu_s() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double process_cpu_s() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// True when the entity may take one more call (the checks of guards.py's admit, in order).
bool allowed(Guarded& g, std::int64_t now) {
  if (g.blocked) return false;
  if (g.spend + g.reserved >= g.max_budget) return false;
  if (g.rpm > 0) {
    while (!g.window.empty() && g.window.front() <= now - 60'000) g.window.pop_front();
    if (static_cast<int>(g.window.size()) >= g.rpm) return false;
  }
  return true;
}

struct World {
  std::unordered_map<std::string, Key> keys;  // by token hash
  std::unordered_map<std::string, Guarded> customers;
  std::unordered_map<std::string, Deployment> deployments;
  std::mutex guard_mu;  // one lock around check + reserve, as the event loop makes them one step
  llmbill::Ledger ledger;
  std::vector<SpendLogRow> spend_batch;
  std::mt19937_64 rng{42};
};

constexpr int kSteps = 8;
constexpr const char* kStepNames[kSteps] = {"request", "key", "guards", "usage", "cost", "settle", "call id", "spool"};

// One call through every step; `lap` (when given) gets each step's nanoseconds.
void one_call(World& w, llmbill::Pipeline& pipeline, const std::string& token, std::int64_t* lap) {
  auto t = Clock::now();
  auto mark = [&](int step) {
    if (lap == nullptr) return;
    const auto now = Clock::now();
    lap[step] = std::chrono::duration_cast<std::chrono::nanoseconds>(now - t).count();
    t = now;
  };
  const std::int64_t start_ms = now_ms();
  // request
  const auto body = nlohmann::json::parse(kRequest);
  const std::string model = body.at("model").get<std::string>();
  const std::string user = body.value("user", "");
  const std::int64_t max_tokens = body.value("max_tokens", std::int64_t{0});
  const auto prompt_bytes = static_cast<std::int64_t>(body.at("messages").dump().size());
  mark(0);
  // key
  const auto key_it = w.keys.find(sha256_hex(token));
  if (key_it == w.keys.end()) std::abort();
  Key& key = key_it->second;
  mark(1);
  // guards
  const auto dep_it = w.deployments.find(model);
  if (dep_it == w.deployments.end()) std::abort();
  const Deployment& d = dep_it->second;
  Guarded& customer = w.customers[user];
  llmbill::Usage bound;
  bound.prompt_tokens = prompt_bytes;
  bound.completion_tokens = max_tokens > 0 ? max_tokens : (d.price.max_output_tokens ? d.price.max_output_tokens : 4096);
  const Money upper = llmbill::compute_cost(d.price, bound).total;
  {
    std::lock_guard lock(w.guard_mu);
    if (!allowed(key.guard, start_ms) || !allowed(customer, start_ms)) std::abort();
    for (Guarded* g : {&key.guard, &customer}) {
      g->reserved += upper;
      if (g->rpm > 0) g->window.push_back(start_ms);
    }
  }
  mark(2);
  // usage
  const llmbill::Usage usage = llmbill::usage_from_response(kReply);
  mark(3);
  // cost
  const llmbill::Cost cost = llmbill::compute_cost(d.price, usage);
  mark(4);
  // settle
  w.ledger.record({.key = key_it->first, .user = key.user_id, .team = key.team_id, .customer = user}, model, usage,
                  cost.total);
  {
    std::lock_guard lock(w.guard_mu);
    for (Guarded* g : {&key.guard, &customer}) {
      g->reserved -= upper;
      g->spend += cost.total;
    }
  }
  mark(5);
  // call id
  char id[33];
  const std::uint64_t a = w.rng(), b = w.rng();
  std::snprintf(id, sizeof id, "%016llx%016llx", static_cast<unsigned long long>(a), static_cast<unsigned long long>(b));
  mark(6);
  // spool (and the spend-log row, which reuses the call id)
  w.spend_batch.push_back(SpendLogRow{id, "chat_completion", model, key_it->first, key.user_id, key.team_id, user,
                                      cost.total, usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens,
                                      usage.reasoning_tokens, start_ms, now_ms()});
  if (w.spend_batch.size() >= 1000) w.spend_batch.clear();  // the writer's drain, every 0.5 s in the proxy
  llmbill::CallRecord call;
  call.call_id = id;
  call.timestamp_ms = start_ms;
  call.model = model;
  call.usage = usage;
  call.cost = cost.total;
  call.key_alias = key.alias;
  call.user_id = key.user_id;
  call.team_id = key.team_id;
  call.end_user_id = user;
  pipeline.submit(call);
  mark(7);
}

std::int64_t pct(std::vector<std::int64_t>& v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())))];
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t calls = 200'000;
  std::string json_out;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--calls") == 0) calls = std::strtoull(argv[i + 1], nullptr, 10);
    else if (std::strcmp(argv[i], "--json") == 0) json_out = argv[i + 1];
    else {
      std::fprintf(stderr, "usage: native_path_proto [--calls N] [--json FILE]\n");
      return 2;
    }
  }
  World w;
  const auto table = llmbill::PriceTable::load_files({LLMBILL_PRICES_JSON});
  w.deployments["gpt-4o-mini"] = Deployment{"gpt-4o-mini", table.resolve("gpt-4o-mini")};
  std::string token;
  for (int i = 0; i < 10'000; ++i) {
    const std::string raw = "sk-bench-" + std::to_string(i);
    Key k{"alias-" + std::to_string(i), "user-" + std::to_string(i % 100), "team-" + std::to_string(i % 10), {}};
    k.guard.max_budget = Money::parse_usd("1000000");
    k.guard.rpm = 0;
    w.keys.emplace(sha256_hex(raw), std::move(k));
    if (i == 4242) token = raw;
  }
  w.customers["bench-customer"].max_budget = Money::parse_usd("1000000");

  llmbill::bench::TempDir dir;
  llmbill::PipelineOptions options;
  options.events.codes = {"llm_usage"};
  options.spool.dir = dir.path() / "spool";
  llmbill::Pipeline pipeline(options, std::make_unique<OkTransport>());

  for (int i = 0; i < 2000; ++i) one_call(w, pipeline, token, nullptr);  // warm caches and the spool

  // The whole chain, no per-step clocks: calls/s and CPU per call.
  const double thread0 = thread_cpu_s(), proc0 = process_cpu_s();
  const auto t0 = Clock::now();
  for (std::size_t i = 0; i < calls; ++i) one_call(w, pipeline, token, nullptr);
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  const double thread_cpu = thread_cpu_s() - thread0;
  pipeline.flush(std::chrono::seconds(60));
  const double proc_cpu = process_cpu_s() - proc0;

  // Each step, timed around itself.
  std::vector<std::vector<std::int64_t>> laps(kSteps);
  for (auto& l : laps) l.reserve(calls / 4);
  std::int64_t lap[kSteps];
  for (std::size_t i = 0; i < calls / 4; ++i) {
    one_call(w, pipeline, token, lap);
    for (int s = 0; s < kSteps; ++s) laps[static_cast<std::size_t>(s)].push_back(lap[s]);
  }
  pipeline.flush(std::chrono::seconds(60));
  const auto stats = pipeline.stats();
  pipeline.close(std::chrono::seconds(5));

  nlohmann::json out;
  out["calls"] = calls;
  out["calls_per_s"] = static_cast<double>(calls) / wall;
  out["thread_cpu_us_per_call"] = thread_cpu * 1e6 / static_cast<double>(calls);
  out["process_cpu_us_per_call"] = proc_cpu * 1e6 / static_cast<double>(calls);
  out["delivered"] = stats.delivered;
  std::printf("native request path prototype: %zu calls, %.0f calls/s on one thread, CPU per call %.2f µs "
              "(calling thread), %.2f µs (process, sender thread included); %llu events delivered\n\n",
              calls, static_cast<double>(calls) / wall, thread_cpu * 1e6 / static_cast<double>(calls),
              proc_cpu * 1e6 / static_cast<double>(calls), static_cast<unsigned long long>(stats.delivered));
  std::printf("| step | median µs | p99 µs |\n|---|---:|---:|\n");
  std::int64_t sum_median = 0;
  for (int s = 0; s < kSteps; ++s) {
    auto& l = laps[static_cast<std::size_t>(s)];
    const std::int64_t p50 = pct(l, 0.5), p99 = pct(l, 0.99);
    sum_median += p50;
    out["steps"][kStepNames[s]] = {{"p50_us", static_cast<double>(p50) / 1000}, {"p99_us", static_cast<double>(p99) / 1000}};
    std::printf("| %s | %.2f | %.2f |\n", kStepNames[s], static_cast<double>(p50) / 1000, static_cast<double>(p99) / 1000);
  }
  std::printf("| sum of medians | %.2f | |\n", static_cast<double>(sum_median) / 1000);
  if (!json_out.empty()) std::ofstream(json_out) << out.dump(1) << "\n";
  return stats.delivered >= calls ? 0 : 1;
}
