#include "llmbill/deadletters.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "temp_dir.hpp"

namespace fs = std::filesystem;
using llmbill::DeadLetter;
using llmbill::DeadLetterStore;

namespace {

using llmbill::testing::TempDir;

DeadLetter letter(const std::string& id, double at = 1786000000.5) {
  return {id, "{\"transaction_id\":\"" + id + "\",\"code\":\"tokens\"}", "422 validation_errors",
          "{\"status\":422,\"error_details\":{\"0\":{\"timestamp\":[\"invalid_format\"]}}}", at};
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void append_text(const fs::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary | std::ios::app) << text;
}

std::vector<std::string> ids(const std::vector<DeadLetter>& v) {
  std::vector<std::string> out;
  for (const auto& d : v) out.push_back(d.id);
  return out;
}

}  // namespace

TEST(DeadLetters, AddedLettersPersistAndRoundTrip) {
  TempDir dir;
  fs::path file = dir.path() / "sub" / "dead.jsonl";  // the parent is created
  {
    DeadLetterStore store(file);
    EXPECT_EQ(store.count(), 0u);
    EXPECT_FALSE(store.oldest_at().has_value());
    EXPECT_TRUE(store.list().empty());
    store.add(letter("a", 1786000002.25));
    store.add(letter("b", 1786000001.125));
  }
  DeadLetterStore store(file);
  std::vector<DeadLetter> all = store.list();
  EXPECT_EQ(ids(all), (std::vector<std::string>{"a", "b"}));
  DeadLetter want = letter("a", 1786000002.25);
  EXPECT_EQ(all[0].event_json, want.event_json);
  EXPECT_EQ(all[0].reason, want.reason);
  EXPECT_EQ(all[0].reply, want.reply);
  EXPECT_EQ(all[0].at_unix, want.at_unix);
  EXPECT_EQ(store.count(), 2u);
  EXPECT_EQ(store.oldest_at(), 1786000001.125);
  ASSERT_TRUE(store.get("b").has_value());
  EXPECT_EQ(store.get("b")->at_unix, 1786000001.125);
  EXPECT_FALSE(store.get("zzz").has_value());
  // One JSON object per line.
  std::string text = read_text(file);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2);
}

TEST(DeadLetters, RemoveRewritesTheFile) {
  TempDir dir;
  fs::path file = dir.path() / "dead.jsonl";
  DeadLetterStore store(file);
  for (const char* id : {"a", "b", "c"}) store.add(letter(id));
  EXPECT_TRUE(store.remove("b"));
  EXPECT_FALSE(store.remove("b"));
  EXPECT_FALSE(store.remove("unknown"));
  EXPECT_EQ(ids(store.list()), (std::vector<std::string>{"a", "c"}));
  EXPECT_FALSE(fs::exists(file.string() + ".tmp"));
  EXPECT_EQ(ids(DeadLetterStore(file).list()), (std::vector<std::string>{"a", "c"}));
  EXPECT_TRUE(store.remove("a"));
  EXPECT_TRUE(store.remove("c"));
  EXPECT_EQ(store.count(), 0u);
  EXPECT_EQ(fs::file_size(file), 0u);
}

TEST(DeadLetters, RemoveUpToATimeKeepsANewerLetterWithTheSameId) {
  // A replay removes the letter it read; if the resent event was refused again meanwhile, that
  // newer letter must stay.
  TempDir dir;
  DeadLetterStore store(dir.path() / "dead.jsonl");
  store.add(letter("a", 100.0));
  store.add(letter("a", 200.0));
  EXPECT_TRUE(store.remove("a", 100.0));
  ASSERT_EQ(store.count(), 1u);
  EXPECT_EQ(store.get("a")->at_unix, 200.0);
  EXPECT_FALSE(store.remove("a", 150.0));
  EXPECT_TRUE(store.remove("a", 200.0));
  EXPECT_EQ(store.count(), 0u);
}

TEST(DeadLetters, MissingFileIsEmptyAndNotCreatedByQueries) {
  TempDir dir;
  fs::path file = dir.path() / "dead.jsonl";
  DeadLetterStore store(file);
  EXPECT_TRUE(store.list().empty());
  EXPECT_FALSE(store.remove("a"));
  EXPECT_FALSE(fs::exists(file));
}

