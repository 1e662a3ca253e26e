// Opening a spool directory: the lock, orphan acks, each segment scanned (resynchronising past
// corrupt records), its acks applied, the seq floor raised past anything torn; the recovered
// payloads handed over once. Why it is done this way: the design notes in spool.cpp.
#include "spool_impl.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <set>
#include <utility>

namespace llmbill {
namespace fs = std::filesystem;
using namespace spool_detail;  // the on-disk format and file helpers

Spool::Impl::Impl(SpoolOptions o) : opt(std::move(o)) {
  if (opt.dir.empty()) throw Error("spool: SpoolOptions.dir is empty");
  if (opt.segment_bytes == 0 || opt.max_bytes == 0) throw Error("spool: segment_bytes and max_bytes must be > 0");
  std::error_code ec;
  fs::create_directories(opt.dir, ec);
  if (ec) throw Error("spool: cannot create " + opt.dir.string() + ": " + ec.message());
  dir_fd = Fd(open_file(opt.dir, O_RDONLY | O_DIRECTORY, "open directory"));
  lock_fd = Fd(open_file(opt.dir / "LOCK", O_RDWR | O_CREAT, "open"));
  if (::flock(lock_fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) throw Error("spool: " + opt.dir.string() + " is in use by another Spool");
    throw_io("lock", opt.dir / "LOCK", errno);
  }

  std::set<std::uint64_t> logs;  // first seqs
  std::vector<std::uint64_t> acks;
  for (const auto& entry : fs::directory_iterator(opt.dir, ec)) {
    std::string name = entry.path().filename().string();
    if (auto f = parse_seg_name(name, "log")) logs.insert(*f);
    if (auto f = parse_seg_name(name, "ack")) acks.push_back(*f);
  }
  if (ec) throw Error("spool: cannot list " + opt.dir.string() + ": " + ec.message());
  for (std::uint64_t f : acks) {
    if (!logs.count(f) && ::unlink(ack_path(f).c_str()) != 0) {
      warn("cannot remove orphan " + ack_path(f).string() + ": " + errno_text(errno));
    }
  }

  for (auto it = logs.begin(); it != logs.end(); ++it) {
    auto next = std::next(it);
    recover_segment(*it, next == logs.end() ? UINT64_MAX : *next, next_seq);
    next_seq = std::max(next_seq, *it + 1);
  }
  written_seq = durable_seq = next_seq - 1;
  reserve = std::min(opt.reserve_bytes, opt.max_bytes / 4);
  read_free_space();

  std::lock_guard lock(mu);
  open_segment_locked(next_seq);  // before any deletion: its name keeps the seq floor
  bool deleted = false;
  for (auto it = segments.begin(); std::next(it) != segments.end();) {
    auto cur = it++;
    if (cur->second.pending_count == 0) deleted |= delete_segment_locked(cur);
  }
  if (deleted) fsync_dir();
}

// Loads one segment; raises seq_floor above every seq that may have reached it, torn ones included.
void Spool::Impl::recover_segment(std::uint64_t first, std::uint64_t limit, std::uint64_t& seq_floor) {
  fs::path path = log_path(first);
  std::string data = read_whole(path);
  std::string_view view(data);
  std::vector<Decoded> records;
  std::uint64_t min_seq = first;
  std::size_t pos = 0;
  std::size_t valid_end = 0;  // end of the last valid record
  while (pos < view.size()) {
    if (auto r = decode_record(view, pos, min_seq, limit)) {
      records.push_back(*r);
      pos += kHeader + r->payload.size();
      valid_end = pos;
      min_seq = r->seq + 1;
      continue;
    }
    ++torn;
    // Resynchronise on the next offset holding a whole valid record.
    std::size_t next = std::string_view::npos;
    for (std::size_t q = pos + 1; q + kHeader <= view.size(); ++q) {
      const void* hit = std::memchr(view.data() + q, 0xFE, view.size() - q);
      if (hit == nullptr) break;
      q = static_cast<std::size_t>(static_cast<const char*>(hit) - view.data());
      if (decode_record(view, q, min_seq, limit)) {
        next = q;
        break;
      }
    }
    if (next == std::string_view::npos) {
      warn(path.string() + ": torn or corrupt record at offset " + std::to_string(pos) + ", skipped " +
           std::to_string(view.size() - pos) + " bytes to the end");
      break;
    }
    warn(path.string() + ": corrupt record at offset " + std::to_string(pos) + ", skipped " +
         std::to_string(next - pos) + " bytes to the next valid record");
    pos = next;
  }

  // Records torn off the tail had seqs from min_seq on, at most one per kHeader bytes: never reuse them.
  std::size_t tail = view.size() - valid_end;
  seq_floor = std::max(seq_floor, min_seq + (tail + kHeader - 1) / kHeader);

  Segment seg;
  seg.bytes = data.size();
  if (!records.empty()) {
    std::vector<bool> acked(records.back().seq - first + 1, false);
    read_acks(first, acked);
    seg.pending.assign(acked.size(), false);
    for (const Decoded& r : records) {
      if (acked[r.seq - first]) continue;
      seg.pending[r.seq - first] = true;
      ++seg.pending_count;
      recovered.push_back({r.seq, std::string(r.payload)});
    }
  }
  pending += seg.pending_count;
  bytes += seg.bytes;
  segments.emplace(first, std::move(seg));
}

void Spool::Impl::read_acks(std::uint64_t first, std::vector<bool>& acked) {
  fs::path path = ack_path(first);
  if (!fs::exists(path)) return;
  std::string data = read_whole(path);
  std::size_t whole = data.size() - data.size() % kAckEntry;
  for (std::size_t pos = 0; pos < whole; pos += kAckEntry) {
    std::optional<std::uint64_t> seq = decode_ack(data.data() + pos);
    if (!seq) {
      warn(path.string() + ": corrupt ack at offset " + std::to_string(pos) + " ignored");
      continue;
    }
    if (*seq >= first && *seq - first < acked.size()) acked[*seq - first] = true;
  }
  if (whole != data.size()) {
    // Cut the torn tail so that later acks appended to this file stay aligned.
    warn(path.string() + ": torn ack entry at offset " + std::to_string(whole) + " cut off");
    if (::truncate(path.c_str(), static_cast<off_t>(whole)) != 0) throw_io("truncate", path, errno);
  }
}

std::vector<SpoolRecord> Spool::take_recovered() {
  std::lock_guard lock(impl_->mu);
  std::vector<SpoolRecord> out;
  for (SpoolRecord& r : impl_->recovered) {
    auto it = impl_->segments.upper_bound(r.seq);
    if (it == impl_->segments.begin()) continue;
    --it;
    std::uint64_t idx = r.seq - it->first;
    if (idx < it->second.pending.size() && it->second.pending[idx]) out.push_back(std::move(r));
  }
  impl_->recovered.clear();
  impl_->recovered.shrink_to_fit();
  return out;
}

}  // namespace llmbill
