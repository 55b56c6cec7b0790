// The race harness's reader, end to end, against a tmpfs file whose published history lies: the
// page cache is coherent, so every lie below is a "kernel bug" the sampler must report.  This is
// how the oracle is shown to catch bugs without the module.
#include "sampler.hpp"

#include <sys/mman.h>

#include <cstring>
#include <limits>

#include <gtest/gtest.h>

#include <vmcoh/sigbus_probe.hpp>

#include "page_ops.hpp"
#include "shared_state.hpp"
#include "test_object.hpp"

namespace vmcoh::race {
namespace {

constexpr std::size_t kPages = 16;
constexpr std::string_view kScenario = "sampler-test";

class SamplerTest : public testing::Test {
 protected:
  void SetUp() override {
    install_sigbus_probe();
    object_ = test::ScratchObject::tmpfs_file();
    if (!object_) GTEST_SKIP() << "no tmpfs directory";
    config_.target = object_->target().path();
    config_.pages = kPages;
    target().set_size(kPages * kPageSize);
    shared_.begin_resize(0, kPages * kPageSize);
    shared_.end_resize(0);
    env_.emplace(config_, shared_, kScenario, 0, 0, 0, std::numeric_limits<std::uint64_t>::max());
    sampler_.emplace(*env_, target(), true);
  }

  [[nodiscard]] const Target& target() const { return object_->target(); }
  [[nodiscard]] std::uint64_t run_id() const { return config_.run_id(kScenario); }
  [[nodiscard]] PageImage stamp(std::size_t page, std::uint64_t generation) const {
    return make_stamp({run_id(), page * kPageSize, generation, 0, 0});
  }

  // Publishes the next state of `page` as `kind` without touching the object.
  std::uint64_t publish(std::size_t page, StateKind kind, OpMethod method = OpMethod::pwrite) {
    const std::uint64_t state = shared_.last_state(page) + 1;
    shared_.begin_op(page, state, kind, method, page, 1);
    shared_.end_op(page, state);
    return state;
  }
  // Writes the next state of `page` for real, and publishes it.
  void write(std::size_t page) {
    const std::uint64_t state = shared_.last_state(page) + 1;
    write_page(target().fd(), page * kPageSize, stamp(page, state), OpMethod::pwrite);
    publish(page, StateKind::data);
  }
  void publish_size(std::uint64_t generation, std::size_t pages) {
    shared_.begin_resize(generation, pages * kPageSize);
    shared_.end_resize(generation);
  }

  [[nodiscard]] std::vector<ViolationRecord> violations() const {
    return shared_.recorded_violations();
  }

