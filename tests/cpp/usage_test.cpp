#include "llmbill/usage.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <exception>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "llmbill/errors.hpp"

using llmbill::SseUsageScanner;
using llmbill::Usage;
using llmbill::usage_from_json;
using llmbill::usage_from_response;
using llmbill::usage_from_sse;
using llmbill::UsageError;

namespace {

Usage make(std::int64_t prompt, std::int64_t completion, std::int64_t cached = 0,
           std::int64_t creation = 0, std::int64_t reasoning = 0) {
  Usage u;
  u.prompt_tokens = prompt;
  u.completion_tokens = completion;
  u.cached_tokens = cached;
  u.cache_creation_tokens = creation;
  u.reasoning_tokens = reasoning;
  return u;
}

// The message of the UsageError thrown by `body`, or a failure if it throws nothing or another type.
template <typename F>
std::string usage_error_of(F&& body) {
  try {
    body();
  } catch (const UsageError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected UsageError, got another exception: " << e.what();
    return {};
  }
  ADD_FAILURE() << "expected UsageError, nothing was thrown";
  return {};
}

const char* const kOpenAiChat = R"({
  "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o",
  "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
  "usage": {"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
            "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 128, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}
})";

const char* const kAnthropic = R"({
  "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4",
  "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
  "usage": {"input_tokens": 50, "cache_creation_input_tokens": 2000, "cache_read_input_tokens": 10000,
            "output_tokens": 400, "service_tier": "standard"}
})";

const char* const kResponses = R"({
  "id": "resp_1", "object": "response", "status": "completed",
  "usage": {"input_tokens": 328, "input_tokens_details": {"cached_tokens": 256},
            "output_tokens": 52, "output_tokens_details": {"reasoning_tokens": 32}, "total_tokens": 380}
})";

// OpenAI chat stream with stream_options.include_usage: usage is null in every chunk but the last.
const char* const kOpenAiStream =
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":"
    "{\"role\":\"assistant\",\"content\":\"\"}}],\"usage\":null}\n\n"
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":"
    "{\"content\":\"h\\u00e9llo \xe2\x82\xac\"}}],\"usage\":null}\n\n"
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},"
    "\"finish_reason\":\"stop\"}],\"usage\":null}\n\n"
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":"
    "120,\"completion_tokens\":40,\"total_tokens\":160,\"prompt_tokens_details\":{\"cached_tokens\":64},"
    "\"completion_tokens_details\":{\"reasoning_tokens\":8}}}\n\n"
    "data: [DONE]\n\n";

const char* const kAnthropicStream =
    "event: message_start\n"
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":"
    "\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4\",\"usage\":{\"input_tokens\":25,"
    "\"cache_creation_input_tokens\":100,\"cache_read_input_tokens\":1000,\"output_tokens\":1}}}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
    "event: ping\n"
    "data: {\"type\": \"ping\"}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n"
    "event: message_delta\n"
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":null},\"usage\":{\"output_tokens\":7}}\n\n"
    "event: message_delta\n"
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\n\n"
    "event: message_stop\n"
    "data: {\"type\":\"message_stop\"}\n\n";

std::string with_crlf(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\n') out += '\r';
    out += c;
  }
  return out;
}

}  // namespace

// ---- whole responses ----------------------------------------------------------------------------

TEST(UsageFromResponse, OpenAiChatKeepsCachedAndReasoningAsParts) {
  Usage u = usage_from_response(kOpenAiChat);
  EXPECT_EQ(u, make(2006, 300, 1920, 0, 128));  // parts, not additions: prompt stays 2006
  EXPECT_EQ(u.total_tokens(), 2306);
  EXPECT_FALSE(u.estimated);
}

TEST(UsageFromResponse, OpenAiNullOrMissingDetailsCountZero) {
  EXPECT_EQ(usage_from_response(R"({"usage":{"prompt_tokens":10,"completion_tokens":3,"total_tokens":13,
      "prompt_tokens_details":null,"completion_tokens_details":null}})"),
            make(10, 3));
  EXPECT_EQ(usage_from_response(R"({"usage":{"prompt_tokens":10,"completion_tokens":3,
      "prompt_tokens_details":{"cached_tokens":null}}})"),
            make(10, 3));
}

TEST(UsageFromResponse, Embeddings) {
  Usage u = usage_from_response(R"({"object":"list","data":[{"object":"embedding","index":0,
      "embedding":[0.1,0.2]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}})");
  EXPECT_EQ(u, make(8, 0));
}

