#include "spool_format.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "llmbill/errors.hpp"

namespace sd = llmbill::spool_detail;

namespace {

std::string encoded(std::uint64_t seq, std::string_view payload) {
  std::string out;
  sd::encode_record(out, seq, payload);
  return out;
}

TEST(SpoolFormat, LittleEndianPutGet) {
  char b[8];
  sd::put_u32(b, 0x04030201u);
  EXPECT_EQ(std::string(b, 4), std::string("\x01\x02\x03\x04", 4));
  EXPECT_EQ(sd::get_u32(b), 0x04030201u);
  sd::put_u64(b, 0xF8F7F6F5F4F3F2F1ull);
  EXPECT_EQ(static_cast<unsigned char>(b[0]), 0xF1);
  EXPECT_EQ(static_cast<unsigned char>(b[7]), 0xF8);
  EXPECT_EQ(sd::get_u64(b), 0xF8F7F6F5F4F3F2F1ull);
}

TEST(SpoolFormat, EncodeLayout) {
  std::string rec = encoded(7, "hello");
  ASSERT_EQ(rec.size(), sd::kHeader + 5);
  EXPECT_EQ(rec.substr(0, 4), std::string("\xFE\xFF\x4C\x4C", 4));  // magic
  EXPECT_EQ(sd::get_u32(rec.data() + 4), 5u);                         // length
  EXPECT_EQ(sd::get_u64(rec.data() + 12), 7u);                        // seq
  EXPECT_EQ(sd::get_u32(rec.data() + 8), sd::record_crc(rec.data() + 12, "hello"));
  EXPECT_EQ(rec.substr(sd::kHeader), "hello");
}

TEST(SpoolFormat, EncodeDecodeRoundTrip) {
  const std::string binary("a\0b\xFE\xFF", 5);
  for (std::string_view payload : {std::string_view(), std::string_view("{\"a\":1}"), std::string_view(binary)}) {
    std::string rec = encoded(42, payload);
    auto d = sd::decode_record(rec, 0, 1, UINT64_MAX);
    ASSERT_TRUE(d.has_value());
    EXPECT_EQ(d->seq, 42u);
    EXPECT_EQ(d->payload, payload);
  }
}

TEST(SpoolFormat, DecodeAtOffsetInAStream) {
  std::string data = "junk";
  sd::encode_record(data, 1, "first");
  sd::encode_record(data, 2, "second");
  auto a = sd::decode_record(data, 4, 1, UINT64_MAX);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->payload, "first");
  auto b = sd::decode_record(data, 4 + sd::kHeader + 5, a->seq + 1, UINT64_MAX);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->seq, 2u);
  EXPECT_EQ(b->payload, "second");
  EXPECT_FALSE(sd::decode_record(data, 0, 1, UINT64_MAX).has_value());   // no magic at 0
  EXPECT_FALSE(sd::decode_record(data, data.size(), 1, UINT64_MAX).has_value());  // at the end
}

TEST(SpoolFormat, EveryFlippedByteFailsDecode) {
  const std::string rec = encoded(9, "payload");
  for (std::size_t i = 0; i < rec.size(); ++i) {
    std::string bad = rec;
    bad[i] = static_cast<char>(bad[i] ^ 0x01);
    EXPECT_FALSE(sd::decode_record(bad, 0, 1, UINT64_MAX).has_value()) << "flipped byte " << i;
  }
}

TEST(SpoolFormat, CrcCoversSeqAndPayload) {
  std::string rec = encoded(9, "payload");
  // A payload byte changed: only the crc catches it.
  std::string bad = rec;
  bad[sd::kHeader] = 'P';
  EXPECT_FALSE(sd::decode_record(bad, 0, 1, UINT64_MAX).has_value());
  // Renumbered to another in-range seq: the crc catches it too.
  bad = rec;
  sd::put_u64(bad.data() + 12, 10);
  EXPECT_FALSE(sd::decode_record(bad, 0, 1, UINT64_MAX).has_value());
}

