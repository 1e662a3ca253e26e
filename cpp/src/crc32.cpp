#include "llmbill/crc32.hpp"

#include <array>

namespace llmbill {
namespace {

// One table of 256 entries, built at compile time: a byte at a time is fast enough for the spool
// (its cost is far below a write() system call) and keeps the code small.
constexpr std::array<std::uint32_t, 256> make_table() {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int bit = 0; bit < 8; ++bit) c = (c & 1u) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr std::array<std::uint32_t, 256> kTable = make_table();

}  // namespace

std::uint32_t crc32(const void* data, std::size_t size, std::uint32_t previous) noexcept {
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint32_t c = ~previous;
  for (std::size_t i = 0; i < size; ++i) c = kTable[(c ^ p[i]) & 0xFFu] ^ (c >> 8);
  return ~c;
}

}  // namespace llmbill
