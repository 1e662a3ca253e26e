#include "llmbill/spool.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "temp_dir.hpp"

namespace fs = std::filesystem;
using llmbill::FsyncPolicy;
using llmbill::Spool;
using llmbill::SpoolFullError;
using llmbill::SpoolOp;
using llmbill::SpoolOptions;
using llmbill::SpoolRecord;

namespace {

using llmbill::testing::TempDir;

constexpr std::uint64_t kHeader = 20;  // bytes before each payload on disk

SpoolOptions options(const fs::path& dir, FsyncPolicy policy = FsyncPolicy::never) {
  SpoolOptions o;
  o.dir = dir;
  o.fsync = policy;
  return o;
}

std::vector<fs::path> files_with(const fs::path& dir, const std::string& ext) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ext) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The one segment that holds records (tests that write into a single segment).
fs::path only_nonempty_segment(const fs::path& dir) {
  std::vector<fs::path> found;
  for (const auto& p : files_with(dir, ".log")) {
    if (fs::file_size(p) > 0) found.push_back(p);
  }
  if (found.size() != 1) throw std::runtime_error("expected one non-empty segment");
  return found.front();
}

std::vector<std::uint64_t> seqs_of(const std::vector<SpoolRecord>& records) {
  std::vector<std::uint64_t> out;
  for (const auto& r : records) out.push_back(r.seq);
  return out;
}

void flip_byte(const fs::path& file, std::uint64_t offset) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x5A);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(&c, 1);
}

std::string payload(int i) { return "{\"transaction_id\":\"call-" + std::to_string(i) + "\"}"; }

// Opens a Spool on `o.dir` and checks that it recovers exactly `expected` (seq → payload), in order,
// with nothing torn and no warning.
void expect_recovered(const SpoolOptions& o, const std::map<std::uint64_t, std::string>& expected) {
  Spool spool(o);
  std::vector<SpoolRecord> got = spool.take_recovered();
  ASSERT_EQ(got.size(), expected.size());
  auto it = expected.begin();
  for (const SpoolRecord& r : got) {
    EXPECT_EQ(r.seq, it->first);
    EXPECT_EQ(r.payload, it->second);
    ++it;
  }
  EXPECT_EQ(spool.stats().torn_records, 0u);
  EXPECT_TRUE(spool.warnings().empty());
}

}  // namespace

TEST(Spool, AppendedRecordsAreRecoveredAfterReopen) {
  TempDir dir;
  std::vector<std::uint64_t> seqs;
  {
    Spool spool(options(dir.path()));
    for (int i = 0; i < 5; ++i) seqs.push_back(spool.append(payload(i)));
    EXPECT_TRUE(std::is_sorted(seqs.begin(), seqs.end()));
    EXPECT_EQ(spool.stats().pending_records, 5u);
    EXPECT_TRUE(spool.take_recovered().empty());
  }
  Spool spool(options(dir.path()));
  std::vector<SpoolRecord> got = spool.take_recovered();
  ASSERT_EQ(got.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(got[static_cast<std::size_t>(i)].seq, seqs[static_cast<std::size_t>(i)]);
    EXPECT_EQ(got[static_cast<std::size_t>(i)].payload, payload(i));
  }
  EXPECT_TRUE(spool.take_recovered().empty());  // taken once
  EXPECT_EQ(spool.stats().pending_records, 5u);
  EXPECT_EQ(spool.stats().torn_records, 0u);
  EXPECT_TRUE(spool.warnings().empty());
}

TEST(Spool, AckedRecordsAreNotRecovered) {
  TempDir dir;
  std::vector<std::uint64_t> seqs;
  {
    Spool spool(options(dir.path()));
    for (int i = 0; i < 6; ++i) seqs.push_back(spool.append(payload(i)));
    spool.ack({seqs[0], seqs[2], seqs[4], seqs[4], 999999});  // repeated and unknown seqs ignored
    EXPECT_EQ(spool.stats().pending_records, 3u);
  }
  {
    Spool spool(options(dir.path()));
    std::vector<SpoolRecord> got = spool.take_recovered();
    EXPECT_EQ(seqs_of(got), (std::vector<std::uint64_t>{seqs[1], seqs[3], seqs[5]}));
    spool.ack({seqs[1]});  // an ack of a recovered record lands in the old segment's ack file
  }
  {
    Spool spool(options(dir.path()));
    EXPECT_EQ(seqs_of(spool.take_recovered()), (std::vector<std::uint64_t>{seqs[3], seqs[5]}));
    spool.ack({seqs[3], seqs[5]});  // the old segment is sealed and now fully acked: deleted
    EXPECT_EQ(spool.stats().segments, 1u);
    EXPECT_EQ(spool.stats().bytes, 0u);
  }
  Spool spool(options(dir.path()));
  EXPECT_TRUE(spool.take_recovered().empty());
  EXPECT_EQ(files_with(dir.path(), ".log").size(), 1u);
  EXPECT_TRUE(files_with(dir.path(), ".ack").empty());
}

