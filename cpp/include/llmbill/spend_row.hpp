// A settled call's spend-log row as one line of JSON, made by the core as it settles the call: the
// line the proxy appends to its spend journal before the reply, and the element the spend flush binds
// to its one INSERT per batch — so on the request path the row is neither built as a Python object
// nor encoded there, and the flush converts nothing a row (python/llmbill/proxy/store/log_line.py
// reads and writes the same form for the rows made in Python).
//
// The form: a JSON array, the spend_logs columns in their order (request_id, call_type, model,
// api_key, user, team_id, end_user, spend, prompt_tokens, completion_tokens, cached_tokens,
// reasoning_tokens, start_time, end_time, status, metadata, response_id); spend an exact decimal
// string, times integer microseconds since the epoch, metadata the JSON text of an object (a string),
// then a newline.
//
//   SpendRowFields f{.call_type = "chat_completion", .api_key = "hash", .start_us = s, .end_us = e};
//   spend_row_line(call, f) == "[\"call-1\",\"chat_completion\",\"gpt-4o-mini\",\"hash\",...]\n"
#pragma once
#include <cstdint>
#include <string>

#include "llmbill/event.hpp"

namespace llmbill {

// What the row holds beyond the call's record.
struct SpendRowFields {
  std::string call_type;    // chat_completion | completion | embedding | ...
  std::string api_key;      // the key's hash ("" for the master key)
  std::int64_t start_us = 0;
  std::int64_t end_us = 0;
  std::string response_id;  // the upstream reply's id ("" when it had none)
  std::string tags_json;    // the call's tags as a JSON array's text ("": none)
};

// The row of `call` (its cost and `unpriced` as settled) as described above. Strings must be UTF-8.
std::string spend_row_line(const CallRecord& call, const SpendRowFields& row);

}  // namespace llmbill
