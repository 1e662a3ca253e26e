// Design notes — the spool (contract in llmbill/spool.hpp)
//
// This file is the Spool class: recovery, appends, acks, rotation, group commit. The on-disk
// format (record and ack entry encode/decode with their crc, segment and ack file names) and the
// fd/open/write/fdatasync/read helpers are in spool_format.hpp/.cpp (internal, llmbill::spool_detail).
//
// - Segments plus ack files, not a database: appends are the hot path (enqueue p99 target 20 us), so
//   a record is one O_APPEND write() of a buffer encoded in memory; nothing is read back while
//   running. Acks go to a separate file per segment so a segment is never rewritten in place; a
//   segment is deleted (log first, then ack, then a directory fsync) once it is sealed and all its
//   records are acknowledged. Deleting the log first means a crash in between leaves an orphan ack
//   file (removed at the next open), never a log without its acks (which would resend everything).
// - Record = 20-byte header + payload (spool_format.cpp); the crc covers (seq, payload) so a record
//   moved or renumbered does not pass. The magic's bytes 0xFE 0xFF cannot occur in UTF-8, so a JSON
//   payload never looks like a header when the recovery scan resynchronises after a corrupt record.
// - Recovery resynchronises instead of stopping at the first bad record: losing every later event of
//   a segment to one flipped bit is the worst outcome for billing, while a false match needs the
//   magic, a plausible length, an in-range increasing seq and a matching crc together.
// - Seqs never repeat across restarts although fully acked segments are deleted: the name of a
//   segment is its first seq, a new segment is created (and the directory fsynced) before an older one
//   is deleted, and the next seq at open is above every record seen and every segment name. So the
//   newest file name is always a floor for the next seq. Records torn off a tail were handed out
//   too: the floor also clears one seq per 20 torn bytes (the smallest record), so none is reused.
// - Group commit: the write happens under the mutex, the fsync (fdatasync: the data and the size)
//   outside it, under a second mutex that only serialises fsyncs. A thread whose record was covered by
//   another thread's fsync returns without its own, so N concurrent appenders pay about one fsync.
// - Rotation off the appender's path: under a lock every append waits for, a rotation's disk work
//   (the sealed segment's fdatasync, creating the next one, two directory fsyncs, unlinks) stalled
//   the caller — the proxy's event loop — for as long as the disk took: ~1 ms on a quiet disk here,
//   a fdatasync p99 of 0.24 s behind a neighbour's writes (bench/README.md, "Disk work off the event
//   loop"). So
//   tidy() (the pipeline's sender, each tick) makes the next segment ahead: it reserves a name above
//   every seq the active segment can still hand out (segment_bytes / kHeader + 1 more: a record is
//   at least kHeader bytes), creates the file and syncs the directory outside the lock, and the
//   appender's rotation only switches descriptors. The sealed segment's fsync is owed, not done:
//   it joins the next sync_through (the interval fsync or an every_record append), which covers it
//   before durable_seq passes its records (a rotation with no spare ready syncs what is owed itself). A fully acknowledged sealed segment is forgotten under
//   the lock and its files unlinked by the next tidy() or ack(). The reservation is the invariant
//   that keeps recovery exact: no seq at or above the reserved name is handed out while that file
//   may exist, so a crash leaves every record below the next segment's name. Seqs jump at each such
//   rotation (gaps are allowed). Without tidy() (a Spool used alone) rotation works as before, inline.
// - Full: bytes counts segment files only; an append that would pass max_bytes throws before any seq
//   is taken. An active segment whose records are all acked is rotated (and so deleted) first, else a
//   spool with max_bytes < segment_bytes could fill with acknowledged data and never drain.
// - Failed write: the file is truncated back to its size before the write; if that fails too, the
//   segment is sealed at the next append. The seqs of a failed write are not reused (gaps are allowed:
//   seqs are strictly increasing, not dense).
// - Pending records are a bitset per segment (seq - first seq), not a set: no allocation per record.
// - Recovered payloads are held in memory until take_recovered(); bounded by max_bytes.
// - Admission (can_accept) is an atomic bool recomputed under the mutex whenever its inputs change
//   (bytes, the free-space estimate, the last outcome), so the request path pays one load and no
//   syscall. Free space comes from statvfs in refresh_space(), called from the pipeline's sender each
//   tick; appends subtract what they write, deletions add nothing until the next statvfs (the
//   estimate errs towards refusing). Measured before the fix: a full filesystem made appends fail
//   after the provider had answered, so calls were served and never billed; refusing up front is the
//   only place where nothing has been spent yet.
// - A failed fsync is not retried into a false success silently: it closes admission (the caller's
//   queue still holds those events in memory until Lago has them) and counts as a failure.
// - Not chosen: mmap (a torn page after a crash is harder to reason about than a short write),
//   O_DIRECT (alignment, and the page cache is what makes FsyncPolicy::never survive a process crash),
//   one global ack log (its compaction would be a second rewrite path to get right).
#include "llmbill/spool.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <system_error>
#include <utility>