TEST(UsageFromResponse, AnthropicPromptIsInputPlusCacheReadPlusCacheWrite) {
  Usage u = usage_from_response(kAnthropic);
  EXPECT_EQ(u.prompt_tokens, 50 + 10000 + 2000);
  EXPECT_EQ(u.cached_tokens, 10000);
  EXPECT_EQ(u.cache_creation_tokens, 2000);
  EXPECT_EQ(u.completion_tokens, 400);
  EXPECT_EQ(u.reasoning_tokens, 0);
}

TEST(UsageFromResponse, AnthropicWithoutCacheFieldsOrWithNullOnes) {
  EXPECT_EQ(usage_from_response(R"({"usage":{"input_tokens":12,"output_tokens":6}})"), make(12, 6));
  EXPECT_EQ(usage_from_response(R"({"usage":{"input_tokens":12,"output_tokens":6,
      "cache_read_input_tokens":null,"cache_creation_input_tokens":4}})"),
            make(16, 6, 0, 4));
}

// Anthropic splits cache writes by lifetime; cache_creation_input_tokens is their total.
const char* const kAnthropicOneHour = R"({
  "id": "msg_2", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
  "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
  "usage": {"input_tokens": 100, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 3000,
            "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
            "output_tokens": 50}
})";

TEST(UsageFromResponse, AnthropicOneHourWritesArePartOfCacheWrites) {
  Usage u = usage_from_response(kAnthropicOneHour);
  EXPECT_EQ(u.prompt_tokens, 100 + 1000 + 3000);  // the 1h writes are not added a second time
  EXPECT_EQ(u.cached_tokens, 1000);
  EXPECT_EQ(u.cache_creation_tokens, 3000);
  EXPECT_EQ(u.cache_creation_1h_tokens, 2000);
  EXPECT_EQ(u.completion_tokens, 50);
}

TEST(UsageFromResponse, AnthropicCacheBreakdownAloneIsSummedAndMarksAnthropic) {
  // No cache_creation_input_tokens, only the breakdown: the breakdown is the total.
  Usage u = usage_from_response(R"({"usage":{"input_tokens":10,"output_tokens":2,
      "cache_creation":{"ephemeral_5m_input_tokens":30,"ephemeral_1h_input_tokens":40}}})");
  EXPECT_EQ(u.prompt_tokens, 80);
  EXPECT_EQ(u.cache_creation_tokens, 70);
  EXPECT_EQ(u.cache_creation_1h_tokens, 40);
  // A null breakdown, or one with null parts, counts zero.
  EXPECT_EQ(usage_from_response(R"({"usage":{"input_tokens":10,"output_tokens":2,"cache_creation":null,
      "cache_creation_input_tokens":5}})"),
            make(15, 2, 0, 5));
  EXPECT_EQ(usage_from_response(R"({"usage":{"input_tokens":10,"output_tokens":2,"cache_creation_input_tokens":5,
      "cache_creation":{"ephemeral_5m_input_tokens":null,"ephemeral_1h_input_tokens":null}}})"),
            make(15, 2, 0, 5));
}

TEST(UsageFromResponse, AnthropicCacheBreakdownMustFitItsTotal) {
  std::string msg = usage_error_of([] {
    usage_from_response(R"({"usage":{"input_tokens":10,"output_tokens":2,"cache_creation_input_tokens":50,
        "cache_creation":{"ephemeral_5m_input_tokens":30,"ephemeral_1h_input_tokens":40}}})");
  });
  EXPECT_NE(msg.find("exceed cache_creation_input_tokens (50)"), std::string::npos) << msg;
  msg = usage_error_of([] {
    usage_from_response(R"({"usage":{"input_tokens":1,"output_tokens":1,"cache_creation":
        {"ephemeral_1h_input_tokens":-3}}})");
  });
  EXPECT_NE(msg.find("usage.cache_creation.ephemeral_1h_input_tokens"), std::string::npos) << msg;
  EXPECT_THROW(usage_from_response(R"({"usage":{"input_tokens":1,"output_tokens":1,"cache_creation":7}})"),
               UsageError);
}

