// The hold-point ioctls (VMCOH_IOC_HOLD_ARM/WAIT/RELEASE, test_hooks=1): bad arguments get clean
// errors, a point parks exactly one task, and every park ends - on release, on its timeout, or
// when the file that armed it is closed - with the parked fault completing correctly.
//
// HoldPointTest needs a module loaded with test_hooks=1 and skips otherwise;
// HoldPointDisabledTest needs one loaded without it and skips otherwise.
//
// A task parked in ->fault holds its process's mmap_lock for reading, so while one is parked
// these tests only wait: every thread and mapping is made before the park.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <future>
#include <limits>

#include <vmcoh/fd.hpp>
#include <vmcoh/test_hooks.hpp>

#include "test_object.hpp"

namespace vmcoh::test {
namespace {

using namespace std::chrono_literals;
using std::chrono::steady_clock;

constexpr std::uint64_t kIndex = 3;

vmcoh_hold hold_arg(std::uint64_t point, std::uint64_t timeout_ms = 0,
                    std::uint64_t index = kIndex) {
  vmcoh_hold arg{};
  arg.point = point;
  arg.index = index;
  arg.timeout_ms = timeout_ms;
  return arg;
}

// errno of a hold ioctl (0 if it succeeded).
int hold_errno(int fd, unsigned long request, vmcoh_hold arg) {
  errno = 0;
  return ::ioctl(fd, request, &arg) < 0 ? errno : 0;
}

// RELEASE's return value: 1 if it let a parked task go, 0 if it only disarmed.
int release(int fd, std::uint64_t point) {
  vmcoh_hold arg = hold_arg(point);
  return ::ioctl(fd, VMCOH_IOC_HOLD_RELEASE, &arg);
}

bool has_test_hooks(const vmcoh_info& info) {
  return (info.features & VMCOH_FEATURE_TEST_HOOKS) != 0;
}

class HoldPointTest : public DeviceTest {
 protected:
  void SetUp() override {
    DeviceTest::SetUp();
    if (IsSkipped()) return;
    if (!has_test_hooks(info())) GTEST_SKIP() << "module loaded without test_hooks=1";
  }