#include "spool_format.hpp"

namespace llmbill {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {
constexpr std::size_t kMaxWarnings = 1000;
}  // namespace

using namespace spool_detail;  // the on-disk format and file helpers (spool_format.hpp)

struct Spool::Impl {
  struct Segment {
    std::uint64_t bytes = 0;
    std::vector<bool> pending;  // index: seq - first seq
    std::uint64_t pending_count = 0;
    FdPtr ack_fd;  // opened at the first ack
    bool ack_dirty = false;
  };

  SpoolOptions opt;
  Fd lock_fd;  // declared first: released last
  Fd dir_fd;
  std::mutex sync_mu;  // serialises fsyncs; taken before mu, never while holding it
  mutable std::mutex mu;
  std::map<std::uint64_t, Segment> segments;  // by first seq; the last one is active
  FdPtr active;
  bool seal_active = false;  // a failed write left garbage that could not be cut off
  // Rotation away from the appender (design notes above): the next segment's reserved name (0:
  // none; no seq at or above it is handed out while it is set), its file once made, sealed
  // segments whose fdatasync is still owed, and forgotten segments whose files are to be unlinked.
  std::uint64_t spare_first = 0;
  FdPtr spare;
  std::vector<FdPtr> unsynced;
  std::vector<std::uint64_t> doomed;
  std::uint64_t next_seq = 1;
  std::uint64_t written_seq = 0;  // highest seq handed to write()
  std::uint64_t durable_seq = 0;  // highest seq covered by an fsync
  Clock::time_point last_sync = Clock::now();
  std::uint64_t bytes = 0, pending = 0, torn = 0;
  std::vector<SpoolRecord> recovered;
  std::vector<std::string> warnings;
  // Admission (can_accept), all under mu except the atomic.
  std::uint64_t reserve = 0;             // opt.reserve_bytes capped at max_bytes / 4
  std::uint64_t fs_free = UINT64_MAX;    // statvfs figure less appends since; MAX until the first check
  bool last_failed = false;              // the last append (or fsync) failed
  std::uint64_t failed_appends = 0;
  std::string last_error;
  std::atomic<bool> accepting{true};

