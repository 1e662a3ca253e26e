#include "llmbill/pipeline.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

using namespace std::chrono_literals;
using llmbill::HttpReply;
using nlohmann::json;

namespace {

// A scripted stand-in for Lago's batch endpoint that keeps Lago's default-store dedup rule, so tests
// can count what was stored. `script` may override the reply of each call (by call number).
struct FakeLagoState {
  std::mutex mu;
  std::multiset<std::string> stored;  // transaction ids stored
  std::vector<std::size_t> batch_sizes;
  std::vector<std::chrono::steady_clock::time_point> times;
  std::function<std::optional<HttpReply>(int call, const std::vector<const std::string*>&)> script;
  std::set<std::string> reject_ids;  // events answered 422 invalid
  bool commit_then_fail_once = false;
  int calls = 0;
};

class FakeTransport final : public llmbill::Transport {
 public:
  explicit FakeTransport(std::shared_ptr<FakeLagoState> s) : s_(std::move(s)) {}
  HttpReply send(const std::vector<const std::string*>& events) override {
    std::lock_guard lock(s_->mu);
    int call = s_->calls++;
    s_->batch_sizes.push_back(events.size());
    s_->times.push_back(std::chrono::steady_clock::now());
    if (s_->script) {
      if (auto r = s_->script(call, events)) return *r;
    }
    json details = json::object();
    std::set<std::string> in_batch;
    for (std::size_t i = 0; i < events.size(); ++i) {
      std::string id = json::parse(*events[i])["transaction_id"];
      if (s_->reject_ids.count(id)) {
        details[std::to_string(i)] = {{"timestamp", {"invalid_format"}}};
      } else if (s_->stored.count(id) || in_batch.count(id)) {
        details[std::to_string(i)] = {{"transaction_id", {"value_already_exist"}}};
      }
      in_batch.insert(id);
    }
    if (!details.empty()) return HttpReply{422, json{{"status", 422}, {"error_details", details}}.dump(), {}, ""};
    for (const auto* e : events) s_->stored.insert(json::parse(*e)["transaction_id"].get<std::string>());
    if (s_->commit_then_fail_once) {
      s_->commit_then_fail_once = false;
      return HttpReply{502, "bad gateway", {}, ""};
    }
    return HttpReply{200, "{}", {}, ""};
  }
  std::string describe() const override { return "fake"; }

 private:
  std::shared_ptr<FakeLagoState> s_;
};

class PipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/llmbill-pipeline-XXXXXX";
    dir_ = mkdtemp(tmpl);
    state_ = std::make_shared<FakeLagoState>();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  llmbill::PipelineOptions options(llmbill::ChargeBy by = llmbill::ChargeBy::end_user_id) {
    llmbill::PipelineOptions o;
    o.events = {{"tokens"}, by};
    o.spool.dir = dir_ / "spool";
    o.spool.fsync = llmbill::FsyncPolicy::never;
    o.flush_interval = 5ms;
    o.backoff_base = 5ms;
    o.backoff_cap = 50ms;
    o.config_error_retry = 20ms;
    return o;
  }
  std::unique_ptr<llmbill::Pipeline> open(llmbill::PipelineOptions o) {
    return std::make_unique<llmbill::Pipeline>(std::move(o), std::make_unique<FakeTransport>(state_));
  }
  static llmbill::CallRecord call(int i) {
    llmbill::CallRecord c;
    c.call_id = "call-" + std::to_string(i);
    c.timestamp_ms = 1786000000000 + i;
    c.model = "gpt-4o";
    c.usage = {.prompt_tokens = 10, .completion_tokens = 5};
    c.cost = llmbill::Money::parse_usd("0.000075");
    c.end_user_id = "cust";
    c.team_id = "team";
    return c;
  }
  std::size_t stored_distinct() {
    std::lock_guard lock(state_->mu);
    return std::set<std::string>(state_->stored.begin(), state_->stored.end()).size();
  }
  std::size_t stored_total() {
    std::lock_guard lock(state_->mu);
    return state_->stored.size();
  }

  std::filesystem::path dir_;
  std::shared_ptr<FakeLagoState> state_;
};

}  // namespace

TEST_F(PipelineTest, BatchesAtMostMaxBatchAndDeliversEverything) {
  auto p = open(options());
  for (int i = 0; i < 250; ++i) p->submit(call(i));
  ASSERT_TRUE(p->flush(5s));
  EXPECT_EQ(stored_total(), 250u);
  auto s = p->stats();
  EXPECT_EQ(s.delivered, 250u);
  EXPECT_EQ(s.pending, 0u);
  std::lock_guard lock(state_->mu);
  for (auto n : state_->batch_sizes) EXPECT_LE(n, 100u);
  EXPECT_LT(state_->batch_sizes.size(), 250u);  // batched, not one request per event
}

