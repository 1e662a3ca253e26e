#include "llmbill/sse_relay.hpp"

#include <gtest/gtest.h>

#include <string>

using llmbill::sse_event_end;
using llmbill::SseEventRelay;

namespace {

const std::string kContent =
    R"(data: {"id":"c1","model":"up","choices":[{"delta":{"content":"hi"}}],"usage":null})" "\n\n";
const std::string kUsage =
    R"(data: {"id":"c1","model":"up","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}})"
    "\n\n";
const std::string kDone = "data: [DONE]\n\n";

std::string renamed(std::string event) {
  for (std::size_t at; (at = event.find(R"("model":"up")")) != std::string::npos;) {
    event.replace(at, 12, R"("model":"asked")");
  }
  return event;
}

}  // namespace

TEST(SseEventEnd, FindsTheFirstBlankLineOfEitherKind) {
  EXPECT_EQ(sse_event_end("data: 1\n\ndata: 2"), 9u);
  EXPECT_EQ(sse_event_end("data: 1\r\n\r\ndata: 2\n\n"), 11u);
  EXPECT_EQ(sse_event_end("data: 1\n\ndata: 2\r\n\r\n"), 9u);
  EXPECT_EQ(sse_event_end("data: 1\r\n"), std::string::npos);
  EXPECT_EQ(sse_event_end("\r\n\r\n\n"), 4u);      // the CRLF one starts first, the LF one inside it
  EXPECT_EQ(sse_event_end("a\r\n\n\r\n\r\n"), 4u);  // "\n\n" at 2 starts before the CRLF blank line at 4
  EXPECT_EQ(sse_event_end(""), std::string::npos);
}

TEST(SseEventRelay, EveryReadBoundaryGivesTheSameBytesUsageAndCounts) {
  const std::string stream = kContent + kContent + kUsage + kDone;
  const std::string expected = renamed(kContent) + renamed(kContent) + kDone;
  for (std::size_t step = 1; step <= stream.size(); ++step) {
    SseEventRelay relay("up", "asked", /*strip_usage_only=*/true);
    std::string out;
    for (std::size_t i = 0; i < stream.size(); i += step) out += relay.feed(std::string_view(stream).substr(i, step));
    out += relay.tail();
    ASSERT_EQ(out, expected) << "reads of " << step << " bytes";
    ASSERT_TRUE(relay.usage().has_value());
    EXPECT_EQ(relay.usage()->prompt_tokens, 7);
    EXPECT_EQ(relay.usage()->completion_tokens, 3);
    EXPECT_EQ(relay.data_events(), 2);  // the stripped usage event is not counted, [DONE] is not JSON
    EXPECT_EQ(relay.response_id(), "c1");
  }
}

TEST(SseEventRelay, KeepsTheUsageEventForAClientThatAskedAndCountsIt) {
  SseEventRelay relay("up", "asked", /*strip_usage_only=*/false);
  const std::string out = relay.feed(kContent + kUsage + kDone);
  EXPECT_EQ(out, renamed(kContent) + renamed(kUsage) + kDone);
  EXPECT_EQ(relay.data_events(), 2);
}

TEST(SseEventRelay, NamesThatMatchAreNotRewrittenAndCrLfEventsAreCut) {
  SseEventRelay relay("up", "up", false);
  const std::string crlf = "event: x\r\ndata: {\"model\":\"up\"}\r\n\r\n";
  EXPECT_EQ(relay.feed(crlf + crlf.substr(0, 5)), crlf);
  EXPECT_EQ(relay.feed(crlf.substr(5)), crlf);
  EXPECT_EQ(relay.data_events(), 2);
  EXPECT_EQ(relay.tail(), "");
}

TEST(SseEventRelay, AMalformedEventPassesThroughAndTheGoodOnesAreBilled) {
  SseEventRelay relay("up", "asked", false);
  const std::string broken = "data: {\"usage\": {\"prompt_tokens\": -1}\n\n";  // not JSON, mentions usage
  EXPECT_EQ(relay.feed(broken + kUsage), broken + renamed(kUsage));
  ASSERT_TRUE(relay.usage().has_value());
  EXPECT_EQ(relay.usage()->completion_tokens, 3);
  EXPECT_EQ(relay.response_id(), "c1");  // the broken event mentions no id; the next one names it
}

TEST(SseEventRelay, TheUnterminatedTailIsReturnedOnceAsItCame) {
  SseEventRelay relay("up", "asked", false);
  EXPECT_EQ(relay.feed(kContent + "data: {\"model\":\"up\""), renamed(kContent));
  EXPECT_EQ(relay.tail(), "data: {\"model\":\"up\"");
  EXPECT_EQ(relay.tail(), "");
  EXPECT_FALSE(relay.usage().has_value());
  EXPECT_EQ(relay.data_events(), 1);
}