  explicit Impl(SpoolOptions o);
  void warn(std::string text);
  int fault(SpoolOp op) const { return opt.inject_fault ? opt.inject_fault(op) : 0; }
  bool room_locked() const {  // no overflow: a spool reopened with a lower max_bytes may be past it
    return bytes <= opt.max_bytes && opt.max_bytes - bytes >= reserve && fs_free >= reserve;
  }
  void update_accepting_locked() { accepting.store(!last_failed && room_locked(), std::memory_order_release); }
  void fail_locked(const std::string& what);
  void append_locked(const std::string_view* payloads, std::size_t n, std::uint64_t need,
                     std::vector<std::uint64_t>& seqs);
  void read_free_space();
  fs::path log_path(std::uint64_t first) const { return opt.dir / seg_name(first, "log"); }
  fs::path ack_path(std::uint64_t first) const { return opt.dir / seg_name(first, "ack"); }
  void fsync_dir();
  void recover_segment(std::uint64_t first, std::uint64_t limit, std::uint64_t& seq_floor);
  void read_acks(std::uint64_t first, std::vector<bool>& acked);
  void open_segment_locked(std::uint64_t first);
  void activate_locked(std::uint64_t first, FdPtr log);
  void forget_segment_locked(std::map<std::uint64_t, Segment>::iterator it);
  bool unlink_segment(std::uint64_t first, std::vector<std::string>& failures) const;
  bool delete_segment_locked(std::map<std::uint64_t, Segment>::iterator it);
  void rotate_locked(std::size_t n = 0);
  void make_spare();
  void remove_doomed();
  // Drops from `unsynced` the descriptors a sync just covered (by identity: an inline rotation may
  // have cleared the list meanwhile).
  void forget_synced_locked(const std::vector<FdPtr>& synced) {
    std::erase_if(unsynced, [&](const FdPtr& fd) {
      return std::find(synced.begin(), synced.end(), fd) != synced.end();
    });
  }
  std::vector<std::uint64_t> append(const std::string_view* payloads, std::size_t n);
  void sync_through(std::uint64_t target);
  void sync_all();
};

void Spool::Impl::warn(std::string text) {
  if (warnings.size() < kMaxWarnings) warnings.push_back(std::move(text));
}

void Spool::Impl::fail_locked(const std::string& what) {
  last_failed = true;
  ++failed_appends;
  last_error = what;
  update_accepting_locked();
}

// statvfs of the spool directory into fs_free (available to unprivileged users: f_bavail).
void Spool::Impl::read_free_space() {
  struct statvfs st {};
  if (::statvfs(opt.dir.c_str(), &st) != 0) return;  // keep the previous figure
  std::uint64_t free = static_cast<std::uint64_t>(st.f_bavail) * static_cast<std::uint64_t>(st.f_frsize);
  std::lock_guard lock(mu);
  fs_free = free;
  if (last_failed && room_locked()) {
    last_failed = false;
    last_error.clear();
  }
  update_accepting_locked();
}

void Spool::Impl::fsync_dir() {
  if (::fsync(dir_fd.get()) != 0) throw_io("fsync directory", opt.dir, errno);
}

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

void Spool::Impl::open_segment_locked(std::uint64_t first) {
  activate_locked(first, std::make_shared<Fd>(open_file(log_path(first), O_WRONLY | O_CREAT | O_EXCL | O_APPEND,
                                                       "create")));
  fsync_dir();  // after activating: a failed directory fsync fails this append, the next ones go on
}

void Spool::Impl::activate_locked(std::uint64_t first, FdPtr log) {
  active = std::move(log);
  segments.emplace(first, Segment{});
  next_seq = std::max(next_seq, first);
  seal_active = false;
}

// Drops a fully acknowledged segment from the books; its files stay until unlinked.
void Spool::Impl::forget_segment_locked(std::map<std::uint64_t, Segment>::iterator it) {
  bytes -= it->second.bytes;
  pending -= it->second.pending_count;
  segments.erase(it);
  update_accepting_locked();
}

// Unlinks a segment's log, then its acks (see the notes); a failure is appended to `failures`.
// False if the log stays: then the acks stay too, and the next open finds it whole.
bool Spool::Impl::unlink_segment(std::uint64_t first, std::vector<std::string>& failures) const {
  if (::unlink(log_path(first).c_str()) != 0 && errno != ENOENT) {
    failures.push_back("cannot delete " + log_path(first).string() + ": " + errno_text(errno));
    return false;
  }
  if (::unlink(ack_path(first).c_str()) != 0 && errno != ENOENT) {
    failures.push_back("cannot delete " + ack_path(first).string() + ": " + errno_text(errno));
  }
  return true;
}

// Unlinks a sealed segment and its acks now; the caller fsyncs the directory. False if nothing changed.
bool Spool::Impl::delete_segment_locked(std::map<std::uint64_t, Segment>::iterator it) {
  std::vector<std::string> failures;
  const bool gone = unlink_segment(it->first, failures);
  for (auto& f : failures) warn(std::move(f));
  if (gone) forget_segment_locked(it);
  return gone;
}

// Seals the active segment and starts the next: the spare tidy() made, else one made here. n: the
// records about to be appended (a batch that would reach a reservation being made passes over it).
void Spool::Impl::rotate_locked(std::size_t n) {
  const bool owed = opt.fsync != FsyncPolicy::never && written_seq > durable_seq;
  auto sealed = std::prev(segments.end());
  if (spare) {
    if (owed) unsynced.push_back(active);  // the next sync_through covers it
    activate_locked(spare_first, std::move(spare));
    spare_first = 0;
    if (sealed->second.pending_count == 0) {
      doomed.push_back(sealed->first);
      forget_segment_locked(sealed);
    }
    return;
  }
  // No spare: the disk work here, as a Spool nobody tidies always did it (with any fsync still owed
  // by an earlier rotation onto a spare, so that durable_seq may pass every record written).
  if (owed) {
    int e = fault(SpoolOp::sync);
    for (const FdPtr& fd : unsynced) {
      if (e == 0) e = datasync(fd->get());
    }
    if (e == 0) e = datasync(active->get());
    if (e != 0) throw_io("fsync", log_path(sealed->first), e);
    unsynced.clear();
    durable_seq = written_seq;
    last_sync = Clock::now();
  }
  std::uint64_t first = next_seq;
  if (spare_first != 0 && next_seq + n > spare_first) {
    first = spare_first + 1;  // its maker finds the reservation gone and deletes what it made
    spare_first = 0;
  }
  open_segment_locked(first);
  if (sealed->second.pending_count == 0 && delete_segment_locked(sealed)) fsync_dir();
}

// The next segment, made ahead outside the lock once the active one is half full (tidy()).
void Spool::Impl::make_spare() {
  std::uint64_t first = 0;
  {
    std::lock_guard lock(mu);
    if (spare_first != 0 || segments.rbegin()->second.bytes < opt.segment_bytes / 2) return;
    first = next_seq + opt.segment_bytes / kHeader + 1;
    spare_first = first;
  }
  FdPtr log;
  std::string failure;
  try {
    log = std::make_shared<Fd>(open_file(log_path(first), O_WRONLY | O_CREAT | O_EXCL | O_APPEND, "create"));
    fsync_dir();
  } catch (const Error& e) {
    failure = e.what();
  }
  std::lock_guard lock(mu);
  if (failure.empty() && spare_first == first) {
    spare = std::move(log);
    return;
  }
  if (!failure.empty()) warn(failure + " (the next rotation makes its segment inline)");
  if (spare_first == first) spare_first = 0;
  doomed.push_back(first);  // whatever was made of it
}

// Unlinks forgotten segments' files (log first, then acks: see the notes) and syncs the directory.
void Spool::Impl::remove_doomed() {
  std::vector<std::uint64_t> firsts;
  {
    std::lock_guard lock(mu);
    firsts.swap(doomed);
  }
  if (firsts.empty()) return;
  std::vector<std::string> failures;
  for (std::uint64_t first : firsts) unlink_segment(first, failures);  // one kept whole: the next open deletes it
  if (::fsync(dir_fd.get()) != 0) failures.push_back(opt.dir.string() + ": fsync directory: " + errno_text(errno));
  if (failures.empty()) return;
  std::lock_guard lock(mu);
  for (auto& f : failures) warn(std::move(f));
}

std::vector<std::uint64_t> Spool::Impl::append(const std::string_view* payloads, std::size_t n) {
  if (n == 0) return {};
  std::uint64_t need = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (payloads[i].size() > UINT32_MAX) throw Error("spool: a payload is larger than 4 GiB");
    need += kHeader + payloads[i].size();
  }
  std::vector<std::uint64_t> seqs(n);
  {
    std::lock_guard lock(mu);
    try {
      append_locked(payloads, n, need, seqs);
    } catch (const SpoolFullError&) {
      ++failed_appends;  // admission follows the byte count: acks that free room reopen it
      throw;
    } catch (const Error& e) {
      fail_locked(e.what());
      throw;
    }
  }
  // Under `interval` an append never waits on the disk: the owner's maybe_sync() (the pipeline's
  // sender thread) does the syncing, so callers keep microsecond appends (measured in bench/).
  if (opt.fsync == FsyncPolicy::every_record) sync_through(seqs.back());
  return seqs;
}

