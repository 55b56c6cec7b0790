// Fault-around (module parameter fault_around, 16 pages by default, off with test_hooks=1 unless
// given): a read fault also maps the blocks of its aligned window, each under its entry lock (or
// page lock, or in a window a count: kmod/fault.c); invalidation must then find and remove those
// PTEs exactly as it does the faulted ones.  The core asks ->map_pages
// first, which maps the window and the faulting page with it when that is an allocated block (no
// ->fault then), once the faulting PMD has a page table; holes and the rest go to ->fault.
#include <sys/mman.h>
#include <sys/utsname.h>

#include <cstdio>
#include <fstream>
#include <string>

#include <vmcoh/sigbus_probe.hpp>

#include "test_object.hpp"

namespace vmcoh::test {
namespace {

// Faults answered, by ->fault or by ->map_pages alone.
std::uint64_t answered(const vmcoh_stats& s) { return s.faults + s.map_pages_faults; }

// Whether this kernel calls ->fault under the per-VMA lock for a VMA with ->map_pages (6.7 and
// later: vmf_can_call_fault()).
bool faults_under_vma_lock() {
  utsname u{};
  if (::uname(&u) != 0) return false;
  unsigned major = 0;
  unsigned minor = 0;
  if (std::sscanf(u.release, "%u.%u", &major, &minor) != 2) return false;
  return major > 6 || (major == 6 && minor >= 7);
}

class FaultAroundTest : public DeviceTest {
 protected:
  void SetUp() override {
    DeviceTest::SetUp();
    window_ = fault_around_window();
    if (window_ <= 1 || window_ > 32) GTEST_SKIP() << "fault_around is " << window_;
    install_sigbus_probe();
  }

  // A window is fault_around pages at an address aligned to their size, as the core's own
  // fault-around window is: a mapping at an aligned address puts the windows at aligned offsets.
  [[nodiscard]] Mapping map_window_aligned(int prot, int flags) const {
    return Mapping::map_aligned(kTestSize, window_ * kBlock, prot, flags, fd());
  }

  std::uint64_t window_ = 1;
};

TEST_F(FaultAroundTest, ReadFaultMapsTheBlocksOfItsWindowButNotItsHoles) {
  const std::uint64_t first = window_;
  const std::uint64_t hole = first + 3;
  for (std::uint64_t b = first; b < first + window_; ++b) {
    if (b != hole) pwrite_block(fd(), b, block_stamp(b, 1));
  }
  const Mapping shared = map_window_aligned(PROT_READ, MAP_SHARED);
  const vmcoh_stats before = stats();
  ASSERT_EQ(mapped_block(shared, first), block_stamp(first, 1));
  const vmcoh_stats faulted = stats();
  EXPECT_EQ(answered(faulted) - answered(before), 1U);
  EXPECT_EQ(faulted.fault_around_maps - before.fault_around_maps, window_ - 2)
      << "every block of the window but the faulting page's";
  for (std::uint64_t b = first + 1; b < first + window_; ++b) {
    if (b == hole) {
      EXPECT_TRUE(mapped_block(shared, b).is_zero());
    } else {
      EXPECT_EQ(mapped_block(shared, b), block_stamp(b, 1)) << "block " << b;
    }
  }
  const vmcoh_stats hole_faulted = stats();
  EXPECT_EQ(hole_faulted.faults - faulted.faults, 1U) << "only the hole faults";
  EXPECT_EQ(hole_faulted.map_pages_faults, faulted.map_pages_faults) << "a hole needs ->fault";
}

// Two blocks of one mapping in one 2 MiB of the address space, in different windows: once the
// first fault gave the PMD its page table, ->map_pages answers the second alone.  The hole after
// it still needs ->fault, which on 6.7 and later runs under the VMA lock, not mmap_lock.
TEST_F(FaultAroundTest, MapPagesAnswersAFaultOnABlockOnceThePageTableExists) {
  for (std::uint64_t b = 0; b < kTestBlocks; ++b) pwrite_block(fd(), b, block_stamp(b, 1));
  const std::uint64_t hole = kTestBlocks - 1;
  target().punch_hole(hole * kBlock, kBlock);
  const Mapping shared =
      Mapping::map_aligned(kTestSize, std::uint64_t{2} << 20, PROT_READ, MAP_SHARED, fd());
  const std::uint64_t second = 2 * window_;

  ASSERT_EQ(mapped_block(shared, 0), block_stamp(0, 1));
  const vmcoh_stats before = stats();
  ASSERT_EQ(mapped_block(shared, second), block_stamp(second, 1));
  const vmcoh_stats after = stats();
  EXPECT_EQ(after.map_pages_faults - before.map_pages_faults, 1U);
  EXPECT_EQ(after.faults, before.faults) << "->fault was called for an allocated block";
  EXPECT_EQ(after.fault_around_maps - before.fault_around_maps, window_ - 1);

  EXPECT_TRUE(mapped_block(shared, hole).is_zero());
  const vmcoh_stats holed = stats();
  EXPECT_EQ(holed.faults - after.faults, 1U);
  if (faults_under_vma_lock()) {
    EXPECT_EQ(holed.vma_lock_faults - after.vma_lock_faults, 1U);
  } else {
    EXPECT_EQ(holed.vma_lock_faults, 0U) << "a kernel without per-VMA locks for ->fault";
  }
}

TEST_F(FaultAroundTest, PagesMappedAroundAFaultAreInvalidatedLikeFaultedOnes) {
  const std::uint64_t first = 2 * window_;
  for (std::uint64_t b = first; b < first + window_; ++b) pwrite_block(fd(), b, block_stamp(b, 1));
  const Mapping shared = map_window_aligned(PROT_READ, MAP_SHARED);
  const Mapping priv = map_window_aligned(PROT_READ | PROT_WRITE, MAP_PRIVATE);
  ASSERT_EQ(mapped_block(shared, first), block_stamp(first, 1));
  ASSERT_EQ(mapped_block(priv, first), block_stamp(first, 1));
  const vmcoh_stats before = stats();

  pwrite_block(fd(), first + 1, block_stamp(first + 1, 2));
  EXPECT_EQ(mapped_block(shared, first + 1), block_stamp(first + 1, 2)) << "overwritten in place";
  target().punch_hole((first + 2) * kBlock, kBlock);
  EXPECT_TRUE(mapped_block(shared, first + 2).is_zero()) << "punched";
  EXPECT_TRUE(mapped_block(priv, first + 2).is_zero()) << "punched, private mapping";
  target().set_size((first + 4) * kBlock);
  EXPECT_TRUE(load_would_sigbus(shared.data() + (first + 5) * kBlock)) << "cut by a shrink";
  EXPECT_TRUE(load_would_sigbus(priv.data() + (first + 5) * kBlock)) << "cut, private mapping";
  EXPECT_EQ(mapped_block(shared, first + 3), block_stamp(first + 3, 1)) << "below the new EOF";
  EXPECT_EQ(answered(stats()) - answered(before), 4U)
      << "the punched page and the cut one, once per mapping; nothing below EOF";
}

}  // namespace
}  // namespace vmcoh::test