TEST(UsageFromResponse, AnthropicThinkingTokensAreReasoningAndNotAmbiguous) {
  // output_tokens_details is also a Responses API name; with thinking_tokens it is Anthropic's, and
  // a reply that also has cache counts must not be rejected as ambiguous (it would go unbilled).
  Usage u = usage_from_response(R"({"usage":{"input_tokens":10,"cache_read_input_tokens":20,"output_tokens":30,
      "output_tokens_details":{"thinking_tokens":12}}})");
  EXPECT_EQ(u, make(30, 30, 20, 0, 12));
  EXPECT_THROW(usage_from_response(R"({"usage":{"input_tokens":10,"output_tokens":3,
      "output_tokens_details":{"thinking_tokens":4}}})"),
               UsageError);  // a part larger than its total
  EXPECT_NE(usage_error_of([] {
              usage_from_response(R"({"usage":{"input_tokens":1,"output_tokens":1,"cache_read_input_tokens":1,
                  "output_tokens_details":{"reasoning_tokens":0}}})");
            }).find("ambiguous"),
            std::string::npos);
}

TEST(UsageFromResponse, ResponsesApiDetailsAreParts) {
  EXPECT_EQ(usage_from_response(kResponses), make(328, 52, 256, 0, 32));
}

TEST(UsageFromJson, AcceptsABareUsageObjectAndIntegralFloats) {
  EXPECT_EQ(usage_from_json(nlohmann::json::parse(R"({"prompt_tokens":12.0,"completion_tokens":1e1})")),
            make(12, 10));
  EXPECT_EQ(usage_from_json(nlohmann::json::parse(R"({"input_tokens":5,"output_tokens":2})")), make(5, 2));
}

TEST(UsageFromJson, RejectsAmbiguousShapes) {
  EXPECT_NE(usage_error_of([] {
              usage_from_response(R"({"usage":{"prompt_tokens":1,"input_tokens":1}})");
            }).find("ambiguous"),
            std::string::npos);
  EXPECT_NE(usage_error_of([] {
              usage_from_response(R"({"usage":{"input_tokens":1,"output_tokens":1,
                  "input_tokens_details":{"cached_tokens":0},"cache_read_input_tokens":1}})");
            }).find("ambiguous"),
            std::string::npos);
}

// ---- errors -------------------------------------------------------------------------------------

TEST(UsageErrors, MalformedJson) {
  EXPECT_THROW(usage_from_response("{\"usage\": {\"prompt_tokens\": 1"), UsageError);
  EXPECT_THROW(usage_from_response(""), UsageError);
  EXPECT_THROW(usage_from_response("not json at all \xff\xfe"), UsageError);
  EXPECT_THROW(usage_from_response("{\"usage\": 1} trailing"), UsageError);
}

TEST(UsageErrors, MissingOrNullUsage) {
  EXPECT_THROW(usage_from_response(R"({"id":"x","choices":[]})"), UsageError);
  EXPECT_THROW(usage_from_response(R"({"usage":null})"), UsageError);
  EXPECT_THROW(usage_from_response(R"({"usage":{}})"), UsageError);
  EXPECT_THROW(usage_from_response(R"({"usage":[1,2]})"), UsageError);
  EXPECT_THROW(usage_from_response(R"([1,2,3])"), UsageError);
  EXPECT_THROW(usage_from_response(R"({"usage":{"completion_tokens":3}})"), UsageError);  // no prompt
}

TEST(UsageErrors, NegativeCountNamesTheField) {
  std::string msg = usage_error_of([] {
    usage_from_response(R"({"usage":{"prompt_tokens":10,"completion_tokens":-1}})");
  });
  EXPECT_NE(msg.find("usage.completion_tokens"), std::string::npos) << msg;
}

TEST(UsageErrors, StringCountNamesTheField) {
  std::string msg = usage_error_of([] {
    usage_from_response(R"({"usage":{"prompt_tokens":10,"prompt_tokens_details":{"cached_tokens":"5"}}})");
  });
  EXPECT_NE(msg.find("usage.prompt_tokens_details.cached_tokens"), std::string::npos) << msg;
}

TEST(UsageErrors, FractionalBoolAndOutOfRangeCounts) {
  EXPECT_THROW(usage_from_response(R"({"usage":{"prompt_tokens":1.5}})"), UsageError);
  EXPECT_THROW(usage_from_response(R"({"usage":{"prompt_tokens":true}})"), UsageError);
  EXPECT_THROW(usage_from_response(R"({"usage":{"prompt_tokens":[1]}})"), UsageError);
  EXPECT_THROW(usage_from_response(R"({"usage":{"prompt_tokens":9223372036854775808}})"), UsageError);
  EXPECT_THROW(usage_from_response(R"({"usage":{"prompt_tokens":1e30}})"), UsageError);
  EXPECT_THROW(usage_from_response(R"({"usage":{"prompt_tokens":-0.5}})"), UsageError);
  EXPECT_THROW(usage_from_response(R"({"usage":{"prompt_tokens":1,"prompt_tokens_details":5}})"), UsageError);
  // Anthropic parts that overflow when added up.
  EXPECT_THROW(usage_from_response(R"({"usage":{"input_tokens":9223372036854775807,
      "cache_read_input_tokens":1}})"),
               UsageError);
}