void Spool::Impl::append_locked(const std::string_view* payloads, std::size_t n, std::uint64_t need,
                                std::vector<std::uint64_t>& seqs) {
  const Segment* act = &segments.rbegin()->second;
  if (bytes + need > opt.max_bytes && act->bytes > 0 && act->pending_count == 0) {
    rotate_locked();  // frees the acknowledged active segment
    act = &segments.rbegin()->second;
  }
  if (bytes + need > opt.max_bytes) {
    throw SpoolFullError("spool: full (" + std::to_string(bytes) + " of " + std::to_string(opt.max_bytes) +
                         " bytes used, " + std::to_string(need) + " more needed)");
  }
  if (seal_active || (act->bytes > 0 && act->bytes + need > opt.segment_bytes) ||
      (spare_first != 0 && next_seq + n > spare_first)) {
    rotate_locked(n);
  }
  auto seg_it = std::prev(segments.end());
  Segment& seg = seg_it->second;

  std::string buf;
  buf.reserve(need);
  for (std::size_t i = 0; i < n; ++i) {
    seqs[i] = next_seq + i;
    encode_record(buf, seqs[i], payloads[i]);
  }
  next_seq += n;  // never reused, even if the write fails
  int e = fault(SpoolOp::write);
  if (e == 0) e = write_all(active->get(), buf.data(), buf.size());
  if (e != 0) {
    if (::ftruncate(active->get(), static_cast<off_t>(seg.bytes)) != 0) seal_active = true;
    throw_io("write", log_path(seg_it->first), e);
  }
  seg.bytes += need;
  bytes += need;
  fs_free = fs_free > need ? fs_free - need : 0;
  seg.pending.resize(seqs.back() - seg_it->first + 1, false);
  for (std::uint64_t s : seqs) seg.pending[s - seg_it->first] = true;
  seg.pending_count += n;
  pending += n;
  written_seq = seqs.back();
  last_failed = false;
  last_error.clear();
  update_accepting_locked();
}