TEST(Spool, SeqKeepsIncreasingAcrossReopens) {
  TempDir dir;
  std::uint64_t last = 0;
  for (int round = 0; round < 4; ++round) {
    Spool spool(options(dir.path()));
    std::uint64_t a = spool.append("x");
    std::uint64_t b = spool.append("y");
    EXPECT_GT(a, last);
    EXPECT_GT(b, a);
    last = b;
    if (round % 2 == 0) spool.ack({a, b});  // fully acked: every old segment gets deleted
  }
}

TEST(Spool, TornLastRecordIsSkippedWithAWarning) {
  TempDir dir;
  std::vector<std::uint64_t> seqs;
  {
    Spool spool(options(dir.path()));
    for (int i = 0; i < 5; ++i) seqs.push_back(spool.append(payload(i)));
  }
  fs::path seg = only_nonempty_segment(dir.path());
  fs::resize_file(seg, fs::file_size(seg) - 3);

  Spool spool(options(dir.path()));
  std::vector<SpoolRecord> got = spool.take_recovered();
  EXPECT_EQ(seqs_of(got), (std::vector<std::uint64_t>(seqs.begin(), seqs.end() - 1)));
  EXPECT_EQ(got.back().payload, payload(3));
  EXPECT_EQ(spool.stats().torn_records, 1u);
  ASSERT_EQ(spool.warnings().size(), 1u);
  EXPECT_NE(spool.warnings()[0].find("torn"), std::string::npos);
  EXPECT_GT(spool.append("next"), seqs.back());  // the torn record's seq is not reused
}

TEST(Spool, HeaderOnlyTailIsSkipped) {
  TempDir dir;
  {
    Spool spool(options(dir.path()));
    spool.append("a");
    spool.append("bbbb");
  }
  fs::path seg = only_nonempty_segment(dir.path());
  fs::resize_file(seg, kHeader + 1 + kHeader);  // the second record's header without its payload
  Spool spool(options(dir.path()));
  EXPECT_EQ(spool.take_recovered().size(), 1u);
  EXPECT_EQ(spool.stats().torn_records, 1u);
}

TEST(Spool, CorruptRecordInTheMiddleIsSkippedAndLaterOnesRecovered) {
  TempDir dir;
  std::vector<std::uint64_t> seqs;
  {
    Spool spool(options(dir.path()));
    for (int i = 0; i < 5; ++i) seqs.push_back(spool.append(payload(i)));
  }
  fs::path seg = only_nonempty_segment(dir.path());
  std::uint64_t record = kHeader + payload(0).size();  // every payload here has the same length
  flip_byte(seg, 2 * record + kHeader + 3);            // a payload byte of the third record: bad crc

  Spool spool(options(dir.path()));
  EXPECT_EQ(seqs_of(spool.take_recovered()), (std::vector<std::uint64_t>{seqs[0], seqs[1], seqs[3], seqs[4]}));
  EXPECT_EQ(spool.stats().torn_records, 1u);
  ASSERT_EQ(spool.warnings().size(), 1u);
  EXPECT_NE(spool.warnings()[0].find("corrupt"), std::string::npos);
}

TEST(Spool, CorruptLengthResynchronisesOnTheNextRecord) {
  TempDir dir;
  std::vector<std::uint64_t> seqs;
  {
    Spool spool(options(dir.path()));
    for (int i = 0; i < 4; ++i) seqs.push_back(spool.append(payload(i)));
  }
  fs::path seg = only_nonempty_segment(dir.path());
  std::uint64_t record = kHeader + payload(0).size();
  flip_byte(seg, record + 4);  // the length field of the second record
  Spool spool(options(dir.path()));
  EXPECT_EQ(seqs_of(spool.take_recovered()), (std::vector<std::uint64_t>{seqs[0], seqs[2], seqs[3]}));
  EXPECT_EQ(spool.stats().torn_records, 1u);
}