TEST(UsageErrors, PartsLargerThanTotals) {
  EXPECT_THROW(usage_from_response(R"({"usage":{"prompt_tokens":10,"completion_tokens":1,
      "prompt_tokens_details":{"cached_tokens":11}}})"),
               UsageError);
  EXPECT_THROW(usage_from_response(R"({"usage":{"prompt_tokens":10,"completion_tokens":1,
      "completion_tokens_details":{"reasoning_tokens":2}}})"),
               UsageError);
  EXPECT_THROW(usage_from_response(R"({"usage":{"input_tokens":10,"output_tokens":1,
      "output_tokens_details":{"reasoning_tokens":2}}})"),
               UsageError);
}

TEST(UsageErrors, DeeplyNestedInputDoesNotCrash) {
  std::string deep(200000, '[');
  EXPECT_THROW(usage_from_response(deep), UsageError);
  std::string nested = "{\"usage\":{\"prompt_tokens\":" + std::string(100000, '[') + "1" +
                       std::string(100000, ']') + "}}";
  EXPECT_THROW(usage_from_response(nested), UsageError);
}

TEST(UsageValidate, Invariants) {
  EXPECT_NO_THROW(make(10, 5, 4, 6, 5).validate());
  EXPECT_THROW(make(10, 5, 5, 6, 0).validate(), UsageError);  // cached + creation > prompt
  EXPECT_THROW(make(10, 5, 0, 0, 6).validate(), UsageError);
  EXPECT_THROW(make(-1, 0).validate(), UsageError);
  EXPECT_THROW(make(0, -1).validate(), UsageError);
  EXPECT_THROW(make(1, 0, -1).validate(), UsageError);
  constexpr auto kMax = std::numeric_limits<std::int64_t>::max();
  EXPECT_THROW(make(kMax, 0, kMax, kMax).validate(), UsageError);  // no overflow in the check
  EXPECT_THROW(make(kMax, 1).validate(), UsageError);              // total_tokens would overflow
  EXPECT_NO_THROW(make(kMax, 0, kMax).validate());
}

TEST(UsageValidate, OneHourWritesArePartOfCacheWrites) {
  Usage u = make(10, 0, 0, 6);
  u.cache_creation_1h_tokens = 6;
  EXPECT_NO_THROW(u.validate());
  u.cache_creation_1h_tokens = 7;
  EXPECT_NE(usage_error_of([&] { u.validate(); }).find("cache_creation_1h_tokens (7)"), std::string::npos);
  u.cache_creation_1h_tokens = -1;
  EXPECT_THROW(u.validate(), UsageError);
}

// ---- server-sent events -------------------------------------------------------------------------

TEST(UsageFromSse, OpenAiFinalUsageChunk) {
  EXPECT_EQ(usage_from_sse(kOpenAiStream), make(120, 40, 64, 0, 8));
  EXPECT_EQ(usage_from_sse(with_crlf(kOpenAiStream)), make(120, 40, 64, 0, 8));
}

TEST(UsageFromSse, LastChunkWithUsageWins) {
  // Servers that report cumulative usage in every chunk: the last non-null one is the total.
  std::string stream =
      "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1}}\n\n"
      "data: {\"choices\":[{\"delta\":{\"content\":\"b\"}}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\n"
      "data: {\"choices\":[{\"delta\":{}}],\"usage\":null}\n\n"
      "data: [DONE]";  // unterminated last line
  EXPECT_EQ(usage_from_sse(stream), make(5, 2));
}

TEST(UsageFromSse, AnthropicStartPlusLastDelta) {
  Usage u = usage_from_sse(kAnthropicStream);
  EXPECT_EQ(u, make(25 + 1000 + 100, 15, 1000, 100));
  EXPECT_EQ(usage_from_sse(with_crlf(kAnthropicStream)), u);
}

TEST(UsageFromSse, AnthropicDeltaMayUpdateInputCounts) {
  std::string stream =
      "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n"
      "data: {\"type\":\"message_delta\",\"usage\":{\"input_tokens\":12,\"cache_read_input_tokens\":3,"
      "\"output_tokens\":9}}\n";
  EXPECT_EQ(usage_from_sse(stream), make(15, 9, 3));
  EXPECT_THROW(usage_from_sse("data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":9}}\n"),
               UsageError);  // input tokens unknown: never bill as zero
}

