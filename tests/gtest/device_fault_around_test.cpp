// Fault-around (module parameter fault_around, 16 pages by default, off with test_hooks=1): a read
// fault also maps the blocks of its aligned window, each under its entry lock; invalidation must
// then find and remove those PTEs exactly as it does the faulted ones.
#include <sys/mman.h>

#include <fstream>
#include <string>

#include <vmcoh/sigbus_probe.hpp>

#include "test_object.hpp"

namespace vmcoh::test {
namespace {

std::uint64_t module_parameter(const std::string& name) {
  std::ifstream in("/sys/module/vmcoh/parameters/" + name);
  std::string value;
  in >> value;
  if (value == "Y") return 1;
  if (value == "N") return 0;
  return value.empty() ? 0 : std::stoull(value);
}

// Pages a read fault maps around itself, as the loaded module applies it.
std::uint64_t fault_around_window() {
  return module_parameter("test_hooks") != 0 ? 1 : module_parameter("fault_around");
}

class FaultAroundTest : public DeviceTest {
 protected:
  void SetUp() override {
    DeviceTest::SetUp();
    window_ = fault_around_window();
    if (window_ <= 1 || window_ > 32) GTEST_SKIP() << "fault_around is " << window_;
    install_sigbus_probe();
  }
  std::uint64_t window_ = 1;
};

TEST_F(FaultAroundTest, ReadFaultMapsTheBlocksOfItsWindowButNotItsHoles) {
  const std::uint64_t first = window_;
  const std::uint64_t hole = first + 3;
  for (std::uint64_t b = first; b < first + window_; ++b) {
    if (b != hole) pwrite_block(fd(), b, block_stamp(b, 1));
  }
  const Mapping shared = map(PROT_READ, MAP_SHARED);
  const vmcoh_stats before = stats();
  ASSERT_EQ(mapped_block(shared, first), block_stamp(first, 1));
  const vmcoh_stats faulted = stats();
  EXPECT_EQ(faulted.faults - before.faults, 1U);
  EXPECT_EQ(faulted.fault_around_maps - before.fault_around_maps, window_ - 2)
      << "every block of the window but the faulting page's";
  for (std::uint64_t b = first + 1; b < first + window_; ++b) {
    if (b == hole) {
      EXPECT_TRUE(mapped_block(shared, b).is_zero());
    } else {
      EXPECT_EQ(mapped_block(shared, b), block_stamp(b, 1)) << "block " << b;
    }
  }
  EXPECT_EQ(stats().faults - faulted.faults, 1U) << "only the hole faults";
}

TEST_F(FaultAroundTest, PagesMappedAroundAFaultAreInvalidatedLikeFaultedOnes) {
  const std::uint64_t first = 2 * window_;
  for (std::uint64_t b = first; b < first + window_; ++b) pwrite_block(fd(), b, block_stamp(b, 1));
  const Mapping shared = map(PROT_READ, MAP_SHARED);
  const Mapping priv = map(PROT_READ | PROT_WRITE, MAP_PRIVATE);
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
  EXPECT_EQ(stats().faults - before.faults, 4U)
      << "the punched page and the cut one, once per mapping; nothing below EOF";
}

}  // namespace
}  // namespace vmcoh::test
