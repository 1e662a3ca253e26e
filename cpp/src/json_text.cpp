// JSON string literals written, and recognised, exactly as orjson writes them (json_text.hpp).
#include "llmbill/json_text.hpp"

namespace llmbill {
namespace {

// Length of the valid UTF-8 sequence at the start of `text` (its first byte ≥ 0x80), or 0: the
// ranges of RFC 3629, which nlohmann's reader (and orjson's) hold strings to.
std::size_t utf8_sequence(std::string_view text) {
  auto byte = [&](std::size_t i) { return i < text.size() ? static_cast<unsigned char>(text[i]) : 0u; };
  auto cont = [&](std::size_t i, unsigned lo = 0x80, unsigned hi = 0xBF) { return byte(i) >= lo && byte(i) <= hi; };
  const unsigned b = byte(0);
  if (b >= 0xC2 && b <= 0xDF) return cont(1) ? 2 : 0;
  if (b == 0xE0) return cont(1, 0xA0) && cont(2) ? 3 : 0;
  if (b == 0xED) return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0;  // not a surrogate
  if (b >= 0xE1 && b <= 0xEF) return cont(1) && cont(2) ? 3 : 0;
  if (b == 0xF0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (b >= 0xF1 && b <= 0xF3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (b == 0xF4) return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

}  // namespace

void append_json_string(std::string_view text, std::string& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  std::size_t from = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(text.substr(from, i - from));
    from = i + 1;
    switch (c) {
      case '"': out.append("\\\""); break;
      case '\\': out.append("\\\\"); break;
      case '\b': out.append("\\b"); break;
      case '\f': out.append("\\f"); break;
      case '\n': out.append("\\n"); break;
      case '\r': out.append("\\r"); break;
      case '\t': out.append("\\t"); break;
      default:
        out.append("\\u00");
        out.push_back(kHex[c >> 4]);
        out.push_back(kHex[c & 0xF]);
    }
  }
  out.append(text.substr(from));
  out.push_back('"');
}

std::size_t canonical_json_string(std::string_view text) {
  static constexpr std::string_view kHex = "0123456789abcdef";
  if (!text.starts_with('"')) return 0;
  for (std::size_t i = 1; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '"') return i + 1;
    if (c < 0x20) return 0;  // a raw control character: not JSON
    if (c == '\\') {
      const char e = i + 1 < text.size() ? text[i + 1] : '\0';
      if (e == '"' || e == '\\' || e == 'b' || e == 'f' || e == 'n' || e == 'r' || e == 't') {
        i += 2;
        continue;
      }
      // \u00XX (lowercase) for a control character without a short form; anything else is not canonical.
      if (e != 'u' || text.substr(i + 2, 2) != "00" || i + 5 >= text.size()) return 0;
      const std::size_t hi = kHex.find(text[i + 4]), lo = kHex.find(text[i + 5]);
      if (hi > 1 || lo == std::string_view::npos) return 0;
      const std::size_t code = hi * 16 + lo;
      if (code == '\b' || code == '\f' || code == '\n' || code == '\r' || code == '\t') return 0;
      i += 6;
    } else if (c < 0x80) {
      ++i;
    } else {
      const std::size_t n = utf8_sequence(text.substr(i));
      if (n == 0) return 0;
      i += n;
    }
  }
  return 0;  // unterminated
}

}  // namespace llmbill