TEST(SseEventRelay, TheResponseIdComesFromTheFirstEventThatNamesOne) {
  {  // Anthropic: message_start carries it in `message`
    SseEventRelay relay("m", "m", false);
    relay.feed("event: ping\ndata: {\"type\":\"ping\"}\n\n");
    EXPECT_EQ(relay.response_id(), "");
    relay.feed(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":"
        "{\"input_tokens\":5,\"output_tokens\":1}}}\n\n");
    EXPECT_EQ(relay.response_id(), "msg_1");
    relay.feed("data: {\"id\":\"later\"}\n\n");
    EXPECT_EQ(relay.response_id(), "msg_1");  // the first one stays
  }
  {  // the Responses API: response.created carries it in `response`
    SseEventRelay relay("m", "m", false);
    relay.feed("event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_9\"}}\n\n");
    EXPECT_EQ(relay.response_id(), "resp_9");
  }
  {  // an empty or non-string id is no id; a data line that is not JSON ends that event's search
    SseEventRelay relay("m", "m", false);
    relay.feed("data: {\"id\":\"\"}\n\n");
    relay.feed("data: {\"id\":7}\n\n");
    relay.feed("data: {\"id\" oops\ndata: {\"id\":\"skipped\"}\n\n");
    EXPECT_EQ(relay.response_id(), "");
    relay.feed("data:{\"id\":\"x1\"}\r\n\r\n");
    EXPECT_EQ(relay.response_id(), "x1");
  }
}

TEST(SseEventRelay, EveryOccurrenceOfTheModelIsRenamed) {
  SseEventRelay relay("a", "bb", false);
  EXPECT_EQ(relay.feed("data: {\"model\":\"a\",\"x\":{\"model\":\"a\"},\"model\":\"ab\"}\n\n"),
            "data: {\"model\":\"bb\",\"x\":{\"model\":\"bb\"},\"model\":\"ab\"}\n\n");
}

TEST(SseEventRelay, AnEventOverTheBoundIsPassedOnUnreadAndNotKept) {
  // The bound made small (128 bytes, over the other events) so every read boundary around the long event's end is tried.
  // Not JSON, so read or not it comes out the same: an event that completes within the reads that
  // carry it is read as any other; only one still incomplete past the bound is passed unread.
  const std::string long_lf = "data: " + std::string(300, 'y') + "\n\n";
  std::string long_crlf = long_lf;
  long_crlf.replace(long_crlf.size() - 2, 2, "\r\n\r\n");
  for (const std::string& long_event : {long_lf, long_crlf}) {
    const std::string stream = kContent + long_event + kUsage + kContent + kDone;
    const std::string expected = renamed(kContent) + long_event + renamed(kContent) + kDone;
    for (std::size_t step = 1; step <= stream.size(); ++step) {
      SseEventRelay relay("up", "asked", /*strip_usage_only=*/true, /*max_event_bytes=*/128);
      std::string out;
      for (std::size_t i = 0; i < stream.size(); i += step) out += relay.feed(std::string_view(stream).substr(i, step));
      out += relay.tail();
      ASSERT_EQ(out, expected) << "reads of " << step;
      ASSERT_TRUE(relay.usage().has_value()) << "reads of " << step;
      EXPECT_EQ(relay.usage()->completion_tokens, 3);
      EXPECT_EQ(relay.data_events(), 2);
    }
  }
}

TEST(SseEventRelay, AnEventThatNeverEndsIsPassedOnAsItArrives) {
  SseEventRelay relay("up", "up", false, /*max_event_bytes=*/1 << 10);
  const std::string read(4096, 'z');
  std::size_t passed = relay.feed("data: ").size();
  for (int i = 0; i < 100; ++i) passed += relay.feed(read).size();
  EXPECT_EQ(passed, 6u + 100u * read.size());  // nothing held back, so nothing kept
  EXPECT_EQ(relay.tail(), "");
}

TEST(SseEventRelay, AnIdReadWhereItStartsIsTheParsedOnesOnly) {
  // OpenAI's chunks lead with their id: read there, the line validated, not parsed into a tree; what
  // a parse would refuse or read otherwise is the parse's to decide.
  const auto id_after = [](std::string_view stream) {
    SseEventRelay relay("up", "up", false);
    relay.feed(stream);
    return relay.response_id();
  };
  EXPECT_EQ(id_after("data: {\"id\":\"chatcmpl-1\",\"choices\":[]}\n\n"), "chatcmpl-1");
  EXPECT_EQ(id_after("data:\t{\"id\":\"chatcmpl-2\",\"choices\":[]}\n\n"), "chatcmpl-2");
  EXPECT_EQ(id_after("data: {\"id\":\"chatcmpl-3\",\"choices\":[}\n\ndata: {\"id\":\"next\"}\n\n"), "next");  // not JSON
  EXPECT_EQ(id_after("data: {\"id\":\"a\\u0062c\"}\n\n"), "abc");  // escaped: parsed
  EXPECT_EQ(id_after("data: {\"id\":\"\",\"x\":1}\n\ndata: {\"id\":\"second\"}\n\n"), "second");  // empty: no id
  EXPECT_EQ(id_after("data: {\"id\":\"tab\there\"}\n\ndata: {\"id\":\"ok\"}\n\n"), "ok");  // a raw tab: not JSON
  EXPECT_EQ(id_after("data: { \"id\" : \"spaced\" }\n\n"), "spaced");  // another spelling: parsed
}
