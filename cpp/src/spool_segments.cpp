// A spool's segments over their life: made (inline, or ahead by tidy()), rotated, acknowledged,
// forgotten and unlinked. Why it is done this way: the design notes in spool.cpp.
#include "spool_impl.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <iterator>
#include <utility>

namespace llmbill {
using namespace spool_detail;  // the on-disk format and file helpers

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
    last_sync = SpoolClock::now();
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

void Spool::tidy() noexcept {
  try {
    impl_->remove_doomed();
    impl_->make_spare();
    impl_->remove_doomed();  // a spare passed over while it was being made
  } catch (const std::exception&) {
    // Only allocation can throw here; the next tick tries again, and rotation works without a spare.
  }
}

}  // namespace llmbill
