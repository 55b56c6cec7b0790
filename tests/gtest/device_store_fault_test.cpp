// Stores through a shared mapping of a plain object take one trap, into an allocated block or a
// hole: ->fault hands the block to the core locked, which asks ->page_mkwrite and installs a
// writable PTE (kmod/fault.c, fault_store_in_one_trap()).  A load first maps read-only, and the
// store after it takes the write-notify trap, so the zero page is never writable.  With a window
// the old two traps stay, and so does everything these tests check about the data.
#include <sys/mman.h>
#include <sys/resource.h>

#include <cstring>

#include "test_object.hpp"

namespace vmcoh::test {
namespace {

// Page faults this thread has taken (minor: the device never does I/O in a fault).
std::uint64_t minor_faults() {
  rusage usage{};
  ::getrusage(RUSAGE_THREAD, &usage);
  return static_cast<std::uint64_t>(usage.ru_minflt);
}

class StoreFaultTest : public DeviceTest {
 protected:
  void SetUp() override {
    DeviceTest::SetUp();
    if (IsSkipped()) return;
    window_ = (info().features & VMCOH_FEATURE_WINDOW) != 0;
  }

  // Traps the store of `data` into block b of `m` took.
  static std::uint64_t store(const Mapping& m, std::uint64_t b, const PageImage& data) {
    const std::uint64_t before = minor_faults();
    std::memcpy(m.data() + b * kBlock, data.bytes(), kBlock);
    return minor_faults() - before;
  }

  [[nodiscard]] std::uint64_t traps_of_a_store() const { return window_ ? 2 : 1; }

  bool window_ = false;
};

TEST_F(StoreFaultTest, AStoreIntoAnAllocatedBlockTakesOneTrap) {
  pwrite_block(fd(), 5, block_stamp(5, 1));
  const Mapping shared = map(PROT_READ | PROT_WRITE, MAP_SHARED);
  const vmcoh_stats before = stats();
  EXPECT_EQ(store(shared, 5, block_stamp(5, 2)), traps_of_a_store());
  const vmcoh_stats after = stats();
  EXPECT_EQ(after.faults - before.faults, 1U);
  EXPECT_EQ(after.mkwrite_faults - before.mkwrite_faults, 1U) << "the core asks ->page_mkwrite";
  EXPECT_EQ(pread_block(fd(), 5), block_stamp(5, 2));
}

TEST_F(StoreFaultTest, AStoreIntoAHoleTakesOneTrapAndMapsNoZeroPage) {
  const Mapping shared = map(PROT_READ | PROT_WRITE, MAP_SHARED);
  const Mapping reader = map(PROT_READ, MAP_SHARED);
  const vmcoh_stats before = stats();
  EXPECT_EQ(store(shared, 9, block_stamp(9, 1)), traps_of_a_store());
  const vmcoh_stats after = stats();
  EXPECT_EQ(after.blocks_live - before.blocks_live, 1U);
  EXPECT_EQ(after.zero_page_maps, before.zero_page_maps);
  EXPECT_EQ(mapped_block(reader, 9), block_stamp(9, 1)) << "through another mapping";
  EXPECT_EQ(pread_block(fd(), 9), block_stamp(9, 1));
}

// The load maps the zero page read-only; the store then takes the write-notify trap, which
// allocates and maps the block in its place: the zero page never becomes writable.
TEST_F(StoreFaultTest, AStoreAfterALoadOfAHoleTrapsAgainAndNeverWritesTheZeroPage) {
  const Mapping shared = map(PROT_READ | PROT_WRITE, MAP_SHARED);
  const Mapping other = map(PROT_READ, MAP_SHARED);
  ASSERT_TRUE(mapped_block(shared, 12).is_zero());
  ASSERT_TRUE(mapped_block(other, 13).is_zero());
  EXPECT_GE(store(shared, 12, block_stamp(12, 1)), 1U);
  EXPECT_EQ(mapped_block(other, 12), block_stamp(12, 1));
  EXPECT_TRUE(mapped_block(other, 13).is_zero()) << "the zero page was written";
  EXPECT_TRUE(mapped_block(shared, 13).is_zero()) << "the zero page was written";
}

// A block a store mapped in one trap is unmapped by a punch like any other: loads through the
// storing mapping then see the hole, and the next store allocates a new block.
TEST_F(StoreFaultTest, APunchUnmapsABlockAStoreMappedInOneTrap) {
  const Mapping shared = map(PROT_READ | PROT_WRITE, MAP_SHARED);
  ASSERT_EQ(store(shared, 20, block_stamp(20, 1)), traps_of_a_store());
  target().punch_hole(20 * kBlock, kBlock);
  EXPECT_TRUE(mapped_block(shared, 20).is_zero());
  EXPECT_TRUE(pread_block(fd(), 20).is_zero());
  store(shared, 20, block_stamp(20, 2));
  EXPECT_EQ(pread_block(fd(), 20), block_stamp(20, 2));
}

}  // namespace
}  // namespace vmcoh::test