// Makes every seq <= target durable; returns at once if another thread's fsync already did.
void Spool::Impl::sync_through(std::uint64_t target) {
  std::lock_guard sync_lock(sync_mu);
  std::vector<FdPtr> fds;
  std::uint64_t upto = 0;
  std::uint64_t first = 0;
  {
    std::lock_guard lock(mu);
    if (durable_seq >= target) return;
    fds = unsynced;  // sealed segments whose fsync rotation left owed (older ones are synced)
    fds.push_back(active);
    upto = written_seq;
    first = segments.rbegin()->first;
  }
  int e = fault(SpoolOp::sync);
  for (const FdPtr& fd : fds) {
    if (e == 0) e = datasync(fd->get());
  }
  std::lock_guard lock(mu);
  if (e != 0) {
    std::string what = "spool: fsync " + log_path(first).string() + ": " + errno_text(e);
    fail_locked(what);
    throw Error(what);
  }
  forget_synced_locked(fds);
  durable_seq = std::max(durable_seq, upto);
  last_sync = Clock::now();
}

void Spool::Impl::sync_all() {
  std::lock_guard sync_lock(sync_mu);
  std::vector<FdPtr> fds;
  std::uint64_t upto = 0;
  {
    std::lock_guard lock(mu);
    fds = unsynced;
    fds.push_back(active);
    upto = written_seq;
    for (auto& [first, seg] : segments) {
      if (seg.ack_dirty && seg.ack_fd) fds.push_back(seg.ack_fd);
      seg.ack_dirty = false;
    }
  }
  int failed = fault(SpoolOp::sync);
  for (const FdPtr& fd : fds) {
    if (int e = datasync(fd->get())) failed = e;
  }
  std::lock_guard lock(mu);
  if (failed != 0) {
    std::string what = "spool: fsync " + opt.dir.string() + ": " + errno_text(failed);
    fail_locked(what);
    throw Error(what);
  }
  forget_synced_locked(fds);
  durable_seq = std::max(durable_seq, upto);
  last_sync = Clock::now();
}

