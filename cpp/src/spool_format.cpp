// The spool's on-disk format and file helpers; see spool_format.hpp (internal) and the design notes
// in spool.cpp.
#include "spool_format.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <system_error>

#include "llmbill/crc32.hpp"
#include "llmbill/errors.hpp"

namespace llmbill::spool_detail {
namespace fs = std::filesystem;

std::string errno_text(int e) { return std::generic_category().message(e); }

[[noreturn]] void throw_io(const std::string& what, const fs::path& path, int e) {
  throw Error("spool: " + what + " " + path.string() + ": " + errno_text(e));
}

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

int open_file(const fs::path& path, int flags, const char* what) {
  for (;;) {
    int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0600);  // events name customers and amounts
    if (fd >= 0) return fd;
    if (errno != EINTR) throw_io(what, path, errno);
  }
}

// Writes all of [data, data+size); returns 0 or the errno. One write() unless the kernel splits it.
int write_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return 0;
}

int datasync(int fd) {
  while (::fdatasync(fd) != 0) {
    if (errno != EINTR) return errno;
  }
  return 0;
}

std::uint32_t record_crc(const char* seq_bytes, std::string_view payload) {
  return crc32(payload, crc32(seq_bytes, 8));
}

void encode_record(std::string& out, std::uint64_t seq, std::string_view payload) {
  char h[kHeader];
  put_u32(h, kMagic);
  put_u32(h + 4, static_cast<std::uint32_t>(payload.size()));
  put_u64(h + 12, seq);
  put_u32(h + 8, record_crc(h + 12, payload));
  out.append(h, kHeader);
  out.append(payload);
}

// The record at `pos` if it is whole and valid with min_seq <= seq < limit.
std::optional<Decoded> decode_record(std::string_view data, std::size_t pos, std::uint64_t min_seq,
                                     std::uint64_t limit) {
  if (data.size() - pos < kHeader) return std::nullopt;
  const char* h = data.data() + pos;
  if (get_u32(h) != kMagic) return std::nullopt;
  std::uint32_t len = get_u32(h + 4);
  if (len > data.size() - pos - kHeader) return std::nullopt;
  std::uint64_t seq = get_u64(h + 12);
  if (seq < min_seq || seq >= limit) return std::nullopt;
  std::string_view payload = data.substr(pos + kHeader, len);
  if (record_crc(h + 12, payload) != get_u32(h + 8)) return std::nullopt;
  return Decoded{seq, payload};
}

void encode_ack(std::string& out, std::uint64_t seq) {
  char e[kAckEntry];
  put_u64(e, seq);
  put_u32(e + 8, crc32(e, 8));
  out.append(e, kAckEntry);
}

std::optional<std::uint64_t> decode_ack(const char* entry) {
  if (crc32(entry, 8) != get_u32(entry + 8)) return std::nullopt;
  return get_u64(entry);
}

std::string seg_name(std::uint64_t first, const char* ext) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "seg-%020llu.%s", static_cast<unsigned long long>(first), ext);
  return buf;
}

// "seg-<20 digits>.<ext>" -> first seq.
std::optional<std::uint64_t> parse_seg_name(const std::string& name, std::string_view ext) {
  if (name.size() != 4 + 20 + 1 + ext.size() || name.compare(0, 4, "seg-") != 0 ||
      name[24] != '.' || std::string_view(name).substr(25) != ext) {
    return std::nullopt;
  }
  std::uint64_t v = 0;
  for (std::size_t i = 4; i < 24; ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    std::uint64_t d = static_cast<std::uint64_t>(name[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

std::string read_whole(const fs::path& path) {
  Fd fd(open_file(path, O_RDONLY, "open"));
  std::string data;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_io("read", path, errno);
    }
    if (n == 0) return data;
    data.append(buf, static_cast<std::size_t>(n));
  }
}

}  // namespace llmbill::spool_detail