  std::unique_ptr<test::ScratchObject> object_;
  RunConfig config_;
  SharedState shared_{kPages, 1, 1};
  std::optional<ActorEnv> env_;
  std::optional<Sampler> sampler_;
};

TEST_F(SamplerTest, AcceptsPagesThatMatchTheirHistory) {
  write(3);
  sampler_->shared_load(3);
  sampler_->pread(3);
  sampler_->shared_load(4);  // never written: the initial hole
  EXPECT_TRUE(violations().empty());
  EXPECT_EQ(env_->counters().samples, 3U);
  EXPECT_EQ(env_->counters().decisive, 3U);
}

TEST_F(SamplerTest, ReportsAZeroPageAfterAPublishedWrite) {
  publish(3, StateKind::data);
  sampler_->shared_load(3);
  const auto v = violations();
  ASSERT_EQ(v.size(), 1U);
  EXPECT_EQ(v[0].finding, oracle::Finding::stale_zero);
  EXPECT_EQ(v[0].path, ReadPath::shared_load);
  EXPECT_EQ(v[0].page, 3U);
  EXPECT_EQ(v[0].log[1].tag >> 8, 1U) << "the op log names the write";
}

TEST_F(SamplerTest, ReportsAZeroPageThroughPreadToo) {
  publish(5, StateKind::data);
  sampler_->pread(5);
  const auto v = violations();
  ASSERT_EQ(v.size(), 1U);
  EXPECT_EQ(v[0].finding, oracle::Finding::stale_zero);
  EXPECT_EQ(v[0].path, ReadPath::pread);
}

TEST_F(SamplerTest, ReportsStaleDataAfterAPublishedOverwrite) {
  write(6);
  sampler_->shared_load(6);  // maps it
  publish(6, StateKind::data);
  sampler_->shared_load(6);
  const auto v = violations();
  ASSERT_EQ(v.size(), 1U);
  EXPECT_EQ(v[0].finding, oracle::Finding::stale_data);
  EXPECT_EQ(v[0].header.generation, 1U);
}

TEST_F(SamplerTest, ReportsDataThatSurvivedAPublishedPunch) {
  write(7);
  publish(7, StateKind::hole, OpMethod::punch);
  sampler_->shared_load(7);
  ASSERT_EQ(violations().size(), 1U);
  EXPECT_EQ(violations()[0].finding, oracle::Finding::stale_data);
}

TEST_F(SamplerTest, ReportsAnotherPagesStamp) {
  write_page(target().fd(), 8 * kPageSize, stamp(9, 1), OpMethod::pwrite);
  publish(8, StateKind::data);
  sampler_->shared_load(8);
  ASSERT_EQ(violations().size(), 1U);
  EXPECT_EQ(violations()[0].finding, oracle::Finding::misplaced);
}

TEST_F(SamplerTest, ReportsALoadThatSucceedsBeyondAPublishedShrink) {
  publish_size(1, 8);
  sampler_->shared_load(12);
  ASSERT_EQ(violations().size(), 1U);
  EXPECT_EQ(violations()[0].finding, oracle::Finding::access_beyond_eof);
}

TEST_F(SamplerTest, ReportsASigbusBelowThePublishedSize) {
  target().set_size(8 * kPageSize);
  sampler_->shared_load(12);
  ASSERT_EQ(violations().size(), 1U);
  EXPECT_EQ(violations()[0].finding, oracle::Finding::fault_within_eof);
}

TEST_F(SamplerTest, AcceptsASigbusBeyondAPublishedShrink) {
  target().set_size(8 * kPageSize);
  publish_size(1, 8);
  sampler_->shared_load(12);
  sampler_->pread(12);
  EXPECT_TRUE(violations().empty());
  EXPECT_EQ(env_->counters().refused, 2U);
}

TEST_F(SamplerTest, ReportsAPrivateCopyThatSurvivedAPublishedTruncation) {
  while (env_->counters().private_stores == 0) sampler_->private_access(12);
  // A shrink cutting page 12 and a regrow, published but never done: the copy stays.
  publish_size(1, 8);
  shared_.begin_cut(12);
  publish(12, StateKind::truncated, OpMethod::shrink);
  shared_.end_cut(12);
  publish_size(2, kPages);
  sampler_->private_access(12);
  ASSERT_EQ(violations().size(), 1U);
  EXPECT_EQ(violations()[0].finding, oracle::Finding::private_copy_survived_truncation);
  EXPECT_EQ(violations()[0].path, ReadPath::private_load);
}

TEST_F(SamplerTest, AcceptsThePrivateCopyWhileNoTruncationHappened) {
  while (env_->counters().private_stores == 0) sampler_->private_access(13);
  write(13);  // object writes do not touch a private copy
  for (int i = 0; i < 4; ++i) sampler_->private_access(13);
  EXPECT_TRUE(violations().empty());
  EXPECT_EQ(env_->counters().private_stores, 1U) << "the copy stayed, so no new store";
}

// A store is not atomic: a reader may see part of it while it is in flight, never once it is done.
TEST_F(SamplerTest, AcceptsAPartlyStoredPageOnlyWhileTheStoreIsInFlight) {
  write(9);
  const Mapping map =
      Mapping::map(kPages * kPageSize, PROT_READ | PROT_WRITE, MAP_SHARED, target().fd());
  const PageImage next = stamp(9, 2);
  shared_.begin_op(9, 2, StateKind::data, OpMethod::mmap_store, 9, 1);
  std::memcpy(map.data() + 9 * kPageSize, next.bytes(), kPageSize / 2);
  sampler_->shared_load(9);
  EXPECT_TRUE(violations().empty());
  EXPECT_EQ(env_->counters().torn, 1U);
  shared_.end_op(9, 2);  // published done with half the store missing
  sampler_->shared_load(9);
  ASSERT_EQ(violations().size(), 1U);
  EXPECT_EQ(violations()[0].finding, oracle::Finding::torn_at_rest);
}

TEST_F(SamplerTest, AcceptsAStoreIntoAHoleHalfDoneWhileInFlight) {
  const Mapping map =
      Mapping::map(kPages * kPageSize, PROT_READ | PROT_WRITE, MAP_SHARED, target().fd());
  shared_.begin_op(10, 1, StateKind::data, OpMethod::mmap_store, 10, 1);
  std::memcpy(map.data() + 10 * kPageSize + kPageSize / 2, stamp(10, 1).bytes() + kPageSize / 2,
              kPageSize / 2);
  sampler_->shared_load(10);
  EXPECT_TRUE(violations().empty()) << "zeros and the new stamp, with the store in flight";
}

// eof-vs-fault's readers: a 2 MiB-aligned shared mapping, parts of it mapped afresh.
TEST_F(SamplerTest, AnAlignedSamplerJudgesLikeAnyOtherAndSurvivesARemap) {
  Sampler aligned(*env_, target(), false, SharedMap::pmd_aligned);
  write(5);
  aligned.shared_load(5);
  aligned.remap_shared(0, kPages);
  aligned.shared_load(5);
  aligned.shared_load(6);
  publish(5, StateKind::data);
  aligned.shared_load(5);
  ASSERT_EQ(violations().size(), 1U);
  EXPECT_EQ(violations()[0].finding, oracle::Finding::stale_data);
}

TEST_F(SamplerTest, TheLatestSizeIsTheLastOneBegun) {
  EXPECT_EQ(shared_.latest_size(), kPages * kPageSize);
  shared_.begin_resize(1, 8 * kPageSize);
  EXPECT_EQ(shared_.latest_size(), 8 * kPageSize) << "begun counts, done or not";
}

}  // namespace
}  // namespace vmcoh::race