TEST(Spool, TornAckEntryIsCutOffAndEarlierAcksKept) {
  TempDir dir;
  std::vector<std::uint64_t> seqs;
  {
    Spool spool(options(dir.path()));
    for (int i = 0; i < 4; ++i) seqs.push_back(spool.append(payload(i)));
    spool.ack({seqs[0]});
    spool.ack({seqs[1]});
  }
  std::vector<fs::path> acks = files_with(dir.path(), ".ack");
  ASSERT_EQ(acks.size(), 1u);
  fs::resize_file(acks[0], fs::file_size(acks[0]) - 5);  // the second ack is torn
  {
    Spool spool(options(dir.path()));
    EXPECT_EQ(seqs_of(spool.take_recovered()), (std::vector<std::uint64_t>{seqs[1], seqs[2], seqs[3]}));
    EXPECT_EQ(spool.warnings().size(), 1u);
    spool.ack({seqs[2]});  // appended after the cut: stays aligned
  }
  Spool spool(options(dir.path()));
  EXPECT_EQ(seqs_of(spool.take_recovered()), (std::vector<std::uint64_t>{seqs[1], seqs[3]}));
  EXPECT_TRUE(spool.warnings().empty());
}

TEST(Spool, FullSpoolThrowsAndWritesNothing) {
  TempDir dir;
  SpoolOptions o = options(dir.path());
  o.max_bytes = 3 * (kHeader + 10);
  Spool spool(o);
  std::uint64_t a = spool.append(std::string(10, 'a'));
  spool.append(std::string(10, 'b'));
  spool.append(std::string(10, 'c'));
  std::uint64_t bytes = spool.stats().bytes;
  EXPECT_EQ(bytes, o.max_bytes);
  EXPECT_THROW(spool.append("d"), SpoolFullError);
  EXPECT_THROW(spool.append_batch({"e", "f"}), SpoolFullError);
  EXPECT_THROW(spool.append(""), llmbill::Error);  // the root class catches it too
  EXPECT_EQ(spool.stats().bytes, bytes);
  EXPECT_EQ(spool.stats().pending_records, 3u);
  EXPECT_EQ(fs::file_size(only_nonempty_segment(dir.path())), bytes);

  // Acking frees the (all-acked) active segment; seqs skipped nothing while full.
  spool.ack({a, a + 1, a + 2});
  EXPECT_EQ(spool.append(std::string(10, 'g')), a + 3);
  EXPECT_EQ(spool.stats().bytes, kHeader + 10);
}

TEST(Spool, FullnessCountsRecoveredSegments) {
  TempDir dir;
  SpoolOptions o = options(dir.path());
  o.max_bytes = 2 * (kHeader + 4);
  {
    Spool spool(o);
    spool.append("aaaa");
    spool.append("bbbb");
  }
  Spool spool(o);
  EXPECT_EQ(spool.stats().bytes, o.max_bytes);
  EXPECT_THROW(spool.append("c"), SpoolFullError);
  std::vector<SpoolRecord> rec = spool.take_recovered();
  spool.ack(seqs_of(rec));  // the recovered segment is deleted
  EXPECT_EQ(spool.stats().bytes, 0u);
  EXPECT_NO_THROW(spool.append("c"));
}

TEST(Spool, RotatesSegmentsAndDeletesThemOnceAllAcked) {
  TempDir dir;
  SpoolOptions o = options(dir.path());
  o.segment_bytes = 3 * (kHeader + 8);  // three 8-byte records per segment
  std::vector<std::uint64_t> seqs;
  {
    Spool spool(o);
    for (int i = 0; i < 9; ++i) seqs.push_back(spool.append("12345678"));
    EXPECT_EQ(spool.stats().segments, 3u);
    EXPECT_EQ(files_with(dir.path(), ".log").size(), 3u);
    for (const auto& p : files_with(dir.path(), ".log")) EXPECT_EQ(fs::file_size(p), o.segment_bytes);

    spool.ack({seqs[0], seqs[1]});  // first segment partly acked: kept
    EXPECT_EQ(spool.stats().segments, 3u);
    spool.ack({seqs[2], seqs[3], seqs[4], seqs[5]});  // first two segments fully acked: deleted
    EXPECT_EQ(spool.stats().segments, 1u);
    EXPECT_EQ(files_with(dir.path(), ".log").size(), 1u);
    EXPECT_TRUE(files_with(dir.path(), ".ack").empty());
    EXPECT_EQ(spool.stats().bytes, o.segment_bytes);
    spool.ack({seqs[6], seqs[7], seqs[8]});  // the active segment stays until it is sealed
    EXPECT_EQ(spool.stats().segments, 1u);
    spool.append("next");  // rotation seals the all-acked segment and deletes it
    EXPECT_EQ(spool.stats().segments, 1u);
    EXPECT_EQ(spool.stats().bytes, kHeader + 4);
  }
  Spool spool(o);
  std::vector<SpoolRecord> got = spool.take_recovered();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].payload, "next");
}