TEST_F(PipelineTest, LagoDownThenUpDeliversEachEventOnce) {
  state_->script = [](int call, const auto&) -> std::optional<HttpReply> {
    if (call < 5) return HttpReply{0, "", {}, "connection refused"};
    if (call < 8) return HttpReply{503, "unavailable", {}, ""};
    return std::nullopt;
  };
  auto p = open(options());
  for (int i = 0; i < 50; ++i) p->submit(call(i));
  ASSERT_TRUE(p->flush(10s));
  EXPECT_EQ(stored_total(), 50u);
  EXPECT_EQ(stored_distinct(), 50u);
  EXPECT_GT(p->stats().retried, 0u);
  EXPECT_EQ(p->stats().dead_lettered, 0u);
}

TEST_F(PipelineTest, CommittedBatchWithFailedReplyIsCountedOnceWithoutDeadLetters) {
  state_->commit_then_fail_once = true;
  auto p = open(options());
  for (int i = 0; i < 10; ++i) p->submit(call(i));
  ASSERT_TRUE(p->flush(5s));
  EXPECT_EQ(stored_total(), 10u);
  auto s = p->stats();
  EXPECT_EQ(s.delivered, 10u);
  EXPECT_GT(s.duplicates, 0u);
  EXPECT_EQ(s.dead_lettered, 0u);
  EXPECT_EQ(p->dead_letters().count(), 0u);
}

TEST_F(PipelineTest, OneBadEventDoesNotBlockTheOthers) {
  state_->reject_ids = {"call-3"};
  auto p = open(options());
  for (int i = 0; i < 10; ++i) p->submit(call(i));
  ASSERT_TRUE(p->flush(5s));
  EXPECT_EQ(stored_total(), 9u);
  EXPECT_EQ(p->stats().dead_lettered, 1u);
  auto dl = p->dead_letters().get("call-3");
  ASSERT_TRUE(dl.has_value());
  EXPECT_NE(dl->reason.find("invalid_format"), std::string::npos);
  EXPECT_EQ(json::parse(dl->reply)["status"], 422);  // Lago's reply itself is kept
}

TEST_F(PipelineTest, RateLimitResetIsHonoured) {
  state_->script = [](int call, const auto&) -> std::optional<HttpReply> {
    if (call == 0) return HttpReply{429, "", {{"x-ratelimit-reset", "0.3"}}, ""};
    return std::nullopt;
  };
  auto p = open(options());
  p->submit(call(1));
  ASSERT_TRUE(p->flush(5s));
  std::lock_guard lock(state_->mu);
  ASSERT_EQ(state_->times.size(), 2u);
  EXPECT_GE(state_->times[1] - state_->times[0], 300ms);
}

TEST_F(PipelineTest, AuthErrorsKeepEventsUntilFixed) {
  std::atomic<bool> fixed{false};
  state_->script = [&](int, const auto&) -> std::optional<HttpReply> {
    if (!fixed) return HttpReply{401, R"({"status":401,"error":"Unauthorized"})", {}, ""};
    return std::nullopt;
  };
  auto p = open(options());
  p->submit(call(1));
  EXPECT_FALSE(p->flush(100ms));
  EXPECT_GT(p->stats().config_errors, 0u);
  EXPECT_EQ(p->stats().pending, 1u);
  fixed = true;
  ASSERT_TRUE(p->flush(5s));
  EXPECT_EQ(stored_total(), 1u);
}

TEST_F(PipelineTest, UndeliveredEventsSurviveARestart) {
  state_->script = [](int, const auto&) -> std::optional<HttpReply> { return HttpReply{0, "", {}, "down"}; };
  {
    auto p = open(options());
    for (int i = 0; i < 20; ++i) p->submit(call(i));
    EXPECT_FALSE(p->close(50ms));
  }
  EXPECT_EQ(stored_total(), 0u);
  state_->script = nullptr;
  auto p = open(options());
  EXPECT_EQ(p->stats().recovered, 20u);
  ASSERT_TRUE(p->flush(5s));
  EXPECT_EQ(stored_total(), 20u);
  EXPECT_EQ(stored_distinct(), 20u);
}

TEST_F(PipelineTest, CallWithoutIdToChargeIsDeadLetteredNotSent) {
  auto p = open(options(llmbill::ChargeBy::user_id));  // calls carry no user_id
  EXPECT_TRUE(p->submit(call(1)).empty());
  ASSERT_TRUE(p->flush(1s));
  EXPECT_EQ(stored_total(), 0u);
  EXPECT_EQ(p->stats().no_charge_id, 1u);
  EXPECT_EQ(p->dead_letters().count(), 1u);
}