TEST(UsageFromSse, AnthropicOneHourWritesMatchTheUnstreamedReply) {
  // The same call streamed: message_start carries the cache counts and their breakdown, the final
  // message_delta the cumulative counts without the breakdown (as the API sends them).
  std::string stream =
      "event: message_start\n"
      "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_2\",\"usage\":{\"input_tokens\":100,"
      "\"cache_read_input_tokens\":1000,\"cache_creation_input_tokens\":3000,\"cache_creation\":"
      "{\"ephemeral_5m_input_tokens\":1000,\"ephemeral_1h_input_tokens\":2000},\"output_tokens\":1}}}\n\n"
      "event: message_delta\n"
      "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"input_tokens\":100,"
      "\"cache_read_input_tokens\":1000,\"cache_creation_input_tokens\":3000,\"output_tokens\":50}}\n\n"
      "event: message_stop\n"
      "data: {\"type\":\"message_stop\"}\n\n";
  Usage streamed = usage_from_sse(stream);
  EXPECT_EQ(streamed, usage_from_response(kAnthropicOneHour));
  EXPECT_EQ(streamed.cache_creation_1h_tokens, 2000);
}

TEST(UsageFromSse, AnthropicDeltaMayUpdateTheBreakdownButNotBreakIt) {
  std::string start =
      "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":10,\"cache_creation_input_tokens\":"
      "40,\"cache_creation\":{\"ephemeral_5m_input_tokens\":0,\"ephemeral_1h_input_tokens\":40},\"output_tokens\":1}}}\n";
  Usage u = usage_from_sse(start + "data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":5,"
                                   "\"output_tokens_details\":{\"thinking_tokens\":2}}}\n");
  EXPECT_EQ(u.prompt_tokens, 50);
  EXPECT_EQ(u.cache_creation_1h_tokens, 40);
  EXPECT_EQ(u.reasoning_tokens, 2);
  // A later total smaller than the breakdown it kept is inconsistent: an error, and the scanner keeps
  // the last good usage.
  SseUsageScanner scanner;
  scanner.feed(start);
  EXPECT_THROW(scanner.feed("data: {\"type\":\"message_delta\",\"usage\":{\"cache_creation_input_tokens\":30,"
                            "\"output_tokens\":5}}\n"),
               UsageError);
  ASSERT_TRUE(scanner.usage().has_value());
  EXPECT_EQ(scanner.usage()->cache_creation_tokens, 40);
  scanner.feed("data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":6}}\n");
  EXPECT_EQ(scanner.usage()->completion_tokens, 6);
  EXPECT_EQ(scanner.usage()->cache_creation_1h_tokens, 40);
}

TEST(UsageFromSse, ResponsesApiCompletedEvent) {
  std::string stream =
      "event: response.created\n"
      "data: {\"type\":\"response.created\",\"response\":{\"id\":\"r\",\"usage\":null}}\n\n"
      "event: response.output_text.delta\n"
      "data: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n"
      "event: response.completed\n"
      "data: {\"type\":\"response.completed\",\"response\":{\"id\":\"r\",\"usage\":{\"input_tokens\":30,"
      "\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":9,"
      "\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":39}}}\n\n";
  EXPECT_EQ(usage_from_sse(stream), make(30, 9));
}

TEST(UsageFromSse, StreamWithoutUsageThrows) {
  std::string stream =
      "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"
      "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\n"
      "data: [DONE]\n\n";
  EXPECT_THROW(usage_from_sse(stream), UsageError);
  EXPECT_THROW(usage_from_sse(""), UsageError);
  EXPECT_THROW(usage_from_sse(": keep-alive\n\n"), UsageError);
}

TEST(UsageFromSse, BadDataLinesThrow) {
  // Only lines that could carry usage are parsed (usage.hpp), so the malformed line names "usage".
  EXPECT_NE(usage_error_of([] { usage_from_sse("data: {\"usage\": {not json\n\n"); }).find("not JSON"),
            std::string::npos);
  EXPECT_THROW(usage_from_sse("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":\"7\"}}\n"), UsageError);
}