TEST(Spool, AppendBatchWritesConsecutiveSeqsInOneSegment) {
  TempDir dir;
  SpoolOptions o = options(dir.path(), FsyncPolicy::every_record);
  o.segment_bytes = 64;  // smaller than the batch: a batch is never split across segments
  std::vector<std::string> batch;
  for (int i = 0; i < 10; ++i) batch.push_back(payload(i));
  std::vector<std::uint64_t> seqs;
  {
    Spool spool(o);
    EXPECT_TRUE(spool.append_batch({}).empty());
    std::uint64_t before = spool.append("first");
    seqs = spool.append_batch(batch);
    ASSERT_EQ(seqs.size(), batch.size());
    for (std::size_t i = 0; i < seqs.size(); ++i) EXPECT_EQ(seqs[i], before + 1 + i);
    EXPECT_EQ(spool.stats().pending_records, 11u);
    EXPECT_EQ(spool.stats().segments, 2u);
    spool.ack({before});
  }
  Spool spool(o);
  std::vector<SpoolRecord> got = spool.take_recovered();
  ASSERT_EQ(got.size(), batch.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].seq, seqs[i]);
    EXPECT_EQ(got[i].payload, batch[i]);
  }
}

TEST(Spool, BinaryPayloadsRoundTrip) {
  TempDir dir;
  std::string bin;
  for (int i = 0; i < 256; ++i) bin.push_back(static_cast<char>(i));
  bin += bin;  // includes the magic's bytes
  {
    Spool spool(options(dir.path()));
    spool.append(bin);
    spool.append("");
  }
  Spool spool(options(dir.path()));
  std::vector<SpoolRecord> got = spool.take_recovered();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].payload, bin);
  EXPECT_EQ(got[1].payload, "");
}

TEST(Spool, SecondSpoolOnTheSameDirectoryIsRefused) {
  TempDir dir;
  Spool spool(options(dir.path()));
  EXPECT_THROW(Spool(options(dir.path())), llmbill::Error);
}

TEST(Spool, OrphanAckFileIsRemoved) {
  TempDir dir;
  std::ofstream(dir.path() / "seg-00000000000000000007.ack") << "junk";
  Spool spool(options(dir.path()));
  EXPECT_TRUE(files_with(dir.path(), ".ack").empty());
}

TEST(Spool, SyncPoliciesAllRecover) {
  for (FsyncPolicy policy : {FsyncPolicy::every_record, FsyncPolicy::interval, FsyncPolicy::never}) {
    TempDir dir;
    SpoolOptions o = options(dir.path(), policy);
    o.fsync_interval = std::chrono::milliseconds(1);
    {
      Spool spool(o);
      for (int i = 0; i < 20; ++i) {
        spool.append(payload(i));
        if (i % 5 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
        spool.maybe_sync();
      }
      spool.ack({1});
      spool.sync();
    }
    Spool spool(o);
    EXPECT_EQ(spool.take_recovered().size(), 19u);
  }
}

TEST(Spool, ConcurrentAppendsAndAcksKeepSeqsUnique) {
  TempDir dir;
  SpoolOptions o = options(dir.path(), FsyncPolicy::interval);
  o.fsync_interval = std::chrono::milliseconds(1);
  o.segment_bytes = 4096;  // many rotations and deletions while threads run
  constexpr int kThreads = 8;
  constexpr int kPerThread = 400;
  std::vector<std::map<std::uint64_t, std::string>> written(kThreads);
  std::vector<std::set<std::uint64_t>> acked(kThreads);
  {
    Spool spool(o);
    std::atomic<bool> done{false};
    std::thread syncer([&] {
      while (!done.load()) {
        spool.maybe_sync();
        (void)spool.stats();
        std::this_thread::yield();
      }
    });
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        auto& mine = written[static_cast<std::size_t>(t)];
        for (int i = 0; i < kPerThread;) {
          std::vector<std::string> batch;
          int n = (i % 7 == 0) ? 3 : 1;
          for (int k = 0; k < n; ++k) batch.push_back("t" + std::to_string(t) + "-" + std::to_string(i + k));
          std::vector<std::uint64_t> seqs = n == 1 ? std::vector<std::uint64_t>{spool.append(batch[0])}
                                                   : spool.append_batch(batch);
          std::vector<std::uint64_t> to_ack;
          for (int k = 0; k < n; ++k) {
            mine[seqs[static_cast<std::size_t>(k)]] = batch[static_cast<std::size_t>(k)];
            if ((i + k) % 2 == 0) to_ack.push_back(seqs[static_cast<std::size_t>(k)]);
          }
          spool.ack(to_ack);
          acked[static_cast<std::size_t>(t)].insert(to_ack.begin(), to_ack.end());
          i += n;
        }
      });
    }
    for (auto& th : threads) th.join();
    done = true;
    syncer.join();
    EXPECT_TRUE(spool.warnings().empty());
  }
  std::map<std::uint64_t, std::string> all;
  std::size_t total = 0;
  for (int t = 0; t < kThreads; ++t) {
    total += written[static_cast<std::size_t>(t)].size();
    all.insert(written[static_cast<std::size_t>(t)].begin(), written[static_cast<std::size_t>(t)].end());
  }
  EXPECT_EQ(all.size(), total);  // every seq unique across threads
  for (const auto& set : acked) {
    for (std::uint64_t s : set) all.erase(s);
  }
  expect_recovered(o, all);
}

