// Dead letters: events Lago refused for good (a 422 other than value_already_exist, a 400), kept so an
// operator can inspect, fix and resend them. An event is acknowledged in the spool only after it is
// stored here, so nothing is lost between the two.
//
// Storage: one JSON object per line, {"id","event_json","reason","reply","at"}, in `file`, mode 0600
// (an older file with wider permissions is narrowed at the next add).
// add() appends a line and fsyncs before returning — or, with sync = false, leaves the fsync to the next
// sync_written() (the line is written, so a killed process keeps it; power loss may not, as with the
// spool's interval policy); remove() rewrites the file (temp file, fsync,
// rename, directory fsync), so a crash leaves either the old or the new file. A torn last line (a crash
// in the middle of add) and any other unreadable line are skipped, never a crash; the next add starts
// on a fresh line. The file is read on every query, so several processes (the proxy and the CLI) see
// each other's changes; an flock on `<file>.lock` orders writers across processes.
//
// Ids: adding an id already present keeps both lines, but queries see only the newest entry per id
// (list() in order of first appearance), and remove() drops every line with that id. So a sender
// that dead-letters the same event twice after a restart shows it once.
//
// Thread safety: all methods may be called concurrently. Failure modes: I/O errors throw Error.
//
//   DeadLetterStore store("/var/lib/llmbill/deadletters.jsonl");
//   store.add({.id = "call-1:tokens", .event_json = ev, .reason = "422 timestamp invalid_format",
//              .reply = body, .at_unix = now});
//   for (const DeadLetter& d : store.list()) ...;
//   store.remove("call-1:tokens");  // after a successful resend
#pragma once
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "llmbill/errors.hpp"

namespace llmbill {

struct DeadLetter {
  std::string id;          // the event's transaction_id (or another stable key)
  std::string event_json;  // the event exactly as sent
  std::string reason;      // short classification, e.g. "422 validation_errors"
  std::string reply;       // Lago's reply body (or the transport error)
  double at_unix = 0;      // when it was dead-lettered, Unix seconds
};

class DeadLetterStore {
 public:
  explicit DeadLetterStore(std::filesystem::path file);  // creates the parent directory if needed

  void add(const DeadLetter& letter, bool sync = true);
  void sync_written();  // fsyncs what add(..., false) wrote since the last call; nothing to do: no I/O
  std::vector<DeadLetter> list() const;
  std::optional<DeadLetter> get(std::string_view id) const;
  // Drops every line with this id (only those added at or before `added_up_to`, Unix seconds, when
  // given: a replay removes the letter it read, never a newer one the same event became meanwhile).
  // True if a line was dropped.
  bool remove(std::string_view id, std::optional<double> added_up_to = std::nullopt);
  std::uint64_t count() const;
  std::optional<double> oldest_at() const;  // smallest at_unix, none if empty

 private:
  std::vector<DeadLetter> load() const;  // newest per id, in first-appearance order

  std::filesystem::path file_;
  std::filesystem::path lock_file_;
  mutable std::shared_mutex mu_;
  std::atomic<bool> unsynced_{false};  // add(..., false) wrote a line not fsynced yet
};

}  // namespace llmbill