TEST_F(PipelineTest, EventsOfAHeldCodeAreDeadLetteredNotSentAndTheOtherCodesAreSent) {
  auto o = options();
  o.events.codes = {"tokens", "typo"};
  auto p = open(o);
  p->hold_codes({{"typo", "code typo is not a billable metric in Lago"}});
  EXPECT_EQ(p->submit(call(1)), std::vector<std::string>{"call-1:tokens"});
  ASSERT_TRUE(p->flush(1s));
  EXPECT_EQ(stored_total(), 1u);
  auto dl = p->dead_letters().get("call-1:typo");
  ASSERT_TRUE(dl.has_value());
  EXPECT_EQ(dl->reason, "code typo is not a billable metric in Lago");
  EXPECT_EQ(json::parse(dl->event_json)["code"], "typo");
  EXPECT_EQ(p->stats().held, 1u);
  EXPECT_EQ(p->stats().dead_lettered, 1u);

  // A replay while the code is still held is dead-lettered again; once released it is sent.
  EXPECT_FALSE(p->submit_event(dl->event_json));
  EXPECT_EQ(p->stats().held, 2u);
  p->hold_codes({});
  EXPECT_TRUE(p->held_codes().empty());
  EXPECT_TRUE(p->submit_event(dl->event_json));
  ASSERT_TRUE(p->flush(1s));
  EXPECT_EQ(stored_total(), 2u);
}

// The subscription gate: nothing is sent past an event of an id not yet answered; an answer from
// another thread (the watcher) releases it; a held id's events become dead letters with the reason.
TEST_F(PipelineTest, SubscriptionGateWaitsForAnAnswerThenSendsOrHolds) {
  auto o = options();
  o.gate_subscriptions = true;
  auto p = open(o);
  auto other = call(2);
  other.end_user_id = "nobody";
  p->submit(call(1));
  p->submit(other);
  p->submit(call(3));
  EXPECT_FALSE(p->flush(100ms));
  EXPECT_EQ(stored_total(), 0u);
  EXPECT_EQ(p->unverified_subscriptions(), (std::map<std::string, std::int64_t>{{"cust", 1786000000001}}));
  std::thread watcher([&] {
    p->set_subscriptions({{"cust", ""}});
    while (p->unverified_subscriptions().count("nobody") == 0) std::this_thread::sleep_for(1ms);
    p->set_subscriptions({{"nobody", "no subscription"}});
  });
  ASSERT_TRUE(p->flush(2s));
  watcher.join();
  EXPECT_EQ(stored_total(), 2u);
  auto dl = p->dead_letters().get("call-2");
  ASSERT_TRUE(dl.has_value());
  EXPECT_EQ(dl->reason, "no subscription");
  EXPECT_EQ(p->held_subscriptions(), (std::map<std::string, std::string>{{"nobody", "no subscription"}}));
  EXPECT_EQ(p->stats().held, 1u);
  EXPECT_EQ(p->stats().pending, 0u);
}

TEST_F(PipelineTest, SplitsWhenLagoSaysTooManyEvents) {
  state_->script = [](int, const std::vector<const std::string*>& events) -> std::optional<HttpReply> {
    if (events.size() > 10) return HttpReply{422, R"({"status":422,"error_details":{"events":["too_many_events"]}})", {}, ""};
    return std::nullopt;
  };
  auto o = options();
  o.flush_interval = 50ms;
  auto p = open(o);
  for (int i = 0; i < 60; ++i) p->submit(call(i));
  ASSERT_TRUE(p->flush(5s));
  EXPECT_EQ(stored_total(), 60u);
}

TEST_F(PipelineTest, ConcurrentSubmitsAreAllDeliveredOnce) {
  auto p = open(options());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) p->submit(call(t * 1000 + i));
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(p->flush(10s));
  EXPECT_EQ(stored_total(), 2000u);
  EXPECT_EQ(stored_distinct(), 2000u);
}

// --- Durability (issue 13) ---

namespace {

// A spool write (or fsync) fault switched on and off by the test.
struct DiskFault {
  std::atomic<int> write{0};
  std::atomic<int> sync{0};
  std::function<int(llmbill::SpoolOp)> hook() {
    return [this](llmbill::SpoolOp op) { return op == llmbill::SpoolOp::write ? write.load() : sync.load(); };
  }
};

HttpReply lago_down(int, const std::vector<const std::string*>&) { return HttpReply{0, "", {}, "connection refused"}; }

// Polls `done` (the sender works on its own clock) for up to 5 s.
template <class F>
bool eventually(F done) {
  for (auto until = std::chrono::steady_clock::now() + 5s; std::chrono::steady_clock::now() < until;) {
    if (done()) return true;
    std::this_thread::sleep_for(2ms);
  }
  return done();
}

}  // namespace