Spool::Spool(SpoolOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

Spool::~Spool() {
  try {
    impl_->sync_all();
  } catch (const std::exception&) {
    // Nothing to report to from a destructor; the records are in the page cache or already synced.
  }
  try {
    {
      std::lock_guard lock(impl_->mu);
      if (impl_->spare) impl_->doomed.push_back(impl_->spare_first);  // never written to
    }
    impl_->remove_doomed();
  } catch (const std::exception&) {
    // Left on disk: the next open deletes empty and fully acknowledged segments.
  }
}

std::uint64_t Spool::append(std::string_view payload) { return impl_->append(&payload, 1).front(); }

std::vector<std::uint64_t> Spool::append_batch(const std::vector<std::string>& payloads) {
  std::vector<std::string_view> views(payloads.begin(), payloads.end());
  return impl_->append(views.data(), views.size());
}

// Three steps so that no file is made or removed under the lock appends wait for: mark the acks and
// forget fully acknowledged segments (locked); unlink their files and open missing ack files
// (unlocked); attach those and take the writes (locked, only when a file was opened); then write.
void Spool::ack(const std::vector<std::uint64_t>& seqs) {
  Impl& im = *impl_;
  std::vector<std::pair<FdPtr, std::string>> writes;
  std::map<std::uint64_t, std::string> unopened;  // by segment: entries whose ack file is not open yet
  {
    std::lock_guard lock(im.mu);
    auto& segs = im.segments;
    std::map<std::uint64_t, std::string> entries;  // by segment
    for (std::uint64_t seq : seqs) {
      auto it = segs.upper_bound(seq);
      if (it == segs.begin()) continue;
      --it;
      Impl::Segment& seg = it->second;
      std::uint64_t idx = seq - it->first;
      if (idx >= seg.pending.size() || !seg.pending[idx]) continue;
      seg.pending[idx] = false;
      --seg.pending_count;
      --im.pending;
      encode_ack(entries[it->first], seq);
    }
    const std::uint64_t active_first = segs.rbegin()->first;
    for (auto& [first, data] : entries) {
      auto it = segs.find(first);
      if (first != active_first && it->second.pending_count == 0) {
        im.doomed.push_back(first);
        im.forget_segment_locked(it);
        continue;
      }
      Impl::Segment& seg = it->second;
      if (!seg.ack_fd) {
        unopened.emplace(first, std::move(data));
        continue;
      }
      seg.ack_dirty = true;
      writes.emplace_back(seg.ack_fd, std::move(data));
    }
    // A fully acknowledged active segment still counts against max_bytes until it is rotated away.
    // When that keeps admission closed, rotate now: otherwise, with callers refused, no append would
    // ever come to do it and the spool would stay "full" of delivered events.
    const Impl::Segment& act = segs.rbegin()->second;
    if (act.bytes > 0 && act.pending_count == 0 && !im.room_locked()) {
      try {
        im.rotate_locked();
      } catch (const Error& e) {
        im.warn(e.what());
      }
      im.update_accepting_locked();
    }
  }
  im.remove_doomed();
  std::vector<std::string> failures;
  if (!unopened.empty()) {
    std::vector<std::pair<std::uint64_t, FdPtr>> opened;
    for (const auto& entry : unopened) {
      try {
        opened.emplace_back(entry.first, std::make_shared<Fd>(open_file(im.ack_path(entry.first),
                                                                        O_WRONLY | O_CREAT | O_APPEND, "open")));
      } catch (const Error& e) {
        failures.push_back(e.what());
      }
    }
    std::lock_guard lock(im.mu);
    for (auto& [first, fd] : opened) {
      auto it = im.segments.find(first);
      if (it == im.segments.end()) continue;  // forgotten meanwhile: its files go with it
      Impl::Segment& seg = it->second;
      if (!seg.ack_fd) seg.ack_fd = fd;  // else another ack() opened it first: append through theirs
      seg.ack_dirty = true;
      writes.emplace_back(seg.ack_fd, std::move(unopened[first]));
    }
  }
  // Outside the lock: appends need not wait for ack writes. Entries are independent, so the order
  // of concurrent ack() calls in a file does not matter.
  for (auto& [fd, data] : writes) {
    if (int e = write_all(fd->get(), data.data(), data.size())) failures.push_back("ack write: " + errno_text(e));
  }
  if (!failures.empty()) {
    std::lock_guard lock(im.mu);
    for (auto& f : failures) im.warn(im.opt.dir.string() + ": " + f);
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

void Spool::sync() { impl_->sync_all(); }

void Spool::tidy() noexcept {
  try {
    impl_->remove_doomed();
    impl_->make_spare();
    impl_->remove_doomed();  // a spare passed over while it was being made
  } catch (const std::exception&) {
    // Only allocation can throw here; the next tick tries again, and rotation works without a spare.
  }
}

void Spool::maybe_sync() {
  if (impl_->opt.fsync != FsyncPolicy::interval) return;
  std::uint64_t target = 0;
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->written_seq <= impl_->durable_seq || Clock::now() - impl_->last_sync < impl_->opt.fsync_interval) {
      return;
    }
    target = impl_->written_seq;
  }
  impl_->sync_through(target);
}

bool Spool::can_accept() const noexcept { return impl_->accepting.load(std::memory_order_acquire); }

void Spool::refresh_space() noexcept {
  try {
    impl_->read_free_space();
  } catch (const std::exception&) {
    // Only allocation can fail here; the previous figure stands until the next tick.
  }
}

SpoolStats Spool::stats() const {
  std::lock_guard lock(impl_->mu);
  const Impl& i = *impl_;
  return {i.bytes, i.pending, i.torn, i.segments.size(), i.fs_free, i.failed_appends,
          i.accepting.load(std::memory_order_relaxed), i.last_failed ? i.last_error : std::string()};
}

std::vector<std::string> Spool::warnings() const {
  std::lock_guard lock(impl_->mu);
  return impl_->warnings;
}

}  // namespace llmbill
