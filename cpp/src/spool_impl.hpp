// Internal: the Spool's state, shared by the three files that implement it — spool.cpp (appends,
// group commit, the public calls; the design notes), spool_recovery.cpp (opening a directory: the
// scan, acks, seq floor) and spool_segments.cpp (rotation, acks, deleting segments). The contract is
// llmbill/spool.hpp; the on-disk format spool_format.hpp.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "llmbill/spool.hpp"
#include "spool_format.hpp"

namespace llmbill {

using SpoolClock = std::chrono::steady_clock;

struct Spool::Impl {
  struct Segment {
    std::uint64_t bytes = 0;
    std::vector<bool> pending;  // index: seq - first seq
    std::uint64_t pending_count = 0;
    spool_detail::FdPtr ack_fd;  // opened at the first ack
    bool ack_dirty = false;
  };

  SpoolOptions opt;
  spool_detail::Fd lock_fd;  // declared first: released last
  spool_detail::Fd dir_fd;
  std::mutex sync_mu;  // serialises fsyncs; taken before mu, never while holding it
  mutable std::mutex mu;
  std::map<std::uint64_t, Segment> segments;  // by first seq; the last one is active
  spool_detail::FdPtr active;
  bool seal_active = false;  // a failed write left garbage that could not be cut off
  // Rotation away from the appender (design notes above): the next segment's reserved name (0:
  // none; no seq at or above it is handed out while it is set), its file once made, sealed
  // segments whose fdatasync is still owed, and forgotten segments whose files are to be unlinked.
  std::uint64_t spare_first = 0;
  spool_detail::FdPtr spare;
  std::vector<spool_detail::FdPtr> unsynced;
  std::vector<std::uint64_t> doomed;
  std::uint64_t next_seq = 1;
  std::uint64_t written_seq = 0;  // highest seq handed to write()
  std::uint64_t durable_seq = 0;  // highest seq covered by an fsync
  SpoolClock::time_point last_sync = SpoolClock::now();
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
  std::filesystem::path log_path(std::uint64_t first) const { return opt.dir / spool_detail::seg_name(first, "log"); }
  std::filesystem::path ack_path(std::uint64_t first) const { return opt.dir / spool_detail::seg_name(first, "ack"); }
  void fsync_dir();
  void recover_segment(std::uint64_t first, std::uint64_t limit, std::uint64_t& seq_floor);
  void read_acks(std::uint64_t first, std::vector<bool>& acked);
  void open_segment_locked(std::uint64_t first);
  void activate_locked(std::uint64_t first, spool_detail::FdPtr log);
  void forget_segment_locked(std::map<std::uint64_t, Segment>::iterator it);
  bool unlink_segment(std::uint64_t first, std::vector<std::string>& failures) const;
  bool delete_segment_locked(std::map<std::uint64_t, Segment>::iterator it);
  void rotate_locked(std::size_t n = 0);
  void make_spare();
  void remove_doomed();
  // Drops from `unsynced` the descriptors a sync just covered (by identity: an inline rotation may
  // have cleared the list meanwhile).
  void forget_synced_locked(const std::vector<spool_detail::FdPtr>& synced) {
    std::erase_if(unsynced, [&](const spool_detail::FdPtr& fd) {
      return std::find(synced.begin(), synced.end(), fd) != synced.end();
    });
  }
  std::vector<std::uint64_t> append(const std::string_view* payloads, std::size_t n);
  void sync_through(std::uint64_t target);
  void sync_all();
};

}  // namespace llmbill
