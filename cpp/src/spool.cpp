// Design notes — the spool (contract in llmbill/spool.hpp)
//
// The Spool is three files around its state (spool_impl.hpp): this one (appends, group commit, the
// public calls), spool_recovery.cpp (opening a directory) and spool_segments.cpp (rotation, acks,
// deleting segments); these notes cover all three. The on-disk format (record and ack entry
// encode/decode with their crc, segment and ack file names) and the fd/open/write/fdatasync/read
// helpers are in spool_format.hpp/.cpp (internal, llmbill::spool_detail).
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
//   before durable_seq passes its records (a rotation with no spare ready syncs what is owed
//   itself). A fully acknowledged sealed segment is forgotten under the lock and its files
//   unlinked by the next tidy() or ack(). The reservation is the invariant
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
#include "spool_impl.hpp"

#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

namespace llmbill {
using namespace spool_detail;  // the on-disk format and file helpers (spool_format.hpp)

namespace {
constexpr std::size_t kMaxWarnings = 1000;
}  // namespace

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
  last_sync = SpoolClock::now();
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
  last_sync = SpoolClock::now();
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

void Spool::sync() { impl_->sync_all(); }

void Spool::maybe_sync() {
  if (impl_->opt.fsync != FsyncPolicy::interval) return;
  std::uint64_t target = 0;
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->written_seq <= impl_->durable_seq || SpoolClock::now() - impl_->last_sync < impl_->opt.fsync_interval) {
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
