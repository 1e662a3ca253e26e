#include "llmbill/anthropic_chat_stream.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using llmbill::AnthropicChatStream;
using llmbill::anthropic_finish_reason;
using llmbill::StreamFailure;

namespace {

std::string sse(const std::string& type, const std::string& data) { return "event: " + type + "\ndata: " + data + "\n\n"; }

const std::string kStart = sse(
    "message_start",
    R"({"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","content":[],)"
    R"("usage":{"input_tokens":100,"cache_read_input_tokens":1000,"cache_creation_input_tokens":3000,"output_tokens":1}}})");
const std::string kText =
    sse("content_block_start", R"({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})") +
    sse("content_block_delta",
        R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi \"there\" €\n"}})") +
    sse("content_block_stop", R"({"type":"content_block_stop","index":0})");
const std::string kEnd =
    sse("message_delta", R"({"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":50}})") +
    sse("message_stop", R"({"type":"message_stop"})");

const std::string kHead = R"(data: {"id":"msg_01","object":"chat.completion.chunk","created":7,"model":"my \"claude\"",)"
                          R"("system_fingerprint":null,"choices":)";

std::string chunk(const std::string& delta, const std::string& finish = "null") {
  return kHead + R"([{"index":0,"delta":)" + delta + R"(,"logprobs":null,"finish_reason":)" + finish +
         R"(}],"usage":null})" + "\n\n";
}

std::vector<std::string> run(AnthropicChatStream& s, const std::string& stream, std::size_t step) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < stream.size(); i += step) s.feed(std::string_view(stream).substr(i, step), out);
  s.finish(out);
  return out;
}

}  // namespace

TEST(AnthropicChatStream, EveryReadSizeGivesTheSameChunksUsageThenDone) {
  const std::string stream = kStart + sse("ping", R"({"type":"ping"})") + kText + kEnd;
  const std::vector<std::string> expected = {
      chunk(R"({"role":"assistant","content":""})"), chunk(R"({"content":"Hi \"there\" €\n"})"),
      chunk("{}", R"("stop")"),
      kHead + R"([],"usage":{"prompt_tokens":4100,"completion_tokens":50,"total_tokens":4150,)"
              R"("prompt_tokens_details":{"cached_tokens":1000},"completion_tokens_details":{"reasoning_tokens":0},)"
              R"("cache_read_input_tokens":1000,"cache_creation_input_tokens":3000}})" "\n\n",
      "data: [DONE]\n\n"};
  for (const std::string& framed : {stream, [&] {  // LF and CRLF lines
         std::string crlf;
         for (char c : stream) crlf += c == '\n' ? std::string("\r\n") : std::string(1, c);
         return crlf;
       }()}) {
    for (std::size_t step = 1; step <= framed.size(); step += (step < 40 ? 1 : 97)) {
      AnthropicChatStream s("my \"claude\"", true, 7, "json_tool");
      ASSERT_EQ(run(s, framed, step), expected) << "reads of " << step;
      EXPECT_TRUE(s.complete());
      ASSERT_TRUE(s.usage().has_value());
      EXPECT_EQ(s.usage()->completion_tokens, 50);
      EXPECT_FALSE(s.usage_error().has_value());
    }
  }
}