TEST(Spool, ConcurrentEveryRecordAppendsShareFsyncs) {
  TempDir dir;
  SpoolOptions o = options(dir.path(), FsyncPolicy::every_record);
  o.segment_bytes = 1024;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 25;
  {
    Spool spool(o);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&spool, t] {
        for (int i = 0; i < kPerThread; ++i) spool.append(payload(t * 1000 + i));
      });
    }
    for (auto& th : threads) th.join();
  }
  Spool spool(o);
  EXPECT_EQ(spool.take_recovered().size(), static_cast<std::size_t>(kThreads * kPerThread));
}

// A real crash: the child appends with FsyncPolicy::never and is killed without running any
// destructor; everything append() returned for must be there (it sits in the page cache).
TEST(Spool, ProcessKilledWithoutDestructorsLosesNothing) {
  TempDir dir;
  constexpr int kRecords = 2000;
  SpoolOptions o = options(dir.path(), FsyncPolicy::never);
  o.segment_bytes = 16 * 1024;  // several segments
  pid_t pid = ::fork();
  ASSERT_NE(pid, -1);
  if (pid == 0) {
    try {
      auto* spool = new Spool(o);  // never deleted: no destructor, no final sync
      for (int i = 0; i < kRecords; i += 4) {
        if (i % 8 == 0) {
          spool->append_batch({payload(i), payload(i + 1), payload(i + 2), payload(i + 3)});
        } else {
          for (int k = 0; k < 4; ++k) spool->append(payload(i + k));
        }
      }
      ::raise(SIGKILL);
    } catch (...) {
    }
    ::_exit(3);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
  EXPECT_EQ(WTERMSIG(status), SIGKILL);

  Spool spool(o);  // the dead child's lock is gone with it
  std::vector<SpoolRecord> got = spool.take_recovered();
  ASSERT_EQ(got.size(), static_cast<std::size_t>(kRecords));
  for (int i = 0; i < kRecords; ++i) EXPECT_EQ(got[static_cast<std::size_t>(i)].payload, payload(i));
  EXPECT_TRUE(spool.warnings().empty());
  EXPECT_GT(spool.append("after"), got.back().seq);
}

// --- Admission and failure reporting (issue 13: a full disk lost billable calls silently) ---

namespace {
mode_t mode_of(const fs::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) throw std::runtime_error("stat " + p.string());
  return st.st_mode & 0777;
}
}  // namespace

TEST(SpoolAdmission, FilesAreCreatedForTheOwnerOnly) {
  TempDir dir;
  Spool spool(options(dir.path()));
  spool.ack({spool.append("event with a customer id")});
  for (const auto& e : fs::directory_iterator(dir.path())) {
    EXPECT_EQ(mode_of(e.path()), 0600u) << e.path();
  }
  EXPECT_FALSE(files_with(dir.path(), ".ack").empty());
}

