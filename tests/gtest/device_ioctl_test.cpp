// The ioctl ABI (uapi/vmcoh.h): GET_INFO describes the object, and every bad argument gets a
// clean error and changes nothing.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <limits>

#include <vmcoh/fd.hpp>

#include "test_object.hpp"

namespace vmcoh::test {
namespace {

using IoctlTest = DeviceTest;

// errno of an ioctl expected to fail (0 if it succeeded).
int ioctl_errno(int fd, unsigned long request, void* arg) {
  errno = 0;
  return ::ioctl(fd, request, arg) == 0 ? 0 : errno;
}

int set_size_errno(int fd, const vmcoh_set_size& arg) {
  vmcoh_set_size copy = arg;
  return ioctl_errno(fd, VMCOH_IOC_SET_SIZE, &copy);
}

int punch_errno(int fd, const vmcoh_range& arg) {
  vmcoh_range copy = arg;
  return ioctl_errno(fd, VMCOH_IOC_PUNCH_HOLE, &copy);
}

vmcoh_range range(std::uint64_t offset, std::uint64_t length) {
  vmcoh_range r{};
  r.offset = offset;
  r.length = length;
  return r;
}

vmcoh_set_size new_size(std::uint64_t size) {
  vmcoh_set_size s{};
  s.size = size;
  return s;
}

TEST_F(IoctlTest, GetInfoDescribesTheObject) {
  const vmcoh_info i = info();
  EXPECT_EQ(i.abi_version, VMCOH_ABI_VERSION);
  EXPECT_EQ(i.size, kTestSize);
  EXPECT_EQ(i.block_size, kBlock);
  EXPECT_GE(i.max_object_size, i.size);
  EXPECT_GT(i.max_size, 0U);
  const std::uint64_t all = VMCOH_FEATURE_SEEK_HOLE | VMCOH_FEATURE_PUNCH_HOLE |
                            VMCOH_FEATURE_SET_SIZE | VMCOH_FEATURE_MAP_PRIVATE |
                            VMCOH_FEATURE_BACKING | VMCOH_FEATURE_LOAD_RUNS | VMCOH_FEATURE_SERVE;
  EXPECT_EQ(i.features & all, all);
  EXPECT_LT(i.unsafe, std::uint64_t{VMCOH_NR_UNSAFE});
  if ((i.features & VMCOH_FEATURE_TEST_HOOKS) == 0) {
    EXPECT_EQ(i.unsafe, std::uint64_t{VMCOH_UNSAFE_NONE}) << "unsafe variants need test_hooks=1";
  }
  EXPECT_EQ(i.backing, std::uint64_t{VMCOH_BACKING_NONE}) << "no server in this test";
}

// vmcoh_stats has no reserved word left: entries_trimmed took the last one.
TEST_F(IoctlTest, GetStatsIsConsistent) {
  const vmcoh_stats s = stats();
  EXPECT_EQ(s.blocks_live, s.blocks_allocated - s.blocks_freed);
  EXPECT_LE(s.hold_timeouts, s.holds_parked) << "only a park can time out";
}

TEST_F(IoctlTest, SetSizeRejectsAnUnalignedSize) {
  EXPECT_EQ(set_size_errno(fd(), new_size(kTestSize + 1)), EINVAL);
  EXPECT_EQ(set_size_errno(fd(), new_size(kBlock / 2)), EINVAL);
  EXPECT_EQ(target().size(), kTestSize);
}

TEST_F(IoctlTest, SetSizeRejectsNonZeroFlags) {
  vmcoh_set_size arg = new_size(2 * kTestSize);
  arg.flags = 1;
  EXPECT_EQ(set_size_errno(fd(), arg), EINVAL);
  arg.flags = std::uint64_t{1} << 63;
  EXPECT_EQ(set_size_errno(fd(), arg), EINVAL);
  EXPECT_EQ(target().size(), kTestSize);
}

TEST_F(IoctlTest, SetSizeRejectsNonZeroReservedWords) {
  for (std::size_t i = 0; i < 2; ++i) {
    vmcoh_set_size arg = new_size(2 * kTestSize);
    arg.reserved[i] = 1;
    EXPECT_EQ(set_size_errno(fd(), arg), EINVAL) << "reserved[" << i << "]";
  }
  EXPECT_EQ(target().size(), kTestSize);
}

TEST_F(IoctlTest, SetSizeRejectsASizeAboveMaxObjectSize) {
  const std::uint64_t max = info().max_object_size;
  EXPECT_EQ(set_size_errno(fd(), new_size(max + kBlock)), EINVAL);
  EXPECT_EQ(
      set_size_errno(fd(), new_size(std::numeric_limits<std::uint64_t>::max() & ~(kBlock - 1))),
      EINVAL);
  EXPECT_EQ(target().size(), kTestSize);
}

TEST_F(IoctlTest, SetSizeAcceptsZeroAndMaxObjectSize) {
  EXPECT_EQ(set_size_errno(fd(), new_size(0)), 0);
  EXPECT_EQ(target().size(), 0U);
  const std::uint64_t max = info().max_object_size;
  EXPECT_EQ(set_size_errno(fd(), new_size(max)), 0);
  EXPECT_EQ(target().size(), max);
}

class PunchArgumentsTest : public IoctlTest {
 protected:
  void SetUp() override {
    IoctlTest::SetUp();
    if (IsSkipped()) return;
    pwrite_block(fd(), 1, block_stamp(1, 1));
  }
  // A rejected punch changes nothing.
  void TearDown() override {
    if (!IsSkipped()) {
      EXPECT_EQ(pread_block(fd(), 1), block_stamp(1, 1));
    }
    IoctlTest::TearDown();
  }
};

TEST_F(PunchArgumentsTest, UnalignedOffsetIsEinval) {
  EXPECT_EQ(punch_errno(fd(), range(kBlock + 1, kBlock)), EINVAL);
}

TEST_F(PunchArgumentsTest, UnalignedLengthIsEinval) {
  EXPECT_EQ(punch_errno(fd(), range(kBlock, kBlock + 512)), EINVAL);
}

TEST_F(PunchArgumentsTest, ZeroLengthIsEinval) {
  EXPECT_EQ(punch_errno(fd(), range(kBlock, 0)), EINVAL);
}

TEST_F(PunchArgumentsTest, OverflowingRangeIsEinval) {
  const std::uint64_t top = std::numeric_limits<std::uint64_t>::max() & ~(kBlock - 1);
  EXPECT_EQ(punch_errno(fd(), range(top, 2 * kBlock)), EINVAL);
  EXPECT_EQ(punch_errno(fd(), range(kBlock, top)), EINVAL);
}

TEST_F(PunchArgumentsTest, NonZeroFlagsAreEinval) {
  vmcoh_range r = range(kBlock, kBlock);
  r.flags = 1;
  EXPECT_EQ(punch_errno(fd(), r), EINVAL);
}

TEST_F(PunchArgumentsTest, NonZeroReservedIsEinval) {
  vmcoh_range r = range(kBlock, kBlock);
  r.reserved = 1;
  EXPECT_EQ(punch_errno(fd(), r), EINVAL);
}

TEST_F(IoctlTest, PunchBeyondEofIsClipped) {
  pwrite_block(fd(), kTestBlocks - 1, block_stamp(kTestBlocks - 1, 1));
  EXPECT_EQ(punch_errno(fd(), range(kTestSize - kBlock, 4 * kBlock)), 0) << "straddling EOF";
  EXPECT_TRUE(pread_block(fd(), kTestBlocks - 1).is_zero());
  EXPECT_EQ(punch_errno(fd(), range(kTestSize + kBlock, kBlock)), 0) << "wholly beyond EOF";
  EXPECT_EQ(target().size(), kTestSize);
}

TEST_F(IoctlTest, UnknownCommandIsEnotty) {
  vmcoh_info buffer{};
  EXPECT_EQ(ioctl_errno(fd(), _IOR(VMCOH_IOC_MAGIC, 0x7f, struct vmcoh_info), &buffer), ENOTTY);
  EXPECT_EQ(ioctl_errno(fd(), _IOR('x', 0x00, struct vmcoh_info), &buffer), ENOTTY);
  // The right number with the wrong size is another command.
  EXPECT_EQ(ioctl_errno(fd(), _IOR(VMCOH_IOC_MAGIC, 0x00, std::uint64_t), &buffer), ENOTTY);
}

TEST_F(IoctlTest, BadUserPointerIsEfault) {
  // An address in the never-mapped first page, on purpose.
  auto* bad = reinterpret_cast<void*>(std::uintptr_t{16});  // NOLINT(performance-no-int-to-ptr)
  EXPECT_EQ(ioctl_errno(fd(), VMCOH_IOC_GET_INFO, bad), EFAULT);
  EXPECT_EQ(ioctl_errno(fd(), VMCOH_IOC_GET_STATS, bad), EFAULT);
  EXPECT_EQ(ioctl_errno(fd(), VMCOH_IOC_SET_SIZE, bad), EFAULT);
  EXPECT_EQ(ioctl_errno(fd(), VMCOH_IOC_PUNCH_HOLE, bad), EFAULT);
  EXPECT_EQ(target().size(), kTestSize);
}

// The permission model (uapi/vmcoh.h, "Permissions"): what changes the object needs a file opened
// for writing, as ftruncate(2) and fallocate(2) do; a read-only file may only look.
TEST_F(IoctlTest, AReadOnlyFileCannotChangeTheObject) {
  const Fd ro = Fd::open(device_path(), O_RDONLY);
  pwrite_block(fd(), 3, block_stamp(3, 1));

  EXPECT_EQ(set_size_errno(ro.get(), new_size(kBlock)), EBADF) << "SET_SIZE";
  EXPECT_EQ(punch_errno(ro.get(), range(0, kTestSize)), EBADF) << "PUNCH_HOLE";
  vmcoh_attach attach{};
  EXPECT_EQ(ioctl_errno(ro.get(), VMCOH_IOC_ATTACH, &attach), EBADF) << "ATTACH";
  attach.flags = VMCOH_ATTACH_WRITABLE;
  EXPECT_EQ(ioctl_errno(ro.get(), VMCOH_IOC_ATTACH, &attach), EBADF) << "ATTACH writable";
  vmcoh_range whole = range(0, kTestSize);
  EXPECT_EQ(ioctl_errno(ro.get(), VMCOH_IOC_INVALIDATE, &whole), EBADF) << "INVALIDATE";
  EXPECT_EQ(ioctl_errno(ro.get(), VMCOH_IOC_DROP, &whole), EBADF) << "DROP";
  EXPECT_EQ(info().backing, std::uint64_t{VMCOH_BACKING_NONE}) << "the read-only file attached";

  // Nothing changed, and a read-only file still reads, maps shared read-only and asks.
  EXPECT_EQ(target().size(), kTestSize);
  EXPECT_EQ(pread_block(ro.get(), 3), block_stamp(3, 1));
  vmcoh_info i{};
  EXPECT_EQ(ioctl_errno(ro.get(), VMCOH_IOC_GET_INFO, &i), 0);
  void* shared_rw = ::mmap(nullptr, kBlock, PROT_READ | PROT_WRITE, MAP_SHARED, ro.get(), 0);
  EXPECT_EQ(shared_rw, MAP_FAILED) << "the core refuses a writable shared mapping";
  if (shared_rw != MAP_FAILED) ::munmap(shared_rw, kBlock);
  const Mapping map = Mapping::map(kTestSize, PROT_READ, MAP_SHARED, ro.get());
  EXPECT_EQ(mapped_block(map, 3), block_stamp(3, 1));
}

}  // namespace
}  // namespace vmcoh::test