TEST(SpoolFormat, TruncatedRecordIsNotDecoded) {
  const std::string rec = encoded(3, "0123456789");
  for (std::size_t n = 0; n < rec.size(); ++n) {
    EXPECT_FALSE(sd::decode_record(std::string_view(rec).substr(0, n), 0, 1, UINT64_MAX).has_value())
        << "kept " << n << " bytes";
  }
  EXPECT_TRUE(sd::decode_record(rec, 0, 1, UINT64_MAX).has_value());
}

TEST(SpoolFormat, SeqOutsideRangeIsNotDecoded) {
  const std::string rec = encoded(5, "x");
  EXPECT_TRUE(sd::decode_record(rec, 0, 5, 6).has_value());
  EXPECT_FALSE(sd::decode_record(rec, 0, 6, UINT64_MAX).has_value());  // below min_seq
  EXPECT_FALSE(sd::decode_record(rec, 0, 1, 5).has_value());           // at the limit
}

TEST(SpoolFormat, AckEntryRoundTripAndCrc) {
  std::string acks;
  sd::encode_ack(acks, 123456789012345ull);
  sd::encode_ack(acks, 1);
  ASSERT_EQ(acks.size(), 2 * sd::kAckEntry);
  EXPECT_EQ(sd::decode_ack(acks.data()), std::optional<std::uint64_t>(123456789012345ull));
  EXPECT_EQ(sd::decode_ack(acks.data() + sd::kAckEntry), std::optional<std::uint64_t>(1));
  for (std::size_t i = 0; i < sd::kAckEntry; ++i) {
    std::string bad = acks.substr(0, sd::kAckEntry);
    bad[i] = static_cast<char>(bad[i] ^ 0x80);
    EXPECT_FALSE(sd::decode_ack(bad.data()).has_value()) << "flipped byte " << i;
  }
}

TEST(SpoolFormat, SegmentNameRoundTrip) {
  EXPECT_EQ(sd::seg_name(1, "log"), "seg-00000000000000000001.log");
  EXPECT_EQ(sd::seg_name(UINT64_MAX, "ack"), "seg-18446744073709551615.ack");
  for (std::uint64_t first : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{987654321}, UINT64_MAX}) {
    for (const char* ext : {"log", "ack"}) {
      EXPECT_EQ(sd::parse_seg_name(sd::seg_name(first, ext), ext), std::optional<std::uint64_t>(first));
    }
  }
}

TEST(SpoolFormat, BadSegmentNamesAreRejected) {
  const char* bad[] = {
      "",
      "LOCK",
      "seg-00000000000000000001.ack",    // other extension
      "seg-00000000000000000001.log.tmp",
      "seg-0000000000000000001.log",     // 19 digits
      "seg-000000000000000000001.log",   // 21 digits
      "seg-0000000000000000000x.log",    // not a digit
      "seg-+0000000000000000001.log",
      "seg- 0000000000000000001.log",
      "Seg-00000000000000000001.log",
      "seg_00000000000000000001.log",
      "seg-00000000000000000001_log",
      "seg-18446744073709551616.log",    // UINT64_MAX + 1
      "seg-99999999999999999999.log",
  };
  for (const char* name : bad) EXPECT_FALSE(sd::parse_seg_name(name, "log").has_value()) << name;
}

TEST(SpoolFormat, WriteAllReadWholeRoundTrip) {
  char tmpl[] = "/tmp/llmbill-spoolfmt-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::filesystem::path dir = tmpl;
  const std::filesystem::path file = dir / sd::seg_name(1, "log");
  std::string data;
  for (std::uint64_t s = 1; s <= 5000; ++s) sd::encode_record(data, s, std::string(s % 37, 'x'));  // > 64 KiB
  {
    sd::Fd fd(sd::open_file(file, O_WRONLY | O_CREAT | O_EXCL | O_APPEND, "create"));
    EXPECT_EQ(sd::write_all(fd.get(), data.data(), data.size()), 0);
    EXPECT_EQ(sd::datasync(fd.get()), 0);
  }
  EXPECT_EQ(sd::read_whole(file), data);
  EXPECT_THROW(sd::open_file(file, O_WRONLY | O_CREAT | O_EXCL, "create"), llmbill::Error);  // exists
  EXPECT_THROW(sd::read_whole(dir / "missing"), llmbill::Error);
  std::filesystem::remove_all(dir);
}

}  // namespace
