// JSON string literals as orjson writes them: \" \\ \b \f \n \r \t, \u00XX (lowercase) for the other
// control characters, everything else — "/" and non-ASCII included — as it is. The translated stream
// writes its chunks this way so that they are byte for byte what the proxy's Python writes elsewhere,
// and passes a provider's string on unchanged when it is already written this way.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace llmbill {

// `text` (valid UTF-8) as a JSON string literal, appended to `out`.
void append_json_string(std::string_view text, std::string& out);

// Length of the JSON string literal that starts `text` when it is exactly what append_json_string
// writes for its value (so it can be passed on byte for byte; its bytes valid UTF-8), else 0 — for
// any other escape, a raw control character, invalid UTF-8 or a literal that does not end.
std::size_t canonical_json_string(std::string_view text);

}  // namespace llmbill