TEST(SpoolAdmission, KeepsTheReserveFreeUnderMaxBytesAndReopensWhenAcksFreeIt) {
  TempDir dir;
  SpoolOptions o = options(dir.path());
  o.max_bytes = 10 * (kHeader + 10);
  o.reserve_bytes = 2 * (kHeader + 10);  // under the cap of max_bytes / 4
  Spool spool(o);
  std::vector<std::uint64_t> seqs;
  while (spool.can_accept()) seqs.push_back(spool.append(std::string(10, 'x')));
  EXPECT_EQ(seqs.size(), 9u);  // 8 fit with the reserve kept; the 9th used it and closed admission
  EXPECT_FALSE(spool.stats().accepting);
  // The reserve is for calls admitted before: their appends still succeed, up to max_bytes.
  seqs.push_back(spool.append(std::string(10, 'y')));
  EXPECT_THROW(spool.append(std::string(10, 'z')), SpoolFullError);
  EXPECT_FALSE(spool.can_accept());
  // Delivered: the fully acknowledged active segment is rotated away without waiting for an append.
  spool.ack(seqs);
  EXPECT_EQ(spool.stats().bytes, 0u);
  EXPECT_TRUE(spool.can_accept());
}

TEST(SpoolAdmission, TheReserveIsCappedAtAQuarterOfMaxBytes) {
  TempDir dir;
  SpoolOptions o = options(dir.path());
  o.max_bytes = 4 * (kHeader + 10);
  o.reserve_bytes = 1ull << 40;  // larger than the spool: would never accept without the cap
  Spool spool(o);
  EXPECT_TRUE(spool.can_accept());
  spool.append(std::string(10, 'a'));
  spool.append(std::string(10, 'b'));
  spool.append(std::string(10, 'c'));
  EXPECT_TRUE(spool.can_accept());
  spool.append(std::string(10, 'd'));
  EXPECT_FALSE(spool.can_accept());
}

TEST(SpoolAdmission, TheFilesystemsFreeSpaceCounts) {
  TempDir dir;
  SpoolOptions o = options(dir.path());
  o.max_bytes = UINT64_MAX / 2;
  o.reserve_bytes = UINT64_MAX / 16;  // more than any disk has free
  Spool spool(o);
  EXPECT_FALSE(spool.can_accept());
  EXPECT_GT(spool.stats().free_bytes, 0u);
  EXPECT_LT(spool.stats().free_bytes, o.reserve_bytes);
}

TEST(SpoolAdmission, AFailedWriteClosesAdmissionUntilAnAppendSucceeds) {
  TempDir dir;
  std::atomic<int> fail_with{0};
  SpoolOptions o = options(dir.path());
  o.inject_fault = [&](llmbill::SpoolOp op) { return op == llmbill::SpoolOp::write ? fail_with.load() : 0; };
  Spool spool(o);
  fail_with = ENOSPC;
  EXPECT_THROW(spool.append("a"), llmbill::Error);
  EXPECT_FALSE(spool.can_accept());
  auto s = spool.stats();
  EXPECT_EQ(s.failed_appends, 1u);
  EXPECT_NE(s.last_error.find("No space left on device"), std::string::npos) << s.last_error;
  EXPECT_EQ(s.bytes, 0u);  // nothing half-written stays counted
  fail_with = 0;
  spool.append("b");
  EXPECT_TRUE(spool.can_accept());
  EXPECT_TRUE(spool.stats().last_error.empty());
}

TEST(SpoolAdmission, AFailedWriteReopensAtTheNextSpaceCheckThatFindsRoom) {
  TempDir dir;
  std::atomic<int> fail_with{EIO};
  SpoolOptions o = options(dir.path());
  o.inject_fault = [&](llmbill::SpoolOp op) { return op == llmbill::SpoolOp::write ? fail_with.load() : 0; };
  Spool spool(o);
  EXPECT_THROW(spool.append("a"), llmbill::Error);
  EXPECT_FALSE(spool.can_accept());
  fail_with = 0;
  spool.refresh_space();  // no append needed to find out the disk has room again
  EXPECT_TRUE(spool.can_accept());
}

TEST(SpoolAdmission, AFailedFsyncThrowsAndClosesAdmission) {
  TempDir dir;
  std::atomic<int> fail_with{EIO};
  SpoolOptions o = options(dir.path(), FsyncPolicy::every_record);
  o.inject_fault = [&](llmbill::SpoolOp op) { return op == llmbill::SpoolOp::sync ? fail_with.load() : 0; };
  Spool spool(o);
  EXPECT_THROW(spool.append("a"), llmbill::Error);
  EXPECT_FALSE(spool.can_accept());
  EXPECT_NE(spool.stats().last_error.find("fsync"), std::string::npos);
  EXPECT_THROW(spool.sync(), llmbill::Error);
  fail_with = 0;
  spool.append("b");
  EXPECT_TRUE(spool.can_accept());
}

