// Page stamps classify what a read shows from its bytes alone.
#include <cstring>

#include <gtest/gtest.h>

#include <vmcoh/rng.hpp>
#include <vmcoh/stamp.hpp>

#include "test_object.hpp"

namespace vmcoh {
namespace {

constexpr std::uint64_t kRun = 0xabcdef;
constexpr std::uint64_t kOffset = 5 * kPageSize;

PageImage stamp(std::uint64_t generation, std::uint64_t offset = kOffset,
                std::uint64_t run = kRun) {
  return make_stamp({run, offset, generation, 0, 0});
}

// `a` with the bytes of `b` from `from` on.
PageImage splice(const PageImage& a, const PageImage& b, std::size_t from) {
  PageImage out = a;
  std::memcpy(out.bytes() + from, b.bytes() + from, kPageSize - from);
  return out;
}

TEST(Stamp, AFreshStampIsValidWithItsGeneration) {
  const Observation obs = classify(stamp(7), kOffset, kRun);
  EXPECT_EQ(obs.content, Content::valid);
  EXPECT_EQ(obs.header.generation, 7U);
  EXPECT_EQ(obs.header.offset, kOffset);
  EXPECT_EQ(obs.header.magic, kStampMagic);
}

TEST(Stamp, AllZeroIsZero) {
  EXPECT_EQ(classify(PageImage{}, kOffset, kRun).content, Content::zero);
}

TEST(Stamp, AnotherOffsetIsMisplaced) {
  EXPECT_EQ(classify(stamp(7, kOffset + kPageSize), kOffset, kRun).content, Content::misplaced);
}

TEST(Stamp, AnotherRunIsForeign) {
  EXPECT_EQ(classify(stamp(7, kOffset, kRun + 1), kOffset, kRun).content, Content::foreign);
}

TEST(Stamp, BytesWithoutMagicAreForeign) {
  PageImage page;
  Rng rng(1);
  for (auto& w : page.words) w = rng.next();
  EXPECT_EQ(classify(page, kOffset, kRun).content, Content::foreign);
}

TEST(Stamp, EveryFlippedByteMakesItTorn) {
  const PageImage good = stamp(7);
  for (std::size_t i = 0; i < kPageSize; ++i) {
    PageImage bad = good;
    bad.bytes()[i] ^= std::byte{0x01};
    const Content c = classify(bad, kOffset, kRun).content;
    ASSERT_TRUE(c == Content::torn || c == Content::foreign) << "byte " << i;
  }
}

TEST(Stamp, AStampHalfCopiedOverZeroIsTorn) {
  for (const std::size_t from : {8UL, 64UL, 2048UL, 4088UL}) {
    EXPECT_EQ(classify(splice(stamp(7), PageImage{}, from), kOffset, kRun).content, Content::torn)
        << from;
  }
}

TEST(Stamp, AZeroHeaderOverStampBytesIsTorn) {
  EXPECT_EQ(classify(splice(PageImage{}, stamp(7), 64), kOffset, kRun).content, Content::torn);
  EXPECT_EQ(classify(splice(PageImage{}, stamp(7), 3), kOffset, kRun).content, Content::torn)
      << "magic partly written";
}

TEST(Stamp, TwoGenerationsMixedAreTorn) {
  // From byte 24 on: the generation word and everything after it come from gen 8.
  for (const std::size_t from : {24UL, 40UL, 1000UL, 4095UL}) {
    EXPECT_EQ(classify(splice(stamp(7), stamp(8), from), kOffset, kRun).content, Content::torn)
        << from;
  }
}

TEST(Stamp, EveryKeyFieldChangesThePayload) {
  const PageImage base = make_stamp({kRun, kOffset, 7, 0, 0});
  const PageImage variants[] = {
      make_stamp({kRun + 1, kOffset, 7, 0, 0}), make_stamp({kRun, kOffset + kPageSize, 7, 0, 0}),
      make_stamp({kRun, kOffset, 8, 0, 0}),     make_stamp({kRun, kOffset, 7, kStampPrivate, 0}),
      make_stamp({kRun, kOffset, 7, 0, 1}),
  };
  for (const PageImage& v : variants) {
    std::size_t same = 0;
    for (std::size_t w = 8; w < kWordsPerPage; ++w) same += v.words[w] == base.words[w];
    EXPECT_EQ(same, 0U) << describe(header_of(v));
  }
}

TEST(Stamp, ChecksumIgnoresItsOwnWord) {
  PageImage page = stamp(7);
  const std::uint64_t sum = page_checksum(page);
  EXPECT_EQ(sum, header_of(page).checksum);
  page.words[5] = ~page.words[5];
  EXPECT_EQ(page_checksum(page), sum);
}

}  // namespace
}  // namespace vmcoh