TEST_F(PipelineTest, AnAppendThatFailsAfterTheCallIsHeldInMemoryUntilTheSpoolTakesIt) {
  DiskFault fault;
  auto o = options();
  o.spool.inject_fault = fault.hook();
  std::atomic<bool> up{false};
  state_->script = [&](int c, const auto& e) -> std::optional<HttpReply> {
    if (!up) return lago_down(c, e);
    return std::nullopt;
  };
  auto p = open(o);
  EXPECT_TRUE(p->can_accept());
  fault.write = ENOSPC;
  for (int i = 0; i < 5; ++i) EXPECT_EQ(p->submit(call(i)), std::vector<std::string>{"call-" + std::to_string(i)});
  auto s = p->stats();
  EXPECT_EQ(s.unspooled, 5u);
  EXPECT_GE(s.spool_failures, 5u);  // and the sender's retries meanwhile
  EXPECT_FALSE(s.accepting);
  EXPECT_FALSE(p->can_accept());  // nothing more is admitted while events wait in memory

  fault.write = 0;  // the disk has room again: the sender's next tick spools them
  ASSERT_TRUE(eventually([&] { return p->stats().unspooled == 0; }));
  EXPECT_TRUE(p->can_accept());
  EXPECT_EQ(stored_total(), 0u);
  EXPECT_FALSE(p->close(50ms));  // Lago is still down: they wait in the spool, not in memory
  p.reset();

  up = true;
  p = open(options());
  EXPECT_EQ(p->stats().recovered, 5u);
  ASSERT_TRUE(p->flush(5s));
  EXPECT_EQ(stored_total(), 5u);
  EXPECT_EQ(stored_distinct(), 5u);
}

TEST_F(PipelineTest, EventsTheSpoolCannotTakeAreSentStraightToLagoOnce) {
  DiskFault fault;
  fault.write = EIO;
  auto o = options();
  o.spool.inject_fault = fault.hook();
  auto p = open(o);
  for (int i = 0; i < 20; ++i) p->submit(call(i));
  ASSERT_TRUE(p->flush(5s));
  EXPECT_EQ(stored_total(), 20u);
  EXPECT_EQ(stored_distinct(), 20u);
  EXPECT_EQ(p->stats().unspooled, 0u);
  EXPECT_EQ(p->stats().delivered, 20u);
}

TEST_F(PipelineTest, AFullSpoolHoldsTheCallsAlreadyServedAndLagoGetsEachOnceWhenItReturns) {
  // The measured case: Lago down, the spool fills, calls admitted before it filled settle after.
  std::atomic<bool> up{false};
  state_->script = [&](int c, const auto& e) -> std::optional<HttpReply> {
    if (!up) return lago_down(c, e);
    return std::nullopt;
  };
  auto o = options();
  o.spool.max_bytes = 8 * 1024;
  o.spool.reserve_bytes = 1024;
  auto p = open(o);
  int n = 0;
  while (p->can_accept()) p->submit(call(n++));
  EXPECT_GT(n, 3);
  for (int i = 0; i < 10; ++i) p->submit(call(n++));  // admitted earlier, answered now: never thrown
  EXPECT_GT(p->stats().unspooled, 0u);
  EXPECT_FALSE(p->can_accept());
  up = true;
  ASSERT_TRUE(p->flush(10s));
  EXPECT_EQ(stored_total(), static_cast<std::size_t>(n));
  EXPECT_EQ(stored_distinct(), static_cast<std::size_t>(n));
  ASSERT_TRUE(eventually([&] { return p->can_accept(); }));  // delivered, acknowledged, room again
}

TEST_F(PipelineTest, TheInMemoryListIsBoundedAndOnlyThenSubmitThrows) {
  DiskFault fault;
  fault.write = ENOSPC;
  state_->script = lago_down;
  auto o = options();
  o.spool.inject_fault = fault.hook();
  o.max_unspooled = 3;
  auto p = open(o);
  for (int i = 0; i < 3; ++i) p->submit(call(i));
  EXPECT_THROW(p->submit(call(3)), llmbill::SpoolFullError);
  EXPECT_EQ(p->stats().unspooled, 3u);
  EXPECT_FALSE(p->close(10ms));
}