  // Page kIndex holds a stamp; the returned mapping has no PTE for it yet.
  Mapping written_unmapped_page() {
    pwrite_block(fd(), kIndex, block_stamp(kIndex, 1));
    return map(PROT_READ, MAP_SHARED);
  }
};

class HoldPointDisabledTest : public DeviceTest {
 protected:
  void SetUp() override {
    DeviceTest::SetUp();
    if (IsSkipped()) return;
    if (has_test_hooks(info())) GTEST_SKIP() << "module loaded with test_hooks=1";
  }
};

TEST_F(HoldPointDisabledTest, EveryHoldIoctlIsEpermWithoutTestHooks) {
  EXPECT_EQ(hold_errno(fd(), VMCOH_IOC_HOLD_ARM, hold_arg(VMCOH_HOLD_FAULT_LOCKED)), EPERM);
  EXPECT_EQ(hold_errno(fd(), VMCOH_IOC_HOLD_WAIT, hold_arg(VMCOH_HOLD_FAULT_LOCKED, 10)), EPERM);
  EXPECT_EQ(hold_errno(fd(), VMCOH_IOC_HOLD_RELEASE, hold_arg(VMCOH_HOLD_FAULT_LOCKED)), EPERM);
  EXPECT_EQ(info().unsafe, std::uint64_t{VMCOH_UNSAFE_NONE});
}

TEST_F(HoldPointTest, ArmRejectsAnUnknownPoint) {
  EXPECT_EQ(hold_errno(fd(), VMCOH_IOC_HOLD_ARM, hold_arg(VMCOH_NR_HOLD_POINTS)), EINVAL);
  EXPECT_EQ(
      hold_errno(fd(), VMCOH_IOC_HOLD_ARM, hold_arg(std::numeric_limits<std::uint64_t>::max())),
      EINVAL);
}

TEST_F(HoldPointTest, ArmRejectsNonZeroFlags) {
  vmcoh_hold arg = hold_arg(VMCOH_HOLD_FAULT_LOCKED);
  arg.flags = 1;
  EXPECT_EQ(hold_errno(fd(), VMCOH_IOC_HOLD_ARM, arg), EINVAL);
  arg.flags = std::uint64_t{1} << 63;
  EXPECT_EQ(hold_errno(fd(), VMCOH_IOC_HOLD_ARM, arg), EINVAL);
}

TEST_F(HoldPointTest, ArmRejectsNonZeroReservedWords) {
  for (std::size_t i = 0; i < 3; ++i) {
    vmcoh_hold arg = hold_arg(VMCOH_HOLD_FAULT_LOCKED);
    arg.reserved[i] = 1;
    EXPECT_EQ(hold_errno(fd(), VMCOH_IOC_HOLD_ARM, arg), EINVAL) << "reserved[" << i << "]";
  }
}

TEST_F(HoldPointTest, ArmRejectsOpsOnAFaultPoint) {
  for (std::uint64_t point = VMCOH_HOLD_FAULT_SIZE_CHECKED; point <= VMCOH_HOLD_FAULT_BEFORE_PTE;
       ++point) {
    vmcoh_hold arg = hold_arg(point);
    arg.ops = VMCOH_HOLD_OP_PUNCH;
    EXPECT_EQ(hold_errno(fd(), VMCOH_IOC_HOLD_ARM, arg), EINVAL) << hold_point_name(point);
  }
}

TEST_F(HoldPointTest, ArmRejectsUnknownOps) {
  static_assert(VMCOH_HOLD_OPS_ALL ==
                (VMCOH_HOLD_OP_WRITE | VMCOH_HOLD_OP_PUNCH | VMCOH_HOLD_OP_SHRINK |
                 VMCOH_HOLD_OP_SERVER | VMCOH_HOLD_OP_DROP | VMCOH_HOLD_OP_RECLAIM));
  vmcoh_hold arg = hold_arg(VMCOH_HOLD_INVAL_MAP_CHANGED);
  for (const std::uint64_t unknown :
       std::array<std::uint64_t, 2>{VMCOH_HOLD_OPS_ALL + 1, 1ULL << 63}) {
    arg.ops = unknown;
    EXPECT_EQ(hold_errno(fd(), VMCOH_IOC_HOLD_ARM, arg), EINVAL) << unknown;
  }
}

TEST_F(HoldPointTest, ArmRejectsATimeoutAboveTheMaximum) {
  EXPECT_EQ(hold_errno(fd(), VMCOH_IOC_HOLD_ARM,
                       hold_arg(VMCOH_HOLD_FAULT_LOCKED, VMCOH_HOLD_TIMEOUT_MAX_MS + 1)),
            EINVAL);
  EXPECT_EQ(hold_errno(fd(), VMCOH_IOC_HOLD_ARM,
                       hold_arg(VMCOH_HOLD_FAULT_LOCKED, VMCOH_HOLD_TIMEOUT_MAX_MS)),
            0)
      << "the maximum itself is accepted";
  EXPECT_EQ(release(fd(), VMCOH_HOLD_FAULT_LOCKED), 0);
}

TEST_F(HoldPointTest, ArmingAnArmedPointIsEbusy) {
  ASSERT_EQ(hold_errno(fd(), VMCOH_IOC_HOLD_ARM, hold_arg(VMCOH_HOLD_INVAL_BEFORE_FREE)), 0);
  EXPECT_EQ(hold_errno(fd(), VMCOH_IOC_HOLD_ARM, hold_arg(VMCOH_HOLD_INVAL_BEFORE_FREE)), EBUSY);
  EXPECT_EQ(hold_errno(fd(), VMCOH_IOC_HOLD_ARM, hold_arg(VMCOH_HOLD_INVAL_BEFORE_FREE, 0, 7)),
            EBUSY)
      << "one slot per point, whatever the index";
  EXPECT_EQ(release(fd(), VMCOH_HOLD_INVAL_BEFORE_FREE), 0);
}

TEST_F(HoldPointTest, WaitOnAnUnarmedPointIsEnoent) {
  EXPECT_EQ(hold_errno(fd(), VMCOH_IOC_HOLD_WAIT, hold_arg(VMCOH_HOLD_FAULT_BEFORE_PTE, 10)),
            ENOENT);
}

TEST_F(HoldPointTest, WaitWithNothingParkingTimesOutAfterItsTimeout) {
  const HoldPoint point(fd(), VMCOH_HOLD_FAULT_BEFORE_PTE, kIndex, 0, 0ms);
  const auto start = steady_clock::now();
  EXPECT_EQ(hold_errno(fd(), VMCOH_IOC_HOLD_WAIT, hold_arg(VMCOH_HOLD_FAULT_BEFORE_PTE, 200)),
            ETIMEDOUT);
  const auto waited = steady_clock::now() - start;
  EXPECT_GE(waited, 180ms);
  EXPECT_LT(waited, 3s);
}

TEST_F(HoldPointTest, ReleaseOfAnUnparkedPointReturnsZeroAndDisarmsIt) {
  const Mapping shared = written_unmapped_page();
  ASSERT_EQ(hold_errno(fd(), VMCOH_IOC_HOLD_ARM, hold_arg(VMCOH_HOLD_FAULT_LOCKED)), 0);
  EXPECT_EQ(release(fd(), VMCOH_HOLD_FAULT_LOCKED), 0);
  EXPECT_EQ(hold_errno(fd(), VMCOH_IOC_HOLD_WAIT, hold_arg(VMCOH_HOLD_FAULT_LOCKED, 10)), ENOENT);

  const vmcoh_stats before = stats();
  EXPECT_EQ(mapped_block(shared, kIndex), block_stamp(kIndex, 1)) << "a fault there goes through";
  EXPECT_EQ(stats().holds_parked, before.holds_parked);
  EXPECT_EQ(hold_errno(fd(), VMCOH_IOC_HOLD_ARM, hold_arg(VMCOH_HOLD_FAULT_LOCKED)), 0)
      << "the point can be armed again";
  EXPECT_EQ(release(fd(), VMCOH_HOLD_FAULT_LOCKED), 0);
}

TEST_F(HoldPointTest, ReleaseLetsTheParkedFaultGoOn) {
  const Mapping shared = written_unmapped_page();
  HoldPoint point(fd(), VMCOH_HOLD_FAULT_LOOKED_UP, kIndex, 0, 10s);
  const vmcoh_stats before = stats();
  auto load = std::async(std::launch::async, [&] { return mapped_block(shared, kIndex); });
  ASSERT_TRUE(point.wait_parked(5s));
  EXPECT_EQ(load.wait_for(100ms), std::future_status::timeout) << "the fault is parked";
  EXPECT_TRUE(point.release()) << "a task was parked";
  ASSERT_EQ(load.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(load.get(), block_stamp(kIndex, 1));
  const vmcoh_stats after = stats();
  EXPECT_EQ(after.holds_parked - before.holds_parked, 1U);
  EXPECT_EQ(after.hold_timeouts, before.hold_timeouts);
  EXPECT_EQ(hold_errno(fd(), VMCOH_IOC_HOLD_WAIT, hold_arg(VMCOH_HOLD_FAULT_LOOKED_UP, 10)), ENOENT)
      << "one-shot: released means disarmed";
}

TEST_F(HoldPointTest, AParkThatIsNeverReleasedTimesOutAndTheFaultCompletes) {
  const Mapping shared = written_unmapped_page();
  HoldPoint point(fd(), VMCOH_HOLD_FAULT_LOOKED_UP, kIndex, 0, 200ms);
  const vmcoh_stats before = stats();
  auto load = std::async(std::launch::async, [&] { return mapped_block(shared, kIndex); });
  ASSERT_TRUE(point.wait_parked(5s));
  ASSERT_EQ(load.wait_for(10s), std::future_status::ready) << "the park outlived its timeout";
  EXPECT_EQ(load.get(), block_stamp(kIndex, 1));
  const vmcoh_stats after = stats();
  EXPECT_EQ(after.holds_parked - before.holds_parked, 1U);
  EXPECT_EQ(after.hold_timeouts - before.hold_timeouts, 1U);
  EXPECT_EQ(hold_errno(fd(), VMCOH_IOC_HOLD_WAIT, hold_arg(VMCOH_HOLD_FAULT_LOOKED_UP, 10)),
            ENOENT);
  EXPECT_FALSE(point.release()) << "nothing is parked any more";
}

TEST_F(HoldPointTest, ClosingTheArmingFileReleasesTheParkedTask) {
  const Mapping shared = written_unmapped_page();
  Fd arming = Fd::open(device_path(), O_RDWR);
  // Long enough that a load done within 5 s was released by the close, not by the timeout.
  ASSERT_EQ(hold_errno(arming.get(), VMCOH_IOC_HOLD_ARM, hold_arg(VMCOH_HOLD_FAULT_LOCKED, 20000)),
            0);
  const vmcoh_stats before = stats();
  auto load = std::async(std::launch::async, [&] { return mapped_block(shared, kIndex); });
  ASSERT_EQ(hold_errno(fd(), VMCOH_IOC_HOLD_WAIT, hold_arg(VMCOH_HOLD_FAULT_LOCKED, 5000)), 0);
  arming.reset();
  ASSERT_EQ(load.wait_for(5s), std::future_status::ready) << "still parked after the close";
  EXPECT_EQ(load.get(), block_stamp(kIndex, 1));
  EXPECT_EQ(stats().hold_timeouts, before.hold_timeouts) << "released, not timed out";
  EXPECT_EQ(hold_errno(fd(), VMCOH_IOC_HOLD_WAIT, hold_arg(VMCOH_HOLD_FAULT_LOCKED, 10)), ENOENT);
}

TEST_F(HoldPointTest, InvalidationPointParksOnlyTheOperationsArmed) {
  pwrite_block(fd(), kIndex, block_stamp(kIndex, 1));
  HoldPoint point(fd(), VMCOH_HOLD_INVAL_MAP_CHANGED, kIndex, VMCOH_HOLD_OP_SHRINK, 10s);
  target().punch_hole(kIndex * kBlock, kBlock);
  EXPECT_EQ(hold_errno(fd(), VMCOH_IOC_HOLD_WAIT, hold_arg(VMCOH_HOLD_INVAL_MAP_CHANGED, 10)),
            ETIMEDOUT)
      << "a punch does not park at a point armed for shrinks";

  auto shrink = std::async(std::launch::async, [&] { target().set_size(kIndex * kBlock); });
  ASSERT_TRUE(point.wait_parked(5s));
  EXPECT_EQ(shrink.wait_for(100ms), std::future_status::timeout) << "the shrink is parked";
  EXPECT_TRUE(point.release());
  ASSERT_EQ(shrink.wait_for(5s), std::future_status::ready);
  shrink.get();
  EXPECT_EQ(target().size(), kIndex * kBlock);
}

}  // namespace
}  // namespace vmcoh::test