TEST(SseUsageScanner, ByteByByteMatchesWholeFeed) {
  for (const std::string& stream : {std::string(kOpenAiStream), with_crlf(kOpenAiStream),
                                   std::string(kAnthropicStream), with_crlf(kAnthropicStream)}) {
    SseUsageScanner whole;
    whole.feed(stream);
    SseUsageScanner bytewise;
    for (char c : stream) bytewise.feed(std::string_view(&c, 1));  // splits mid-line and mid-UTF-8
    ASSERT_TRUE(whole.usage().has_value());
    EXPECT_EQ(bytewise.usage(), whole.usage());
    EXPECT_EQ(bytewise.last_event_was_usage_only(), whole.last_event_was_usage_only());
  }
}

TEST(SseUsageScanner, RandomSplitsMatchWholeFeed) {
  std::mt19937 rng(7);
  const std::string stream = std::string(kOpenAiStream) + std::string(kAnthropicStream);
  SseUsageScanner whole;
  whole.feed(stream);
  for (int round = 0; round < 200; ++round) {
    SseUsageScanner split;
    std::size_t pos = 0;
    while (pos < stream.size()) {
      std::size_t len = std::uniform_int_distribution<std::size_t>(0, 40)(rng);
      split.feed(std::string_view(stream).substr(pos, len));
      pos += len;
    }
    ASSERT_EQ(split.usage(), whole.usage());
  }
}

TEST(SseUsageScanner, LastEventWasUsageOnly) {
  SseUsageScanner s;
  EXPECT_FALSE(s.last_event_was_usage_only());
  s.feed("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\n");
  EXPECT_FALSE(s.last_event_was_usage_only());
  EXPECT_FALSE(s.usage().has_value());
  s.feed("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}");
  EXPECT_FALSE(s.last_event_was_usage_only());  // the line is not complete yet
  EXPECT_FALSE(s.usage().has_value());
  s.feed("\r");
  EXPECT_FALSE(s.last_event_was_usage_only());
  s.feed("\n");
  EXPECT_TRUE(s.last_event_was_usage_only());
  EXPECT_EQ(s.usage(), make(3, 2));
  s.feed("\r\n");  // a blank line ends the event but is no new data event
  EXPECT_TRUE(s.last_event_was_usage_only());
  s.feed("data: [DONE]\n\n");
  EXPECT_FALSE(s.last_event_was_usage_only());
  EXPECT_EQ(s.usage(), make(3, 2));

  // Usage carried next to choices is not a usage-only chunk.
  SseUsageScanner t;
  t.feed("data: {\"choices\":[{\"delta\":{}}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n");
  EXPECT_FALSE(t.last_event_was_usage_only());
  EXPECT_TRUE(t.usage().has_value());

  // Anthropic events are never OpenAI usage-only chunks.
  SseUsageScanner a;
  a.feed(kAnthropicStream);
  EXPECT_FALSE(a.last_event_was_usage_only());
}

TEST(SseUsageScanner, AcceptsDataWithoutSpace) {
  SseUsageScanner s;
  s.feed("data:{\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n");
  EXPECT_EQ(s.usage(), make(1, 1));
}

TEST(SseUsageScanner, BadLineThrowsOnceAndScanningContinues) {
  SseUsageScanner s;
  EXPECT_THROW(s.feed("data: {\"usage\":{broken\n"
                      "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":1}}\n"),
               UsageError);
  EXPECT_EQ(s.usage(), make(4, 1));  // the line after the bad one was still read
  EXPECT_TRUE(s.last_event_was_usage_only());
  EXPECT_NO_THROW(s.feed("data: [DONE]\n"));
}

// ---- the pre-check that spares the parse of lines without usage -----------------------------------
// A malformed line proves whether a line was parsed: parsed, it throws; skipped, it cannot.

TEST(SsePrecheck, LinesThatCannotCarryUsageAreNotParsed) {
  SseUsageScanner s;
  EXPECT_NO_THROW(s.feed("data: {broken\n"));
  EXPECT_NO_THROW(s.feed("data: not json \xff\xfe\n"));
  EXPECT_NO_THROW(s.feed("data: {\"choices\":[{\"delta\":{}}],\"usage\":null, broken\n"));
  EXPECT_NO_THROW(s.feed("data: {\"choices\":[{\"delta\":{}}],\"usage\" \t:\t null broken\n"));
  EXPECT_NO_THROW(s.feed("data: {\"usage\":null,\"usage\" : null, broken\n"));
  EXPECT_FALSE(s.usage().has_value());
  // The same lines with a usage that is not null are parsed, and so refused.
  EXPECT_THROW(s.feed("data: {\"choices\":[{\"delta\":{}}],\"usage\" \t:\t {broken\n"), UsageError);
  EXPECT_THROW(s.feed("data: {\"usage\":null,\"usage\" : 1, broken\n"), UsageError);
  EXPECT_THROW(s.feed("data: {\"usage\" broken\n"), UsageError);  // no colon: unsure, so parsed
  EXPECT_THROW(s.feed("data: {\"usage\":nul\n"), UsageError);     // not the literal null
}

