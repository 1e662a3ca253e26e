// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), the checksum zlib and gzip use: the spool
// checks every record and ack with it. crc32("123456789") == 0xCBF43926.
//
// Incremental use: crc32(b, crc32(a)) == crc32(a + b), so a record's (seq, payload) needs no copy.
//
// Thread safety: pure functions over a constant table.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace llmbill {

// Continues `previous` (the result of an earlier call, 0 to start) over `size` bytes at `data`.
std::uint32_t crc32(const void* data, std::size_t size, std::uint32_t previous = 0) noexcept;

inline std::uint32_t crc32(std::string_view bytes, std::uint32_t previous = 0) noexcept {
  return crc32(bytes.data(), bytes.size(), previous);
}

}  // namespace llmbill