TEST(DeadLetters, TornLastLineIsSkippedAndTheNextAddStartsANewLine) {
  TempDir dir;
  fs::path file = dir.path() / "dead.jsonl";
  DeadLetterStore store(file);
  store.add(letter("a"));
  append_text(file, "{\"id\":\"torn\",\"event_js");  // a crash in the middle of an add
  EXPECT_EQ(ids(store.list()), (std::vector<std::string>{"a"}));
  EXPECT_EQ(store.count(), 1u);
  store.add(letter("b"));
  EXPECT_EQ(ids(store.list()), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(store.remove("a"));  // the rewrite drops the torn fragment
  EXPECT_EQ(ids(store.list()), (std::vector<std::string>{"b"}));
  EXPECT_EQ(read_text(file).find("torn"), std::string::npos);
}

TEST(DeadLetters, UnreadableLinesAreSkipped) {
  TempDir dir;
  fs::path file = dir.path() / "dead.jsonl";
  append_text(file, "not json\n[1,2]\n{\"id\":5}\n\n");
  DeadLetterStore store(file);
  store.add(letter("a"));
  append_text(file, "{\"no_id\":true}\n");
  store.add(letter("b"));
  EXPECT_EQ(ids(store.list()), (std::vector<std::string>{"a", "b"}));
}

TEST(DeadLetters, SameIdTwiceShowsTheNewestOnceAndRemovesAll) {
  TempDir dir;
  fs::path file = dir.path() / "dead.jsonl";
  DeadLetterStore store(file);
  store.add(letter("a", 1.0));
  store.add(letter("b", 2.0));
  store.add(letter("a", 3.0));
  EXPECT_EQ(ids(store.list()), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(store.get("a")->at_unix, 3.0);
  EXPECT_EQ(store.count(), 2u);
  EXPECT_EQ(store.oldest_at(), 2.0);
  EXPECT_TRUE(store.remove("a"));
  EXPECT_FALSE(store.get("a").has_value());
  EXPECT_EQ(store.count(), 1u);
}

TEST(DeadLetters, AwkwardTextRoundTrips) {
  TempDir dir;
  fs::path file = dir.path() / "dead.jsonl";
  DeadLetterStore store(file);
  DeadLetter d{"id \"quoted\"\nnewline", "{\"k\":\"caf\xC3\xA9 \\u0000 \\\"x\\\"\"}", "400", "", 0.1};
  store.add(d);
  DeadLetter bad = letter("bin");
  bad.reply = std::string("\xFF\xFE gateway junk", 15);  // invalid UTF-8: stored, not refused
  EXPECT_NO_THROW(store.add(bad));
  std::optional<DeadLetter> got = store.get(d.id);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->event_json, d.event_json);
  EXPECT_EQ(got->at_unix, 0.1);
  ASSERT_TRUE(store.get("bin").has_value());
  EXPECT_NE(store.get("bin")->reply.find("gateway junk"), std::string::npos);
  EXPECT_EQ(store.count(), 2u);
}

TEST(DeadLetters, TwoStoresOnOneFileSeeEachOther) {
  TempDir dir;
  fs::path file = dir.path() / "dead.jsonl";
  DeadLetterStore proxy(file);
  DeadLetterStore cli(file);
  proxy.add(letter("a"));
  proxy.add(letter("b"));
  EXPECT_TRUE(cli.remove("a"));
  proxy.add(letter("c"));  // appends to the renamed-in file, not the old one
  EXPECT_EQ(ids(cli.list()), (std::vector<std::string>{"b", "c"}));
  EXPECT_EQ(ids(proxy.list()), (std::vector<std::string>{"b", "c"}));
}

TEST(DeadLetters, AnUnsyncedAddIsWrittenAtOnceAndSyncedLater) {
  // A request thread's add (the spool's interval policy): no fsync before it returns, but the line is
  // in the file, so another process (or this one after a kill) reads it; sync_written() does the fsync.
  TempDir dir;
  fs::path file = dir.path() / "dead.jsonl";
  DeadLetterStore proxy(file);
  proxy.sync_written();  // nothing written yet: nothing to do
  proxy.add(letter("a"), /*sync=*/false);
  proxy.add(letter("b"), /*sync=*/false);
  EXPECT_EQ(ids(DeadLetterStore(file).list()), (std::vector<std::string>{"a", "b"}));
  proxy.sync_written();
  proxy.sync_written();  // twice: the second finds nothing pending
  fs::remove(file);
  proxy.add(letter("c"), /*sync=*/false);  // a new file (its directory entry fsynced at once)
  EXPECT_EQ(ids(DeadLetterStore(file).list()), (std::vector<std::string>{"c"}));
  fs::remove(file);
  proxy.sync_written();  // the file an operator removed meanwhile: nothing to fsync, no error
  EXPECT_FALSE(fs::exists(file));
}

TEST(DeadLetters, ConcurrentAddsAndRemoves) {
  TempDir dir;
  fs::path file = dir.path() / "dead.jsonl";
  DeadLetterStore store(file);
  constexpr int kThreads = 8;
  constexpr int kPerThread = 20;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&store, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::string id = std::to_string(t) + "-" + std::to_string(i);
        store.add(letter(id));
        if (i % 2 == 1) EXPECT_TRUE(store.remove(id));
        (void)store.count();
      }
    });
  }
  for (auto& th : threads) th.join();
  std::set<std::string> got;
  for (const auto& d : store.list()) got.insert(d.id);
  std::set<std::string> want;
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; i += 2) want.insert(std::to_string(t) + "-" + std::to_string(i));
  }
  EXPECT_EQ(got, want);
}

TEST(DeadLetters, IoFailuresThrowTheRootError) {
  TempDir dir;
  fs::path blocker = dir.path() / "file";
  std::ofstream(blocker) << "x";
  EXPECT_THROW(DeadLetterStore(blocker / "dead.jsonl"), llmbill::Error);
  EXPECT_THROW(DeadLetterStore(""), llmbill::Error);
}

TEST(DeadLetterStore, FilesAreForTheOwnerOnlyAndAnOlderWiderFileIsNarrowed) {
  TempDir dir;
  fs::path file = dir.path() / "deadletters.jsonl";
  append_text(file, "");  // an older version's file, made with the umask's default
  fs::permissions(file, fs::perms(0644));
  DeadLetterStore store(file);
  store.add(letter("a"));
  store.add(letter("b"));
  auto mode = [](const fs::path& p) { return static_cast<unsigned>(fs::status(p).permissions() & fs::perms::all); };
  EXPECT_EQ(mode(file), 0600u);
  EXPECT_EQ(mode(dir.path() / "deadletters.jsonl.lock"), 0600u);
  ASSERT_TRUE(store.remove("a"));  // the rewrite (temp file, rename) keeps it private too
  EXPECT_EQ(mode(file), 0600u);
}
