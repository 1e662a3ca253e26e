// The spool's on-disk format and file helpers — internal to cpp/src, not public API (the contract is
// llmbill/spool.hpp; the design notes are at the top of spool.cpp).
//
// - A record is a 20-byte header (magic, payload length, crc, seq; all little-endian) followed by the
//   payload; the crc covers (seq, payload). An ack entry is 12 bytes: seq, crc of the seq.
// - A segment is "seg-<first seq, 20 digits>.log", its acks "seg-<same>.ack".
// - Fd, open_file, write_all, datasync and read_whole wrap the POSIX calls: EINTR retried, errors
//   returned as an errno (write_all, datasync) or thrown as llmbill::Error (open_file, read_whole).
//
// Thread safety: pure functions and a move-only fd owner; no shared state.
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace llmbill::spool_detail {

inline constexpr std::uint32_t kMagic = 0x4C4CFFFEu;  // bytes FE FF 4C 4C on disk
inline constexpr std::size_t kHeader = 20;             // magic, length, crc, seq
inline constexpr std::size_t kAckEntry = 12;           // seq, crc

std::string errno_text(int e);

[[noreturn]] void throw_io(const std::string& what, const std::filesystem::path& path, int e);

class Fd {
 public:
  explicit Fd(int fd = -1) noexcept : fd_(fd) {}
  ~Fd();
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd& operator=(Fd&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  int get() const noexcept { return fd_; }

 private:
  int fd_;
};
using FdPtr = std::shared_ptr<Fd>;

// open(2) with O_CLOEXEC and mode 0600 (owner only); throws "spool: <what> <path>: <errno text>" on failure.
int open_file(const std::filesystem::path& path, int flags, const char* what);

// Writes all of [data, data+size); returns 0 or the errno. One write() unless the kernel splits it.
int write_all(int fd, const char* data, std::size_t size);

// fdatasync(2); returns 0 or the errno.
int datasync(int fd);

inline void put_u32(char* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xFFu);
}
inline void put_u64(char* p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xFFu);
}
inline std::uint32_t get_u32(const char* p) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}
inline std::uint64_t get_u64(const char* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

// crc32 over the 8 little-endian seq bytes, then the payload.
std::uint32_t record_crc(const char* seq_bytes, std::string_view payload);

// Appends header + payload to `out`. The caller keeps payload.size() <= UINT32_MAX.
void encode_record(std::string& out, std::uint64_t seq, std::string_view payload);

struct Decoded {
  std::uint64_t seq;
  std::string_view payload;  // points into the data passed to decode_record
};

// The record at `pos` if it is whole and valid with min_seq <= seq < limit. Needs pos <= data.size().
std::optional<Decoded> decode_record(std::string_view data, std::size_t pos, std::uint64_t min_seq,
                                     std::uint64_t limit);

// Appends the 12-byte ack entry of `seq` to `out`.
void encode_ack(std::string& out, std::uint64_t seq);

// The seq of the kAckEntry bytes at `entry` if their crc matches.
std::optional<std::uint64_t> decode_ack(const char* entry);

// first seq, "log" -> "seg-<20 digits>.log".
std::string seg_name(std::uint64_t first, const char* ext);

// "seg-<20 digits>.<ext>" -> first seq.
std::optional<std::uint64_t> parse_seg_name(const std::string& name, std::string_view ext);

// The whole file; throws llmbill::Error on failure.
std::string read_whole(const std::filesystem::path& path);

}  // namespace llmbill::spool_detail
