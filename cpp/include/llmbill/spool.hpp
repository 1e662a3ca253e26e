// The durable on-disk spool: every billing event is appended here before enqueue returns, and stays
// until the sender acknowledges it (delivered or dead-lettered). A process killed at any point loses
// nothing that append() returned for (subject to the fsync policy), and resends are safe because each
// payload carries its own fixed transaction_id.
//
// Layout in `dir`: segment files `seg-<first seq, 20 digits>.log` holding records
//   [u32 magic][u32 payload length][u32 crc32 of (seq, payload)][u64 seq][payload bytes]
// (little-endian), and beside each an ack file `seg-<...>.ack` holding acknowledged seqs
// ([u64 seq][u32 crc32] each). A sealed segment whose records are all acknowledged is deleted with its
// ack file. Acks need no fsync: a lost ack only causes a resend, which Lago's dedup absorbs.
//
// Recovery (constructor): reads every segment; records not acknowledged are returned by
// take_recovered() in seq order. A torn or corrupt record (short read, bad magic, bad crc) is skipped
// with a warning in warnings(), never a crash. (Refined: the scan then resynchronises on the next
// record whose magic, crc and seq check out instead of ending the segment, so one flipped bit cannot
// hide every later event of the segment; a torn tail is simply the case where none follows.) New
// appends go to a fresh segment. An ack entry whose crc fails is ignored; a torn ack tail is cut off.
//
// One Spool per directory: the constructor takes an exclusive flock on `dir/LOCK` and throws Error if
// another Spool (in this or another process) holds it. (Refined: two writers would corrupt both.)
//
// Disk use is bounded by max_bytes: an append that would pass it throws SpoolFullError and writes
// nothing.
//
// Admission (refined, issue 13): can_accept() tells a caller *before* it does billable work whether
// an event could be made durable now: at least the reserve (reserve_bytes, at most a quarter of
// max_bytes) is left both under max_bytes and free on the filesystem, and the last append did not
// fail. It is one atomic load. The filesystem's free space is read (statvfs) by refresh_space(), which
// the owner calls periodically (the pipeline's sender, every tick); in between, appends subtract what
// they write from that figure. The reserve is what calls admitted but not yet settled will append: an
// append itself may use it, only max_bytes is a hard limit. A failed append closes admission until an
// append succeeds or refresh_space() finds the reserve free again.
//
// Files are created 0600: events carry customer ids and amounts.
//
// Thread safety: all methods may be called concurrently (one internal mutex; fsync happens outside it
// where the policy allows batching: concurrent appenders share one fsync).
//
// Failure modes: I/O errors throw Error (an append that throws may still have reached the file; it
// is then resent at recovery, which the fixed transaction_id makes harmless). A failed ack write is
// recorded in warnings() instead: its only cost is a resend after a restart. A failed fsync throws
// and also closes admission (see can_accept()) until a later append or space check succeeds.
//
//   Spool spool({.dir = "/var/lib/llmbill/spool", .fsync = FsyncPolicy::interval});
//   for (auto& r : spool.take_recovered()) resend(r.seq, r.payload);
//   std::uint64_t seq = spool.append(event_json);   // durable (per policy) when it returns
//   ...delivered...  spool.ack({seq});
#pragma once
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "llmbill/errors.hpp"

namespace llmbill {

class SpoolFullError : public Error {
 public:
  using Error::Error;
};

enum class FsyncPolicy : std::uint8_t {
  every_record,  // fsync before append() returns: survives power loss
  interval,      // fsync at most every fsync_interval, by whoever calls maybe_sync() (the pipeline's
                 // sender does, each tick); append() itself never waits on the disk (with tidy()
                 // called too, not even to rotate)
  never,         // leave it to the OS: survives a process crash, not power loss
};

// The disk operations a fault can be injected into (SpoolOptions::inject_fault).
enum class SpoolOp : std::uint8_t { write, sync };

struct SpoolOptions {
  std::filesystem::path dir;
  FsyncPolicy fsync = FsyncPolicy::interval;
  std::chrono::milliseconds fsync_interval{20};
  std::uint64_t max_bytes = 1ull << 30;      // total of segment files
  std::uint64_t segment_bytes = 8ull << 20;  // seal and start a new segment past this size
  std::uint64_t reserve_bytes = 4ull << 20;  // kept free for admitted calls (capped at max_bytes / 4)
  // Test seam: when set, called before each segment write and each fsync; a non-zero errno makes
  // that operation fail as if the system call had returned it (ENOSPC, EIO). Never set in production.
  std::function<int(SpoolOp)> inject_fault;
};

struct SpoolRecord {
  std::uint64_t seq = 0;
  std::string payload;
};

struct SpoolStats {
  std::uint64_t bytes = 0;            // segment bytes on disk
  std::uint64_t pending_records = 0;  // appended (or recovered) and not acknowledged
  std::uint64_t torn_records = 0;     // skipped at recovery
  std::uint64_t segments = 0;
  std::uint64_t free_bytes = 0;       // free on the filesystem, as of the last space check, less appends since
  std::uint64_t failed_appends = 0;   // appends (and fsyncs) that failed since open
  bool accepting = true;              // can_accept()
  std::string last_error;             // of the last failed append or fsync while admission is closed
};

class Spool {
 public:
  explicit Spool(SpoolOptions options);  // creates dir; recovers; throws Error on I/O failure
  ~Spool();                              // syncs and closes
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  // Appends one record and returns its seq (strictly increasing, also across restarts).
  std::uint64_t append(std::string_view payload);
  // Appends several records with one write and (per policy) one fsync; returns their seqs.
  std::vector<std::uint64_t> append_batch(const std::vector<std::string>& payloads);
  // Marks records delivered or dead-lettered; unknown or repeated seqs are ignored.
  void ack(const std::vector<std::uint64_t>& seqs);
  // Records recovered at open and not yet acknowledged, in seq order (for the sender to resend).
  std::vector<SpoolRecord> take_recovered();
  void sync();        // fsync the active segment and ack files now, whatever the policy
  void maybe_sync();  // fsync if the interval policy says it is due
  // Disk work kept off append()'s path (the pipeline's sender calls it each tick): makes the next
  // segment ahead once the active one is half full, so that rotation only switches files, and
  // unlinks the files of segments rotation found fully acknowledged. Without it rotation does that
  // work itself, as append() reaches it. Never throws: a failure is a warning and rotation inline.
  void tidy() noexcept;
  // Whether a new billable call's events can be made durable now (see Admission above). Lock-free.
  bool can_accept() const noexcept;
  // Re-reads the filesystem's free space (one statvfs) and re-opens admission if the reserve is free
  // again after a failed append. Never throws: a failed statvfs keeps the previous figure.
  void refresh_space() noexcept;
  SpoolStats stats() const;
  std::vector<std::string> warnings() const;  // recovery warnings (torn records and the like) and
                                              // failed ack writes; the first 1000 are kept

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace llmbill