TEST(SsePrecheck, UsageWithWhitespaceAroundTheColonIsRead) {
  SseUsageScanner s;
  s.feed("data: {\"choices\":[] , \"usage\"\t :\r {\"prompt_tokens\":3,\"completion_tokens\":2}}\n");
  EXPECT_EQ(s.usage(), make(3, 2));
  EXPECT_TRUE(s.last_event_was_usage_only());
}

TEST(SsePrecheck, EveryOccurrenceOfUsageCounts) {
  // A null usage before the real one must not hide it (Responses API: response.usage is the one).
  EXPECT_EQ(usage_from_sse("data: {\"type\":\"response.completed\",\"usage\":null,\"response\":{\"usage\":"
                           "{\"input_tokens\":30,\"input_tokens_details\":{\"cached_tokens\":0},"
                           "\"output_tokens\":9}}}\n"),
            make(30, 9));
}

TEST(SsePrecheck, UsageSplitAcrossFeeds) {
  const std::string line =
      "data: {\"choices\":[],\"usage\" : {\"prompt_tokens\":3,\"completion_tokens\":2}}\n";
  for (std::size_t cut = 1; cut < line.size(); ++cut) {  // includes cuts inside "usage" and ": {"
    SseUsageScanner s;
    s.feed(std::string_view(line).substr(0, cut));
    EXPECT_FALSE(s.usage().has_value());
    s.feed(std::string_view(line).substr(cut));
    EXPECT_EQ(s.usage(), make(3, 2)) << "cut at " << cut;
  }
  // A null split the same way is still skipped: the check runs on the whole line.
  SseUsageScanner n;
  EXPECT_NO_THROW(n.feed("data: {\"usage\": nu"));
  EXPECT_NO_THROW(n.feed("ll broken\n"));
}

TEST(SsePrecheck, ContentQuotingUsageIsHandled) {
  // Model text that quotes the key: on the wire it is \"usage\", which never matches "usage".
  SseUsageScanner s;
  EXPECT_NO_THROW(s.feed("data: {\"choices\":[{\"delta\":{\"content\":\"set \\\"usage\\\": {\\\"prompt_tokens\\\": "
                         "9}\"}}],\"usage\":null}\n"));
  EXPECT_FALSE(s.usage().has_value());
  // Quoted text next to a real usage: the usage is read, not the text.
  s.feed("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":1},"
         "\"note\":\"\\\"usage\\\":null\"}\n");
  EXPECT_EQ(s.usage(), make(4, 1));
  // A string that ends in the text usage ("x\"usage") is a key whose value is null: nothing changes.
  EXPECT_NO_THROW(s.feed("data: {\"x\\\"usage\":null,\"choices\":[{\"delta\":{}}]}\n"));
  EXPECT_EQ(s.usage(), make(4, 1));
  // The bare word as content is not a key; such a line is parsed (the check is unsure) and harmless.
  EXPECT_NO_THROW(s.feed("data: {\"choices\":[{\"delta\":{\"content\":\"usage\"}}],\"usage\":null}\n"));
  EXPECT_EQ(s.usage(), make(4, 1));
}

TEST(SsePrecheck, EscapedKeysAreStillRead) {
  // nlohmann decodes \u escapes in keys, so these ARE usage and message_start: never skipped.
  EXPECT_EQ(usage_from_sse("data: {\"choices\":[],\"\\u0075sage\":{\"prompt_tokens\":6,\"completion_tokens\":1}}\n"),
            make(6, 1));
  EXPECT_EQ(usage_from_sse("data: {\"choices\":[],\"usag\\u0065\":{\"prompt_tokens\":6,\"completion_tokens\":1}}\n"),
            make(6, 1));
  SseUsageScanner s;
  EXPECT_THROW(s.feed("data: {\"type\":\"message\\u005fstart\",\"message\":{\"id\":\"m\"}}\n"), UsageError);
  // The escapes encoders do emit (non-ASCII, control characters, Go's \u003c) keep the cheap path.
  EXPECT_NO_THROW(s.feed("data: {\"choices\":[{\"delta\":{\"content\":\"\\u00e9\\u000a\\u003c\"}}]} broken\n"));
}

