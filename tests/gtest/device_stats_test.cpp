// GET_STATS counters move with what the device does.  They are global to the device, so each
// test compares snapshots taken around one action.
#include <sys/mman.h>

#include <vmcoh/sigbus_probe.hpp>

#include "test_object.hpp"

namespace vmcoh::test {
namespace {

using StatsTest = DeviceTest;

TEST_F(StatsTest, ReadFaultOnAHoleMapsTheZeroPage) {
  const Mapping shared = map(PROT_READ, MAP_SHARED);
  const vmcoh_stats before = stats();
  EXPECT_TRUE(mapped_block(shared, 3).is_zero());
  const vmcoh_stats after = stats();
  EXPECT_GE(after.faults - before.faults, 1U);
  EXPECT_GE(after.zero_page_maps - before.zero_page_maps, 1U);
  EXPECT_EQ(after.blocks_live, before.blocks_live) << "reading a hole allocates nothing";
}

TEST_F(StatsTest, PunchOfAMappedRangeInvalidatesOnceWithOneRangedUnmap) {
  for (std::uint64_t b = 0; b < 8; ++b) pwrite_block(fd(), b, block_stamp(b, 1));
  const Mapping shared = map(PROT_READ, MAP_SHARED);
  for (std::uint64_t b = 0; b < 8; ++b) ASSERT_EQ(mapped_block(shared, b), block_stamp(b, 1));
  const vmcoh_stats before = stats();
  target().punch_hole(0, 8 * kBlock);
  const vmcoh_stats after = stats();
  EXPECT_EQ(after.invalidations - before.invalidations, 1U);
  EXPECT_EQ(after.ranged_unmaps - before.ranged_unmaps, 1U);
  // Blocks of a plain object are mapped under their page locks, with no entry (kmod/fault.c,
  // "Page locks"): the one unmap is step 3b's, after it found the blocks mapped.
  EXPECT_EQ(after.entries_removed - before.entries_removed, 0U);
}

TEST_F(StatsTest, BlocksLiveTracksAllocationAndPunch) {
  const vmcoh_stats before = stats();
  for (std::uint64_t b = 10; b < 15; ++b) pwrite_block(fd(), b, block_stamp(b, 1));
  const vmcoh_stats written = stats();
  EXPECT_EQ(written.blocks_live, before.blocks_live + 5);
  EXPECT_EQ(written.blocks_allocated - before.blocks_allocated, 5U);
  pwrite_block(fd(), 10, block_stamp(10, 2));
  EXPECT_EQ(stats().blocks_live, written.blocks_live) << "an overwrite allocates nothing";
  target().punch_hole(10 * kBlock, 5 * kBlock);
  const vmcoh_stats punched = stats();
  EXPECT_EQ(punched.blocks_live, before.blocks_live);
  EXPECT_EQ(punched.blocks_freed - written.blocks_freed, 5U);
}

TEST_F(StatsTest, ShrinkFreesTheBlocksItCuts) {
  for (std::uint64_t b = 40; b < 44; ++b) pwrite_block(fd(), b, block_stamp(b, 1));
  const vmcoh_stats before = stats();
  target().set_size(40 * kBlock);
  EXPECT_EQ(stats().blocks_live, before.blocks_live - 4);
}

TEST_F(StatsTest, SigbusBeyondEofIsCounted) {
  install_sigbus_probe();
  const Mapping shared = map(PROT_READ, MAP_SHARED);
  target().set_size(8 * kBlock);
  const vmcoh_stats before = stats();
  ASSERT_TRUE(load_would_sigbus(shared.data() + 9 * kBlock));
  EXPECT_GE(stats().sigbus - before.sigbus, 1U);
}

TEST_F(StatsTest, CountersOnlyGrow) {
  const vmcoh_stats before = stats();
  const Mapping shared = map(PROT_READ | PROT_WRITE, MAP_SHARED);
  store_block(shared, 2, block_stamp(2, 1));
  pwrite_block(fd(), 3, block_stamp(3, 1));
  target().punch_hole(0, 4 * kBlock);
  const vmcoh_stats after = stats();
  EXPECT_GE(after.faults, before.faults);
  EXPECT_GE(after.mkwrite_faults, before.mkwrite_faults);
  EXPECT_GE(after.zero_page_maps, before.zero_page_maps);
  EXPECT_GE(after.zero_page_upgrades, before.zero_page_upgrades);
  EXPECT_GE(after.sigbus, before.sigbus);
  EXPECT_GE(after.entry_lock_waits, before.entry_lock_waits);
  EXPECT_GT(after.invalidations, before.invalidations);
  EXPECT_GE(after.ranged_unmaps, before.ranged_unmaps);
  EXPECT_GE(after.entries_removed, before.entries_removed);
  EXPECT_GT(after.blocks_allocated, before.blocks_allocated);
  EXPECT_GT(after.blocks_freed, before.blocks_freed);
}

}  // namespace
}  // namespace vmcoh::test
