#include "llmbill/json_text.hpp"

#include <gtest/gtest.h>

#include <string>

using llmbill::append_json_string;
using llmbill::canonical_json_string;

TEST(AppendJsonString, EscapesAsOrjsonDoes) {
  std::string out;
  append_json_string("a\"b\\c\b\f\n\r\t\x01\x1f\x7f/é", out);
  EXPECT_EQ(out, "\"a\\\"b\\\\c\\b\\f\\n\\r\\t\\u0001\\u001f\x7f/é\"");
}

TEST(CanonicalJsonString, AcceptsExactlyWhatAppendJsonStringWrites) {
  for (const std::string value : {"", "plain", "a\"b\\c\b\f\n\r\t\x01\x1f\x7f/é €😀"}) {
    std::string literal;
    append_json_string(value, literal);
    EXPECT_EQ(canonical_json_string(literal + "}}"), literal.size()) << literal;
  }
  // Escapes the writer would not use, raw control characters, invalid UTF-8, no closing quote.
  for (const std::string other : {R"("\u00e9")", R"("\/")", R"("\u000a")", R"("\u001F")", "\"a\tb\"", "\"\xff\"",
                                  "\"\xed\xa0\x80\"", "\"\xc0\xaf\"", "\"\xf4\x90\x80\x80\"", "\"\xe2\x82\"", "\"open",
                                  "plain"}) {
    EXPECT_EQ(canonical_json_string(other), 0u) << other;
  }
}
