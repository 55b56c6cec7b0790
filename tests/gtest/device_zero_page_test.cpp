// Holes are mapped to one zero page shared by every hole of every mapping, so a store that
// reached it would show up in every other hole.  Stores must go through page_mkwrite, which
// replaces the zero page with a block under the entry lock, in every VMA that maps it.
#include <sys/mman.h>

#include "test_object.hpp"

namespace vmcoh::test {
namespace {

using ZeroPageTest = DeviceTest;

TEST_F(ZeroPageTest, StoreIntoAHoleNeverReachesOtherHoles) {
  const Mapping shared = map(PROT_READ | PROT_WRITE, MAP_SHARED);
  for (std::uint64_t b = 3; b <= 5; ++b) ASSERT_TRUE(mapped_block(shared, b).is_zero());
  const vmcoh_stats before = stats();

  store_block(shared, 4, block_stamp(4, 1));

  EXPECT_EQ(mapped_block(shared, 4), block_stamp(4, 1));
  EXPECT_EQ(pread_block(fd(), 4), block_stamp(4, 1));
  for (const std::uint64_t b : {3, 5, 6}) {
    EXPECT_TRUE(mapped_block(shared, b).is_zero()) << "hole " << b << " through the mapping";
    EXPECT_TRUE(pread_block(fd(), b).is_zero()) << "hole " << b << " through read(2)";
  }
  const Mapping fresh = map(PROT_READ, MAP_SHARED);
  EXPECT_TRUE(mapped_block(fresh, 7).is_zero()) << "a hole faulted after the store";
  EXPECT_GE(stats().zero_page_upgrades - before.zero_page_upgrades, 1U);
}

TEST_F(ZeroPageTest, StoreReplacesTheZeroPageInEveryMapping) {
  const Mapping writer = map(PROT_READ | PROT_WRITE, MAP_SHARED);
  const Mapping reader = map(PROT_READ, MAP_SHARED);
  const Mapping cow = map(PROT_READ, MAP_PRIVATE);
  ASSERT_TRUE(mapped_block(writer, 9).is_zero());
  ASSERT_TRUE(mapped_block(reader, 9).is_zero());
  ASSERT_TRUE(mapped_block(cow, 9).is_zero());

  store_block(writer, 9, block_stamp(9, 1));

  EXPECT_EQ(mapped_block(reader, 9), block_stamp(9, 1)) << "a shared reader kept the zero page";
  EXPECT_EQ(mapped_block(cow, 9), block_stamp(9, 1))
      << "a private mapping that never wrote the page must follow the object";
}

TEST_F(ZeroPageTest, PrivateStoreIntoAHoleAllocatesNothing) {
  const Mapping cow = map(PROT_READ | PROT_WRITE, MAP_PRIVATE);
  ASSERT_TRUE(mapped_block(cow, 11).is_zero());
  const vmcoh_stats before = stats();

  store_block(cow, 11, block_stamp(11, 1));

  EXPECT_EQ(mapped_block(cow, 11), block_stamp(11, 1));
  EXPECT_TRUE(pread_block(fd(), 11).is_zero());
  EXPECT_TRUE(mapped_block(cow, 12).is_zero()) << "the copy must not be the zero page itself";
  EXPECT_EQ(stats().blocks_live, before.blocks_live);
}

}  // namespace
}  // namespace vmcoh::test