TEST(SsePrecheck, MessageStartWithoutUsageStillThrows) {
  for (const char* line : {"data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"content\":[]}}\n",
                           "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":null}}\n",
                           "data: {\"type\" : \"message_start\", \"message\" : {}}\n"}) {
    SseUsageScanner s;
    EXPECT_NE(usage_error_of([&] { s.feed(line); }).find("has no message.usage"), std::string::npos) << line;
  }
}

TEST(SsePrecheck, SkippedLineResetsUsageOnly) {
  const std::string usage_only = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n";
  for (const char* skipped : {"data: {\"choices\":[{\"delta\":{\"content\":\"late\"}}],\"usage\":null}\n",
                              "data: {\"type\":\"content_block_delta\"}\n", "data: {broken\n", "data:\n"}) {
    SseUsageScanner s;
    s.feed(usage_only);
    ASSERT_TRUE(s.last_event_was_usage_only());
    EXPECT_NO_THROW(s.feed(skipped));
    EXPECT_FALSE(s.last_event_was_usage_only()) << skipped;
    EXPECT_EQ(s.usage(), make(3, 2));
  }
}

TEST(SseUsageScanner, LineOver16MiBThrowsAndIsSkipped) {
  SseUsageScanner s;
  const std::string chunk(1 << 20, 'x');
  std::string error;
  s.feed("data: ");
  for (int i = 0; i < 17 && error.empty(); ++i) {
    try {
      s.feed(chunk);
    } catch (const UsageError& e) {
      error = e.what();
    }
  }
  EXPECT_NE(error.find("16 MiB"), std::string::npos);
  // The rest of the long line is dropped without buffering; the next line is read normally.
  for (int i = 0; i < 4; ++i) EXPECT_NO_THROW(s.feed(chunk));
  EXPECT_NO_THROW(s.feed("\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":0}}\n"));
  EXPECT_EQ(s.usage(), make(2, 0));

  // A complete over-long line in one piece is refused too.
  EXPECT_THROW(usage_from_sse("data: " + std::string((16 << 20) + 1, 'y') + "\n"), UsageError);
}

// ---- hostile input ------------------------------------------------------------------------------

TEST(UsageFuzz, RandomBytesAndTruncationsOnlyThrowUsageError) {
  const std::vector<std::string> seeds = {kOpenAiChat, kAnthropic, kResponses, kOpenAiStream,
                                          kAnthropicStream};
  std::mt19937 rng(20261125);
  auto pick = [&](std::size_t n) { return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng); };
  const std::string alphabet = "{}[]\":,0123456789.-e \n\rdata:[DONE]usage_tokens\xff\xc3";
  int parsed = 0, refused = 0;
  for (int round = 0; round < 4000; ++round) {
    std::string input = seeds[pick(seeds.size())];
    switch (round % 4) {
      case 0:  // truncate
        input.resize(pick(input.size() + 1));
        break;
      case 1:  // overwrite bytes with anything
        for (int k = 0; k < 1 + static_cast<int>(pick(8)); ++k) {
          input[pick(input.size())] = static_cast<char>(pick(256));
        }
        break;
      case 2:  // splice in syntax-looking bytes
        for (int k = 0; k < 1 + static_cast<int>(pick(8)); ++k) {
          input.insert(pick(input.size() + 1), 1, alphabet[pick(alphabet.size())]);
        }
        break;
      default: {  // pure noise
        input.assign(pick(200), '\0');
        for (char& c : input) c = static_cast<char>(pick(256));
      }
    }
    auto only_usage_errors = [&](auto&& body) {
      try {
        body();
        ++parsed;
      } catch (const UsageError&) {
        ++refused;
      } catch (const std::exception& e) {
        FAIL() << "non-UsageError exception " << e.what() << " on input: " << input;
      }
    };
    only_usage_errors([&] { usage_from_response(input); });
    only_usage_errors([&] { usage_from_sse(input); });
    SseUsageScanner scanner;
    std::size_t pos = 0;
    while (pos < input.size()) {
      std::size_t len = 1 + pick(16);
      only_usage_errors([&] { scanner.feed(std::string_view(input).substr(pos, len)); });
      pos += len;
    }
    if (scanner.usage()) EXPECT_NO_THROW(scanner.usage()->validate());
  }
  EXPECT_GT(parsed, 0);
  EXPECT_GT(refused, 0);
}
