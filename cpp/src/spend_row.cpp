// The metadata keys and their order are those of python/llmbill/proxy/settle.py's spend_log (the
// row of a call priced in Python): what the Lago event carries beyond the columns, so reconcile can
// rebuild the event from the row.
#include "llmbill/spend_row.hpp"

#include "llmbill/json_text.hpp"

namespace llmbill {
namespace {

void append_string(std::string& out, std::string_view text) {
  append_json_string(text, out);
  out += ',';
}

void append_int(std::string& out, std::int64_t value) {
  out += std::to_string(value);
  out += ',';
}

std::string metadata_text(const CallRecord& call, const SpendRowFields& row) {
  std::string meta = "{";
  auto key = [&meta](const char* name) {
    if (meta.size() > 1) meta += ',';
    meta += '"';
    meta += name;
    meta += "\":";
  };
  if (call.unpriced) {
    key("unpriced");
    meta += "true";
  }
  if (call.usage.estimated) {
    key("estimated");
    meta += "true";
  }
  if (call.billed_amount) {  // the row's spend is the billed amount; the provider's cost is kept here
    key("response_cost");
    append_json_string(call.cost.to_usd_string(), meta);
  }
  if (!call.key_alias.empty()) {
    key("key_alias");
    append_json_string(call.key_alias, meta);
  }
  if (call.usage.cache_creation_tokens != 0) {
    key("cache_creation_tokens");
    meta += std::to_string(call.usage.cache_creation_tokens);
  }
  if (call.usage.cache_creation_1h_tokens != 0) {
    key("cache_creation_1h_tokens");
    meta += std::to_string(call.usage.cache_creation_1h_tokens);
  }
  if (!row.tags_json.empty()) {
    key("tags");
    meta += row.tags_json;
  }
  meta += '}';
  return meta;
}

}  // namespace

std::string spend_row_line(const CallRecord& call, const SpendRowFields& row) {
  std::string out;
  out.reserve(256 + call.model.size() + call.end_user_id.size() + row.tags_json.size());
  out += '[';
  append_string(out, call.call_id);
  append_string(out, row.call_type);
  append_string(out, call.model);
  append_string(out, row.api_key);
  append_string(out, call.user_id);
  append_string(out, call.team_id);
  append_string(out, call.end_user_id);
  append_string(out, (call.billed_amount ? *call.billed_amount : call.cost).to_usd_string());
  append_int(out, call.usage.prompt_tokens);
  append_int(out, call.usage.completion_tokens);
  append_int(out, call.usage.cached_tokens);
  append_int(out, call.usage.reasoning_tokens);
  append_int(out, row.start_us);
  append_int(out, row.end_us);
  append_string(out, "success");
  append_string(out, metadata_text(call, row));
  append_json_string(row.response_id, out);
  out += "]\n";
  return out;
}

}  // namespace llmbill
