// Holes are mapped to one zero page shared by every hole of every mapping, so a store that
// reached it would show up in every other hole.  Stores must go through page_mkwrite, which
// replaces the zero page with a block under the entry lock, in every VMA that maps it.
#include <sys/mman.h>

#include <cstdint>
#include <string>

#include <vmcoh/sigbus_probe.hpp>

#include "backing_fixture.hpp"
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

// Entries record what page tables may map (kmod/entry.c): a hole read once leaves a ZERO entry,
// so that filling it unmaps the zero page.  Once the last mapping of the object has gone nothing
// is mapped, and the entries go with it (issue 14, item 9a); before, reading a sparse object once
// left an entry per page until an invalidation happened to cover it - a terabyte's worth of
// xarray nodes for a 1 TiB object.  While another mapping remains, its entries must stay: a
// write(2) into a hole it maps must still take the zero page out of it.  A block needs no entry
// at all: it is mapped under its page lock (kmod/fault.c, "Page locks", issue 16).
TEST_F(ZeroPageTest, EntriesGoWithTheLastMapping) {
  const std::uint64_t pages = kTestSize / kBlock;
  device::punch_hole(fd(), 0, kTestSize);
  const vmcoh_stats before = stats();
  {
    const Mapping keep = map(PROT_READ, MAP_SHARED);
    ASSERT_TRUE(mapped_block(keep, 7).is_zero());
    {
      const Mapping once = map(PROT_READ, MAP_SHARED);
      for (std::uint64_t b = 0; b < pages; ++b) ASSERT_TRUE(mapped_block(once, b).is_zero());
    }
    ASSERT_EQ(::pwrite(fd(), block_stamp(7, 1).bytes(), kBlock, 7 * kBlock),
              static_cast<ssize_t>(kBlock));
    EXPECT_EQ(mapped_block(keep, 7), block_stamp(7, 1))
        << "one mapping went, and a hole another maps kept its zero page after write(2)";
  }
  const vmcoh_stats unmapped = stats();
  EXPECT_GE(unmapped.entries_trimmed - before.entries_trimmed, pages - 1);
  device::punch_hole(fd(), 0, kTestSize);
  EXPECT_EQ(stats().entries_removed - unmapped.entries_removed, 0U)
      << "hole entries outlived every mapping, or block 7 was mapped with an entry";
}

// The value of `field` ("Rss", "Pss") in kB for the VMA that starts at `start`, or -1.
long smaps_kb(const void* start, const std::string& field) {
  const std::string line = smaps_line(start, field + ":");
  return line.empty() ? -1 : std::stol(line.substr(field.size() + 1));
}

// Each hole maps the device's one zero page by its own PTE: it counts in the process's RSS, as a
// page of a shared library mapped in many processes counts in each, and PSS divides the one page
// among its mappings (issue 14, item 9b: the RSS is what the kernel counts for any page mapped
// many times; the memory is one page).
TEST_F(ZeroPageTest, HolesCountInRssOncePerMappingAndInPssAsOnePage) {
  const Mapping holes = map(PROT_READ, MAP_SHARED);
  for (std::uint64_t b = 0; b < kTestBlocks; ++b) ASSERT_TRUE(mapped_block(holes, b).is_zero());
  EXPECT_EQ(smaps_kb(holes.data(), "Rss"), static_cast<long>(kTestSize / 1024));
  EXPECT_LE(smaps_kb(holes.data(), "Pss"), 4L) << "PSS counts the zero page once";
}

// Each hole PTE also takes a reference to the zero page (and a GUP pin 1024): past 2^30 a hole
// gets SIGBUS instead of running the count towards overflow, a freed zero page and a
// use-after-free (issue 14, item 9b).  test_hooks=1 zero_page_max_refs lowers the bound, since
// nobody can map 2^30 holes in a test; this runs with the hold-point tests
// (tests/guest/interleavings.sh).
class ZeroPageBoundTest : public DeviceTest {
 protected:
  void SetUp() override {
    DeviceTest::SetUp();
    if (!IsSkipped()) require_test_hooks();
  }
};

TEST_F(ZeroPageBoundTest, HolesPastTheZeroPagesBoundGetSigbus) {
  install_sigbus_probe();
  const Mapping holes = map(PROT_READ, MAP_SHARED);
  const vmcoh_stats before = stats();
  std::uint64_t sigbus = kTestBlocks;
  {
    const ParameterOverride bound("zero_page_max_refs", "32");
    for (std::uint64_t b = 0; b < kTestBlocks && sigbus == kTestBlocks; ++b) {
      if (!probed_block(holes, b)) sigbus = b;
    }
  }
  ASSERT_LT(sigbus, 32U) << "no hole of " << kTestBlocks
                         << " got SIGBUS, though the zero page had more than 32 references";
  EXPECT_GT(stats().sigbus, before.sigbus);
  const std::optional<PageImage> after = probed_block(holes, sigbus);
  ASSERT_TRUE(after) << "SIGBUS at hole " << sigbus << " with the bound back at 2^30";
  EXPECT_TRUE(after->is_zero());
}

}  // namespace
}  // namespace vmcoh::test