TEST_F(PipelineTest, CloseSpoolsWhatIsHeldInMemoryOrNamesItInTheWarnings) {
  DiskFault fault;
  fault.write = ENOSPC;
  state_->script = lago_down;
  auto o = options();
  o.spool.inject_fault = fault.hook();
  auto p = open(o);
  p->submit(call(1));
  p->submit(call(2));
  fault.sync = EIO;  // the final fsync fails too: close() must report it, not throw
  EXPECT_FALSE(p->close(30ms));
  std::string all;
  for (const auto& w : p->warnings()) all += w + "\n";
  EXPECT_NE(all.find("call-1"), std::string::npos) << all;
  EXPECT_NE(all.find("call-2"), std::string::npos) << all;
  EXPECT_NE(all.find("fsync"), std::string::npos) << all;
}

TEST_F(PipelineTest, ADeadLetterThatCannotBeWrittenNeitherEndsTheSenderNorLosesTheEvent) {
  state_->reject_ids = {"call-3"};
  auto o = options();
  o.dead_letter_file = dir_ / "letters" / "deadletters.jsonl";
  auto p = open(o);
  std::filesystem::create_directories(o.dead_letter_file);  // a directory where the file goes: EISDIR
  for (int i = 0; i < 5; ++i) p->submit(call(i));
  // The other four are delivered; call-3 waits for its letter, unacknowledged in the spool.
  ASSERT_TRUE(eventually([&] { return stored_total() == 4 && p->stats().pending == 1; }))
      << p->stats().last_error << " stored " << stored_total();
  EXPECT_GT(p->stats().spool_failures, 0u);
  EXPECT_EQ(p->stats().dead_lettered, 0u);
  EXPECT_NE(p->stats().last_error.find("dead letter not written"), std::string::npos);
  std::filesystem::remove(o.dead_letter_file);
  ASSERT_TRUE(p->flush(5s));
  EXPECT_EQ(p->stats().dead_lettered, 1u);
  EXPECT_EQ(p->dead_letters().count(), 1u);
  EXPECT_EQ(stored_total(), 4u);
}

TEST_F(PipelineTest, AFailingFsyncInTheSenderIsCountedAndDeliveryGoesOn) {
  DiskFault fault;
  fault.sync = EIO;
  auto o = options();
  o.spool.fsync = llmbill::FsyncPolicy::interval;
  o.spool.fsync_interval = 1ms;
  o.spool.inject_fault = fault.hook();
  auto p = open(o);
  for (int i = 0; i < 10; ++i) p->submit(call(i));
  ASSERT_TRUE(p->flush(5s));
  EXPECT_EQ(stored_distinct(), 10u);
  ASSERT_TRUE(eventually([&] { return p->stats().sender_errors > 0; }));  // the next fsync due fails
  EXPECT_NE(p->stats().last_error.find("fsync"), std::string::npos);
  fault.sync = 0;
}

TEST_F(PipelineTest, AnExceptionFromTheTransportIsCaughtCountedAndTheBatchResent) {
  state_->script = [](int c, const auto&) -> std::optional<HttpReply> {
    if (c == 0) throw std::runtime_error("transport bug");
    return std::nullopt;
  };
  auto p = open(options());
  for (int i = 0; i < 3; ++i) p->submit(call(i));
  ASSERT_TRUE(p->flush(5s));
  EXPECT_EQ(stored_distinct(), 3u);
  EXPECT_EQ(p->stats().sender_errors, 1u);
  EXPECT_NE(p->stats().last_error.find("transport bug"), std::string::npos);
}

TEST_F(PipelineTest, TheBatchLimitGrowsBackAfterA413) {
  state_->script = [](int c, const auto&) -> std::optional<HttpReply> {
    if (c == 0) return HttpReply{413, "Request Entity Too Large", {}, ""};
    return std::nullopt;
  };
  auto o = options();
  o.max_batch = 8;
  o.flush_interval = 1s;  // batches leave when full (or flushed): their sizes are the limit's
  auto p = open(o);
  int n = 0;
  for (int round = 0; round < 8; ++round) {
    for (int i = 0; i < 8; ++i) p->submit(call(n++));
    ASSERT_TRUE(p->flush(5s));
  }
  std::lock_guard lock(state_->mu);
  EXPECT_EQ(state_->batch_sizes.front(), 8u);
  EXPECT_EQ(state_->batch_sizes[1], 4u);          // halved after the 413
  EXPECT_EQ(state_->batch_sizes.back(), 8u);      // and back to max_batch after successes
  EXPECT_EQ(state_->stored.size(), static_cast<std::size_t>(n));
}
