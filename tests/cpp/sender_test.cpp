#include "llmbill/sender.hpp"

#include <gtest/gtest.h>

using llmbill::classify_reply;
using llmbill::HttpReply;
using llmbill::ReplyAction;
using V = std::vector<std::size_t>;

namespace {
HttpReply reply(long status, std::string body = "", std::map<std::string, std::string> headers = {}) {
  return HttpReply{status, std::move(body), std::move(headers), status == 0 ? "connection refused" : ""};
}
}  // namespace

TEST(ClassifyReply, OkDeliversAll) {
  auto o = classify_reply(reply(200, R"({"events":[]})"), 3);
  EXPECT_EQ(o.delivered, (V{0, 1, 2}));
  EXPECT_EQ(o.action, ReplyAction::done);
}

TEST(ClassifyReply, DuplicatesCountAsDeliveredAndTheRestIsResent) {
  auto o = classify_reply(
      reply(422, R"({"status":422,"error":"Unprocessable Entity","code":"validation_errors",
                     "error_details":{"0":{"transaction_id":["value_already_exist"]},"2":{"transaction_id":["value_already_exist"]}}})"),
      4);
  EXPECT_EQ(o.delivered, (V{0, 2}));
  EXPECT_EQ(o.duplicates, (V{0, 2}));
  EXPECT_EQ(o.retry, (V{1, 3}));
  EXPECT_TRUE(o.dead.empty());
  EXPECT_EQ(o.action, ReplyAction::done);
}

TEST(ClassifyReply, OtherPerIndexErrorsDeadLetterOnlyThoseEvents) {
  auto o = classify_reply(
      reply(422, R"({"status":422,"code":"validation_errors",
                     "error_details":{"1":{"timestamp":["invalid_format"]},"2":{"transaction_id":["value_already_exist"],"code":["value_is_mandatory"]}}})"),
      3);
  EXPECT_EQ(o.dead, (V{1, 2}));
  EXPECT_NE(o.dead_reasons.at(1).find("invalid_format"), std::string::npos);
  EXPECT_EQ(o.retry, (V{0}));
}

TEST(ClassifyReply, TooManyEventsSplits) {
  auto o = classify_reply(reply(422, R"({"status":422,"error_details":{"events":["too_many_events"]}})"), 100);
  EXPECT_EQ(o.action, ReplyAction::split);
  EXPECT_EQ(o.retry.size(), 100u);
}

TEST(ClassifyReply, RateLimitWaitsForTheReset) {
  auto o = classify_reply(reply(429, "", {{"x-ratelimit-reset", "2"}}), 2);
  EXPECT_EQ(o.action, ReplyAction::rate_limited);
  EXPECT_EQ(o.wait, std::chrono::milliseconds(2000));
  auto r = classify_reply(reply(429, "", {{"retry-after", "1.5"}}), 2);
  EXPECT_EQ(r.wait, std::chrono::milliseconds(1500));
  EXPECT_EQ(classify_reply(reply(429), 1).action, ReplyAction::backoff);
}

TEST(ClassifyReply, ServerAndNetworkErrorsRetry) {
  for (long s : {0L, 500L, 502L, 503L, 504L}) {
    auto o = classify_reply(reply(s), 2);
    EXPECT_EQ(o.action, ReplyAction::backoff) << s;
    EXPECT_EQ(o.retry, (V{0, 1}));
  }
}

TEST(ClassifyReply, AuthAndRouteErrorsKeepTheEvents) {
  for (long s : {401L, 403L, 404L}) {
    auto o = classify_reply(reply(s, R"({"status":401,"error":"Unauthorized"})"), 2);
    EXPECT_EQ(o.action, ReplyAction::config_error) << s;
    EXPECT_EQ(o.retry, (V{0, 1}));
    EXPECT_TRUE(o.dead.empty());
  }
}

TEST(ClassifyReply, BadRequestDeadLetters) {
  auto o = classify_reply(reply(400, R"({"status":400,"error":"BadRequest: param is missing"})"), 2);
  EXPECT_EQ(o.dead, (V{0, 1}));
}

TEST(Sender, BatchBodyAndUrl) {
  std::string a = R"({"transaction_id":"a"})", b = R"({"transaction_id":"b"})";
  EXPECT_EQ(llmbill::batch_body({&a, &b}), R"({"events":[{"transaction_id":"a"},{"transaction_id":"b"}]})");
  for (auto base : {"http://h:3000", "http://h:3000/", "http://h:3000/api/v1", "http://h:3000/api/v1/"}) {
    EXPECT_EQ(llmbill::lago_batch_url(base), "http://h:3000/api/v1/events/batch") << base;
  }
}

TEST(Sender, UrlPasswordsAreRedacted) {
  EXPECT_EQ(llmbill::redact_url_password("https://u:pw@h/api/v1/events/batch"), "https://u:***@h/api/v1/events/batch");
  EXPECT_EQ(llmbill::redact_url_password("https://u:p@w@h:3000"), "https://u:***@h:3000");
  EXPECT_EQ(llmbill::redact_url_password("https://u@h/x"), "https://u@h/x");
  EXPECT_EQ(llmbill::redact_url_password("http://h:3000/a@b"), "http://h:3000/a@b");  // '@' in the path
  EXPECT_EQ(llmbill::redact_url_password("no url"), "no url");
}

TEST(Sender, BackoffGrowsWithJitterAndCap) {
  using ms = std::chrono::milliseconds;
  EXPECT_EQ(llmbill::backoff_delay(1, ms(100), ms(1000), 0.999999).count(), 99);
  EXPECT_EQ(llmbill::backoff_delay(3, ms(100), ms(1000), 0.0).count(), 200);
  EXPECT_EQ(llmbill::backoff_delay(20, ms(100), ms(1000), 0.0).count(), 500);
}

TEST(ClassifyReply, A413OnASingleEventDeadLettersItInsteadOfResendingItForever) {
  auto o = classify_reply(reply(413, "Request Entity Too Large"), 1);
  EXPECT_EQ(o.dead, (V{0}));
  EXPECT_TRUE(o.retry.empty());
  EXPECT_NE(o.dead_reasons.at(0).find("413"), std::string::npos);
  EXPECT_EQ(classify_reply(reply(413), 2).action, ReplyAction::split);
}

TEST(ClassifyReply, TooManyEventsOnASingleEventBacksOffInsteadOfSplitting) {
  auto o = classify_reply(reply(422, R"({"status":422,"error_details":{"events":["too_many_events"]}})"), 1);
  EXPECT_EQ(o.retry, (V{0}));
  EXPECT_EQ(o.action, ReplyAction::backoff);
}

TEST(BatchLimit, HalvesOnASplitAndGrowsBackAfterSuccesses) {
  llmbill::BatchLimit limit(100);
  EXPECT_EQ(limit.get(), 100u);
  limit.on_split(100);
  EXPECT_EQ(limit.get(), 50u);
  limit.on_split(50);
  EXPECT_EQ(limit.get(), 25u);
  for (int i = 1; i < llmbill::BatchLimit::kGrowAfter; ++i) limit.on_success();
  EXPECT_EQ(limit.get(), 25u);
  limit.on_success();
  EXPECT_EQ(limit.get(), 50u);
  for (int i = 0; i < 10 * llmbill::BatchLimit::kGrowAfter; ++i) limit.on_success();
  EXPECT_EQ(limit.get(), 100u);  // never past max_batch
  limit.on_split(1);
  EXPECT_EQ(limit.get(), 1u);  // never below one
}