// --- Rotation off the appender's path (spool.cpp's design notes): tidy() makes the next segment
// ahead, rotation only switches files, the sealed segment's fsync is owed to the next sync, and fully
// acknowledged segments' files are unlinked outside the appenders' lock. ---

namespace {

const std::string kPayload = "12345678";  // 28 bytes a record on disk

// Ten records a segment; every fsync and every write the spool makes is counted.
struct Counted {
  std::atomic<int> syncs{0};
  SpoolOptions options(const fs::path& dir, FsyncPolicy policy = FsyncPolicy::interval) {
    SpoolOptions o;
    o.dir = dir;
    o.fsync = policy;
    o.fsync_interval = std::chrono::milliseconds(0);
    o.segment_bytes = 10 * (kHeader + kPayload.size());
    o.inject_fault = [this](SpoolOp op) {
      if (op == SpoolOp::sync) ++syncs;
      return 0;
    };
    return o;
  }
};

std::vector<std::uint64_t> log_names(const fs::path& dir) {
  std::vector<std::uint64_t> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string name = e.path().filename().string();
    if (e.path().extension() == ".log") out.push_back(std::stoull(name.substr(4, 20)));
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST(SpoolRotation, TidyMakesTheNextSegmentSoThatRotationMakesNoFileAndNoFsync) {
  TempDir dir;
  Counted c;
  Spool spool(c.options(dir.path()));
  std::vector<std::uint64_t> seqs;
  for (int i = 0; i < 4; ++i) seqs.push_back(spool.append(kPayload));
  spool.tidy();
  EXPECT_EQ(log_names(dir.path()).size(), 1u) << "no spare before the active segment is half full";
  seqs.push_back(spool.append(kPayload));
  spool.tidy();
  std::vector<std::uint64_t> names = log_names(dir.path());
  ASSERT_EQ(names.size(), 2u) << "the spare, made by tidy()";
  const std::uint64_t spare = names[1];
  EXPECT_GT(spare, seqs.back() + 5) << "its name is above every seq the active segment can still take";

  for (int i = 0; i < 8; ++i) seqs.push_back(spool.append(kPayload));  // passes ten: rotates
  EXPECT_EQ(c.syncs.load(), 0) << "interval: neither appends nor rotation fsync";
  EXPECT_EQ(log_names(dir.path()), names) << "rotation made no file: it took the spare";
  EXPECT_EQ(seqs[10], spare) << "the first record of the new segment takes its name as seq";
  EXPECT_EQ(seqs[12], spare + 2);
  EXPECT_EQ(spool.stats().segments, 2u);

  spool.maybe_sync();  // the sealed segment's owed fsync and the active one's, in one sync
  EXPECT_EQ(c.syncs.load(), 1);
}

TEST(SpoolRotation, WithoutTidyRotationSyncsTheSegmentItSealsItself) {
  TempDir dir;
  Counted c;
  Spool spool(c.options(dir.path()));
  for (int i = 0; i < 35; ++i) spool.append(kPayload);  // ten a segment: three rotations, no spare
  EXPECT_EQ(c.syncs.load(), 3) << "a Spool nobody tidies owes nothing: each rotation synced its segment";
  EXPECT_EQ(log_names(dir.path()).size(), 4u);
  spool.tidy();  // the active segment is half full: a spare now
  for (int i = 0; i < 6; ++i) spool.append(kPayload);  // onto the spare: owed, not synced
  EXPECT_EQ(c.syncs.load(), 3);
  for (int i = 0; i < 10; ++i) spool.append(kPayload);  // no spare this time: syncs here, the owed one too
  EXPECT_EQ(c.syncs.load(), 4);
  spool.maybe_sync();  // nothing left owed but the active segment's newest records
  EXPECT_EQ(c.syncs.load(), 5);
}

TEST(SpoolRotation, EveryRecordedAppendStillSyncsTheSegmentItSealed) {
  TempDir dir;
  Counted c;
  std::vector<std::uint64_t> seqs;
  {
    Spool spool(c.options(dir.path(), FsyncPolicy::every_record));
    for (int i = 0; i < 6; ++i) seqs.push_back(spool.append(kPayload));
    spool.tidy();
    int before = c.syncs.load();
    for (int i = 0; i < 6; ++i) seqs.push_back(spool.append(kPayload));  // rotates onto the spare
    EXPECT_EQ(c.syncs.load() - before, 6) << "one sync an append, the rotating one included";
  }
  Spool spool(c.options(dir.path()));
  std::vector<SpoolRecord> got = spool.take_recovered();
  ASSERT_EQ(got.size(), seqs.size());
  for (std::size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i].seq, seqs[i]);
}

// The reservation is what keeps recovery exact: a copy of the directory taken at any moment (what a
// crash leaves) holds every record below the next segment's name, and all of them come back.
TEST(SpoolRotation, ACrashWithTheSpareOnDiskRecoversEveryRecord) {
  TempDir dir, copy;
  Counted c;
  std::map<std::uint64_t, std::string> written;
  {
    Spool spool(c.options(dir.path()));
    for (int i = 0; i < 37; ++i) {
      std::string p = "record-" + std::to_string(i);
      written[spool.append(p)] = p;
      if (i % 3 == 0) spool.tidy();
    }
    ASSERT_GE(log_names(dir.path()).size(), 2u);
    fs::copy(dir.path(), copy.path(), fs::copy_options::overwrite_existing | fs::copy_options::recursive);
  }
  fs::remove(copy.path() / "LOCK");
  expect_recovered(c.options(copy.path()), written);
  Spool spool(c.options(copy.path()));
  EXPECT_GT(spool.append("after"), written.rbegin()->first);
}

TEST(SpoolRotation, AFullyAcknowledgedSegmentRotatedAwayIsUnlinkedByTheNextTidy) {
  TempDir dir;
  Counted c;
  Spool spool(c.options(dir.path()));
  std::vector<std::uint64_t> seqs;
  for (int i = 0; i < 10; ++i) seqs.push_back(spool.append(kPayload));
  spool.ack(seqs);  // the active segment, all delivered: kept until it is sealed
  spool.tidy();
  ASSERT_EQ(log_names(dir.path()).size(), 2u);
  const std::uint64_t first = log_names(dir.path())[0];
  spool.append(kPayload);  // rotates onto the spare; the old segment is forgotten at once
  EXPECT_EQ(spool.stats().segments, 1u);
  EXPECT_EQ(spool.stats().bytes, kHeader + kPayload.size());
  EXPECT_EQ(log_names(dir.path()).front(), first) << "its file waits for tidy(), off the appender's path";
  spool.tidy();
  EXPECT_EQ(log_names(dir.path()).size(), 1u);
  for (const auto& e : fs::directory_iterator(dir.path())) {
    EXPECT_EQ(e.path().filename().string().find(std::to_string(first)), std::string::npos) << e.path();
  }
}

TEST(SpoolRotation, AnUnusedSpareIsRemovedAtClose) {
  TempDir dir;
  Counted c;
  {
    Spool spool(c.options(dir.path()));
    for (int i = 0; i < 6; ++i) spool.append(kPayload);
    spool.tidy();
    ASSERT_EQ(log_names(dir.path()).size(), 2u);
  }
  EXPECT_EQ(log_names(dir.path()).size(), 1u);
}

// Appenders, acks and a sender-like thread calling tidy() and maybe_sync() together (run under
// TSan in CI): seqs unique, nothing lost, nothing torn.
TEST(SpoolRotation, ConcurrentAppendsAcksAndTidyLoseNothing) {
  TempDir dir;
  Counted c;
  SpoolOptions o = c.options(dir.path());
  o.segment_bytes = 2048;
  o.inject_fault = nullptr;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 500;
  std::vector<std::map<std::uint64_t, std::string>> kept(kThreads);
  {
    Spool spool(o);
    std::atomic<bool> done{false};
    std::thread sender([&] {
      while (!done.load()) {
        spool.tidy();
        spool.maybe_sync();
        std::this_thread::yield();
      }
    });
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        auto& mine = kept[static_cast<std::size_t>(t)];
        for (int i = 0; i < kPerThread; ++i) {
          std::string p = "t" + std::to_string(t) + "-" + std::to_string(i);
          std::uint64_t seq = spool.append(p);
          if (i % 2 == 0) {
            spool.ack({seq});
          } else {
            mine[seq] = p;
          }
        }
      });
    }
    for (auto& th : threads) th.join();
    done = true;
    sender.join();
    EXPECT_TRUE(spool.warnings().empty());
  }
  std::map<std::uint64_t, std::string> all;
  for (const auto& m : kept) all.insert(m.begin(), m.end());
  ASSERT_EQ(all.size(), static_cast<std::size_t>(kThreads * kPerThread / 2));
  expect_recovered(o, all);
}