TEST(AnthropicChatStream, ToolCallsAndTheJsonToolAndThinking) {
  const std::string stream =
      kStart +
      sse("b", R"({"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"Hm"}})") +
      sse("b", R"({"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t1","name":"f","input":{"z":1,"a":[true,null]}}})") +
      sse("b", R"({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"x\""}})") +
      sse("b", R"({"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"t2","name":"json_tool","input":{}}})") +
      sse("b", R"({"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{}"}})") +
      sse("b", R"({"type":"content_block_delta","index":9,"delta":{"type":"input_json_delta","partial_json":"lost"}})") +
      sse("b", R"({"type":"message_delta","delta":{"stop_reason":"tool_use"}})") + sse("b", R"({"type":"message_stop"})");
  AnthropicChatStream s("my \"claude\"", false, 7, "json_tool");
  const auto out = run(s, stream, stream.size());
  auto plain = [](const std::string& delta, const std::string& finish = "null") {
    std::string c = chunk(delta, finish);
    return c.replace(c.find(R"(,"usage":null)"), 13, "");
  };
  const std::vector<std::string> expected = {
      plain(R"({"role":"assistant","content":""})"), plain(R"({"reasoning_content":"Hm"})"),
      plain(R"({"tool_calls":[{"index":0,"id":"t1","type":"function","function":{"name":"f","arguments":"{\"z\":1,\"a\":[true,null]}"}}]})"),
      plain(R"({"tool_calls":[{"index":0,"function":{"arguments":"{\"x\""}}]})"), plain(R"({"content":"{}"})"),
      plain("{}", R"("tool_calls")"), "data: [DONE]\n\n"};  // no usage chunk: not asked for
  EXPECT_EQ(out, expected);
}

TEST(AnthropicChatStream, FailuresStopTheTranslationButNotTheUsage) {
  {  // an error event: its data kept for the caller's mapping, nothing after it, no [DONE]
    AnthropicChatStream s("m", true, 7, "j");
    const std::string error = R"({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})";
    const auto out = run(s, kStart + sse("error", error) + kText + kEnd, 5);
    EXPECT_EQ(out.size(), 1u);  // the role chunk only
    EXPECT_EQ(s.failure(), StreamFailure::error_event);
    EXPECT_EQ(s.failed_event(), error);
    EXPECT_FALSE(s.complete());
    ASSERT_TRUE(s.usage().has_value());
    EXPECT_EQ(s.usage()->completion_tokens, 50);  // the scanner read on
  }
  for (const std::string bad : {std::string("{not json"), std::string("[1]"), std::string("")}) {
    AnthropicChatStream s("m", true, 7, "j");
    run(s, kStart + "data: " + bad + "\n\n" + kText, 3);
    EXPECT_EQ(s.failure(), StreamFailure::unreadable_event) << bad;
  }
  {  // cut before message_stop
    AnthropicChatStream s("m", true, 7, "j");
    const auto out = run(s, kStart + kText, 1000);
    EXPECT_EQ(s.failure(), StreamFailure::ended_early);
    EXPECT_EQ(out.size(), 2u);
  }
  {  // a line that never ends, then an event of many lines: memory stays bounded
    AnthropicChatStream s("m", true, 7, "j");
    std::vector<std::string> out;
    s.feed(kStart, out);
    s.feed("data: " + std::string((16u << 20) + 1, 'x'), out);
    EXPECT_EQ(s.failure(), StreamFailure::line_too_long);
    s.finish(out);
    EXPECT_EQ(out.size(), 1u);
    AnthropicChatStream t("m", true, 7, "j");
    const std::string line = "data: " + std::string(1 << 20, 'y') + "\n";
    for (int i = 0; i < 17; ++i) t.feed(line, out);
    EXPECT_EQ(t.failure(), StreamFailure::event_too_long);
  }
  {  // a tool input nested too deep to write out is unreadable, not a crash
    AnthropicChatStream s("m", true, 7, "j");
    const std::string deep = std::string(100000, '[') + std::string(100000, ']');
    run(s, kStart + sse("b", R"({"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t","name":"f","input":)" +
                                   deep + "}}"), 1 << 20);
    EXPECT_EQ(s.failure(), StreamFailure::unreadable_event);
    AnthropicChatStream t("m", true, 7, "j");  // and so is a block index nested too deep to be a key
    run(t, kStart + sse("b", R"({"type":"content_block_stop","index":)" + deep + "}"), 1 << 20);
    EXPECT_EQ(t.failure(), StreamFailure::unreadable_event);
  }
}

