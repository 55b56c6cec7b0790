// The oracle fed synthetic histories: it must call every stale, torn, misplaced or foreign read a
// violation, and accept every read a correct kernel may produce.
#include <cstring>

#include <gtest/gtest.h>

#include <vmcoh/oracle.hpp>

#include "test_object.hpp"

namespace vmcoh::oracle {
namespace {

constexpr std::uint64_t kRun = 0x5eed;
constexpr std::uint64_t kOffset = 3 * kPageSize;
constexpr PageContext kCtx{kRun, kOffset};
constexpr StateKind D = StateKind::data;
constexpr StateKind H = StateKind::hole;
constexpr StateKind T = StateKind::truncated;

PageImage gen(std::uint64_t g) { return make_stamp({kRun, kOffset, g, 0, 0}); }

PageImage splice(const PageImage& a, const PageImage& b, std::size_t from) {
  PageImage out = a;
  std::memcpy(out.bytes() + from, b.bytes() + from, kPageSize - from);
  return out;
}

Judgement judge(const PageImage& page, const Window& w) {
  return judge_content(page, classify(page, kOffset, kRun), w, kCtx);
}

// --- content: zero ---

TEST(OracleContent, ZeroWhenTheOnlyStateIsDataIsAStaleZero) {
  const Judgement j = judge(PageImage{}, Window::of(5, {D}));
  EXPECT_FALSE(j.legal);
  EXPECT_EQ(j.finding, Finding::stale_zero);
}

TEST(OracleContent, ZeroWhileAnOverwriteIsInFlightIsAStaleZero) {
  EXPECT_EQ(judge(PageImage{}, Window::of(5, {D, D})).finding, Finding::stale_zero);
}

TEST(OracleContent, ZeroInTheInitialStateIsLegal) {
  EXPECT_TRUE(judge(PageImage{}, Window::of(0, {H})).legal);
}

TEST(OracleContent, ZeroAfterAPunchIsLegal) {
  EXPECT_TRUE(judge(PageImage{}, Window::of(6, {H})).legal);
}

TEST(OracleContent, ZeroAfterATruncationIsLegal) {
  EXPECT_TRUE(judge(PageImage{}, Window::of(6, {T})).legal);
}

TEST(OracleContent, ZeroWhileAPunchIsInFlightIsLegal) {
  EXPECT_TRUE(judge(PageImage{}, Window::of(5, {D, H})).legal);
}

TEST(OracleContent, ZeroWhileAFillIsInFlightIsLegal) {
  EXPECT_TRUE(judge(PageImage{}, Window::of(4, {H, D})).legal);
}

// --- content: valid generations ---

TEST(OracleContent, TheCompletedGenerationIsLegal) {
  EXPECT_TRUE(judge(gen(5), Window::of(5, {D})).legal);
}

TEST(OracleContent, AnOlderGenerationIsStaleData) {
  const Judgement j = judge(gen(4), Window::of(5, {D}));
  EXPECT_FALSE(j.legal);
  EXPECT_EQ(j.finding, Finding::stale_data);
}

TEST(OracleContent, DataAfterACompletedPunchIsStaleData) {
  EXPECT_EQ(judge(gen(5), Window::of(6, {H})).finding, Finding::stale_data);
}

TEST(OracleContent, DataFromBeforeATruncationIsStaleOnceRegrown) {
  EXPECT_EQ(judge(gen(5), Window::of(6, {T})).finding, Finding::stale_data);
}

TEST(OracleContent, EitherGenerationWhileAnOverwriteIsInFlightIsLegal) {
  EXPECT_TRUE(judge(gen(5), Window::of(5, {D, D})).legal);
  EXPECT_TRUE(judge(gen(6), Window::of(5, {D, D})).legal);
}

TEST(OracleContent, OldDataWhileAPunchIsInFlightIsLegal) {
  EXPECT_TRUE(judge(gen(5), Window::of(5, {D, H})).legal);
}

TEST(OracleContent, AGenerationNotYetBegunIsFutureData) {
  EXPECT_EQ(judge(gen(7), Window::of(5, {D, D})).finding, Finding::future_data);
}

TEST(OracleContent, DataStampedWithAHoleStateIsIllegal) {
  EXPECT_EQ(judge(gen(6), Window::of(5, {D, H})).finding, Finding::data_in_hole_state);
}

// --- content: torn ---

TEST(OracleContent, TornWithNoOpInFlightIsAViolation) {
  const Judgement j = judge(splice(gen(5), gen(6), 2048), Window::of(6, {D}));
  EXPECT_FALSE(j.legal);
  EXPECT_EQ(j.finding, Finding::torn_at_rest);
}

TEST(OracleContent, TornBetweenTheWindowsGenerationsIsLegal) {
  const Judgement j = judge(splice(gen(6), gen(5), 2048), Window::of(5, {D, D}));
  EXPECT_TRUE(j.legal) << j.reason;
  EXPECT_EQ(j.finding, Finding::torn_in_flight);
}

TEST(OracleContent, TornBetweenZeroAndAFillIsLegal) {
  EXPECT_TRUE(judge(splice(gen(5), PageImage{}, 100), Window::of(4, {H, D})).legal);
}

TEST(OracleContent, TornWithBytesOfAnOlderGenerationIsAViolation) {
  const Judgement j = judge(splice(gen(6), gen(4), 2048), Window::of(5, {D, D}));
  EXPECT_FALSE(j.legal);
  EXPECT_EQ(j.finding, Finding::torn_outside_window);
}

TEST(OracleContent, TornWithZerosWhileAnOverwriteIsInFlightIsAViolation) {
  EXPECT_EQ(judge(splice(gen(6), PageImage{}, 2048), Window::of(5, {D, D})).finding,
            Finding::torn_outside_window);
}

// --- content: never legal ---

TEST(OracleContent, AnotherPagesStampIsMisplaced) {
  const PageImage other = make_stamp({kRun, kOffset + kPageSize, 5, 0, 0});
  EXPECT_EQ(judge(other, Window::of(5, {D})).finding, Finding::misplaced);
}

TEST(OracleContent, AnotherRunsStampIsForeign) {
  const PageImage other = make_stamp({kRun + 1, kOffset, 5, 0, 0});
  EXPECT_EQ(judge(other, Window::of(5, {D, D})).finding, Finding::foreign);
}

TEST(OracleContent, APrivateStoreSeenThroughTheObjectLeaked) {
  const PageImage mine = make_stamp({kRun, kOffset, 1, kStampPrivate, 3});
  EXPECT_EQ(judge(mine, Window::of(5, {D, H})).finding, Finding::private_leak);
}

TEST(OracleLayout, NamesTheGenerationOfEveryRunOfWords) {
  EXPECT_EQ(describe_layout(splice(gen(6), PageImage{}, 2048), kCtx, Window::of(5, {D, D})),
            "words 0-255: gen 6; words 256-511: zero");
  EXPECT_EQ(describe_layout(splice(gen(6), gen(4), 1024), kCtx, Window::of(6, {D})),
            "words 0-127: gen 6; words 128-511: gen 4");
  EXPECT_EQ(describe_layout(gen(6), kCtx, Window::of(6, {D})), "words 0-511: gen 6");
}

TEST(OracleWindow, BuildRefusesWindowsItCannotDescribe) {
  const auto data = [](std::uint64_t) { return std::optional<StateKind>(StateKind::data); };
  const auto unknown = [](std::uint64_t) { return std::optional<StateKind>(); };
  EXPECT_TRUE(Window::build(3, 3 + kMaxWindow - 1, data).has_value());
  EXPECT_FALSE(Window::build(3, 3 + kMaxWindow, data).has_value()) << "too wide";
  EXPECT_FALSE(Window::build(3, 4, unknown).has_value()) << "log slot reused";
  const auto w = Window::build(0, 1, data);
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->kind(0), StateKind::hole) << "state 0 is the initial hole";
}

// --- extent ---

TEST(OracleExtent, SigbusBeyondACompletedShrinkIsLegal) {
  EXPECT_TRUE(
      judge_extent(Access::mmap_load, true, 8 * kPageSize, {2, 2, 8 * kPageSize, 8 * kPageSize})
          .legal);
}

TEST(OracleExtent, ALoadBeyondACompletedShrinkThatSucceedsIsAViolation) {
  const Judgement j =
      judge_extent(Access::mmap_load, false, 8 * kPageSize, {2, 2, 8 * kPageSize, 8 * kPageSize});
  EXPECT_FALSE(j.legal);
  EXPECT_EQ(j.finding, Finding::access_beyond_eof);
}

TEST(OracleExtent, SigbusBelowEveryPublishedSizeIsAViolation) {
  const Judgement j =
      judge_extent(Access::mmap_load, true, 7 * kPageSize, {2, 3, 8 * kPageSize, 16 * kPageSize});
  EXPECT_FALSE(j.legal);
  EXPECT_EQ(j.finding, Finding::fault_within_eof);
}

TEST(OracleExtent, WhileAShrinkIsInFlightBothOutcomesAreLegal) {
  const SizeWindow shrinking{2, 3, 8 * kPageSize, 16 * kPageSize};
  EXPECT_TRUE(judge_extent(Access::mmap_load, true, 10 * kPageSize, shrinking).legal);
  EXPECT_TRUE(judge_extent(Access::mmap_load, false, 10 * kPageSize, shrinking).legal);
}

TEST(OracleExtent, PreadAtEofIsJudgedLikeSigbus) {
  EXPECT_FALSE(
      judge_extent(Access::pread, true, 4 * kPageSize, {0, 0, 8 * kPageSize, 8 * kPageSize}).legal);
  EXPECT_TRUE(
      judge_extent(Access::pread, true, 8 * kPageSize, {0, 0, 8 * kPageSize, 8 * kPageSize}).legal);
}

// --- MAP_PRIVATE copies ---

constexpr std::uint32_t kMe = 4;
PageImage mine(std::uint64_t g) { return make_stamp({kRun, kOffset, g, kStampPrivate, kMe}); }

PrivateView judge_view(const PageImage& page, const PrivateCopy& copy, const CutWindow& cuts,
                       const Window& window = Window::of(5, {D})) {
  return judge_private(page, classify(page, kOffset, kRun), copy, cuts, window, kCtx, kMe);
}

constexpr PrivateCopy kExactCopy{true, true, 9, 2};  // gen 9, made after truncation 2 began

TEST(OraclePrivate, TheCopyIsLegalWhileNoTruncationCompleted) {
  const PrivateView v = judge_view(mine(9), kExactCopy, {2, 3});
  EXPECT_EQ(v.source, PrivateSource::private_copy);
  ASSERT_TRUE(v.judgement.has_value());
  EXPECT_TRUE(v.judgement->legal);
}

TEST(OraclePrivate, TheCopyAfterACompletedTruncationSurvivedIt) {
  const PrivateView v = judge_view(mine(9), kExactCopy, {3, 3});
  ASSERT_TRUE(v.judgement.has_value());
  EXPECT_EQ(v.judgement->finding, Finding::private_copy_survived_truncation);
}

TEST(OraclePrivate, ObjectContentWithNoTruncationSinceTheStoreMeansTheCopyWasLost) {
  const PrivateView v = judge_view(gen(5), kExactCopy, {2, 2});
  ASSERT_TRUE(v.judgement.has_value());
  EXPECT_EQ(v.judgement->finding, Finding::private_copy_lost);
  EXPECT_EQ(judge_private_refusal(kExactCopy, {2, 2})->finding, Finding::private_copy_lost);
}

TEST(OraclePrivate, ObjectContentAfterATruncationIsJudgedAsTheObject) {
  const PrivateView v = judge_view(gen(5), kExactCopy, {3, 3});
  EXPECT_EQ(v.source, PrivateSource::object);
  EXPECT_FALSE(v.judgement.has_value());
  EXPECT_FALSE(judge_private_refusal(kExactCopy, {2, 3}).has_value());
}

TEST(OraclePrivate, AnotherActorsPrivateStoreLeaked) {
  const PageImage theirs = make_stamp({kRun, kOffset, 9, kStampPrivate, kMe + 1});
  EXPECT_EQ(judge_view(theirs, kExactCopy, {2, 2}).judgement->finding, Finding::private_leak);
}

TEST(OraclePrivate, APrivateStampWithoutACopyWasResurrected) {
  EXPECT_EQ(judge_view(mine(9), PrivateCopy{}, {2, 2}).judgement->finding,
            Finding::private_copy_resurrected);
}

TEST(OraclePrivate, ATornExactCopyWithNoTruncationIsCorrupt) {
  EXPECT_EQ(judge_view(splice(mine(9), gen(5), 1024), kExactCopy, {2, 2}).judgement->finding,
            Finding::private_copy_corrupt);
}

TEST(OraclePrivate, ALoadStraddlingTheDiscardMayMixTheCopyAndTheObject) {
  const Window regrown = Window::of(6, {T});
  const PrivateView v = judge_view(splice(mine(9), PageImage{}, 1024), kExactCopy, {2, 3}, regrown);
  ASSERT_TRUE(v.judgement.has_value());
  EXPECT_TRUE(v.judgement->legal) << v.judgement->reason;
  EXPECT_EQ(v.source, PrivateSource::object) << "the copy is gone after such a load";
}

TEST(OraclePrivate, AStraddlingLoadWithStaleObjectBytesIsAViolation) {
  const Window regrown = Window::of(6, {T});
  const PrivateView v = judge_view(splice(mine(9), gen(5), 1024), kExactCopy, {2, 3}, regrown);
  ASSERT_TRUE(v.judgement.has_value());
  EXPECT_EQ(v.judgement->finding, Finding::torn_outside_window);
}

TEST(OraclePrivate, AnInexactCopyMayBeTorn) {
  const PrivateCopy inexact{true, false, 9, 2};
  const PrivateView v = judge_view(splice(mine(9), gen(3), 1024), inexact, {2, 2});
  ASSERT_TRUE(v.judgement.has_value());
  EXPECT_TRUE(v.judgement->legal);
}

}  // namespace
}  // namespace vmcoh::oracle