TEST(AnthropicChatStream, NonStringFieldsAreIgnoredAndEventsAfterStopDropped) {
  const std::string stream =
      sse("m", R"({"type":"message_start","message":{"id":5}})") +
      sse("b", R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":7}})") +
      sse("b", R"({"type":"content_block_delta","index":0,"delta":"x"})") + sse("b", R"({"type":3})") +
      sse("b", R"({"type":"message_delta","delta":{"stop_reason":["odd"]}})") + sse("b", R"({"type":"message_stop"})") +
      sse("b", R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"late"}})");
  AnthropicChatStream s("m", false, 1, "j");
  const auto out = run(s, stream, 11);
  ASSERT_EQ(out.size(), 3u);  // role, stop, [DONE] (no usage reported: no usage chunk)
  EXPECT_NE(out[0].find(R"("id":"")"), std::string::npos);
  EXPECT_NE(out[1].find(R"("finish_reason":"stop")"), std::string::npos);
  EXPECT_TRUE(s.complete());
  EXPECT_FALSE(s.usage().has_value());
}

TEST(AnthropicFinishReason, MapsAsOpenAINamesThem) {
  EXPECT_EQ(anthropic_finish_reason(std::nullopt, false), "stop");
  EXPECT_EQ(anthropic_finish_reason("end_turn", false), "stop");
  EXPECT_EQ(anthropic_finish_reason("max_tokens", false), "length");
  EXPECT_EQ(anthropic_finish_reason("model_context_window_exceeded", false), "length");
  EXPECT_EQ(anthropic_finish_reason("refusal", false), "content_filter");
  EXPECT_EQ(anthropic_finish_reason("tool_use", true), "tool_calls");
  EXPECT_EQ(anthropic_finish_reason("tool_use", false), "stop");
  EXPECT_EQ(anthropic_finish_reason("something_new", true), "stop");
}

TEST(AnthropicChatStream, AFalsyToolInputGivesEmptyArguments) {
  for (const std::string input : {"{}", "\"\"", "0", "false", "null", "[]"}) {
    AnthropicChatStream s("m", false, 1, "j");
    std::vector<std::string> out;
    s.feed(sse("b", R"({"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"f","input":)" +
                        input + "}}"),
           out);
    ASSERT_EQ(out.size(), 1u) << input;
    EXPECT_NE(out[0].find(R"("arguments":"")"), std::string::npos) << input;
  }
}

TEST(AnthropicChatStream, TextDeltasReadByTheirBytesMatchTheGeneralReading) {
  auto content_of = [](const std::string& data) {
    AnthropicChatStream s("m", false, 1, "j");
    std::vector<std::string> out;
    s.feed("data: " + data + "\n\n", out);
    EXPECT_EQ(s.failure(), StreamFailure::none) << data;
    return out.empty() ? std::string("<none>") : out[0].substr(out[0].find(R"("delta":)"));
  };
  const std::string compact = R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":)";
  const std::string spaced = R"({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": )";
  // Canonical text is passed on as it came; any other escape is decoded and written canonically.
  for (const std::string text : {R"("a \"b\" \\ \n\t\u0001 é €")", R"("\u00e9\/\u000A")", R"("")"}) {
    EXPECT_EQ(content_of(compact + text + "}}"), content_of(spaced + text + "}}")) << text;
  }
  EXPECT_EQ(content_of(compact + R"("\u00e9\/\u000A")" + "}}"), R"("delta":{"content":"é/\n"},"logprobs":null,"finish_reason":null}]})" "\n\n");
  EXPECT_EQ(content_of(compact + R"("")" + "}}"), "<none>");
  for (const std::string bad : {"\"\xff\"", "\"\xed\xa0\x80\"", "\"\xc0\xaf\"", "\"a\tb\"", "\"open}}"}) {
    AnthropicChatStream s("m", false, 1, "j");
    std::vector<std::string> out;
    s.feed("data: " + compact + bad + "}}\n\n", out);
    EXPECT_EQ(s.failure(), StreamFailure::unreadable_event) << bad;
  }
}
