// The device's EOF behaves like a block device's: it does not move on write.
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "test_object.hpp"

namespace vmcoh::test {
namespace {

using EofTest = DeviceTest;

TEST_F(EofTest, WriteAtOrAfterEofIsEnospc) {
  const PageImage page = block_stamp(0, 1);
  for (const std::uint64_t offset : {kTestSize, kTestSize + 1, kTestSize + kBlock}) {
    errno = 0;
    EXPECT_EQ(::pwrite(fd(), page.bytes(), kBlock, static_cast<off_t>(offset)), -1) << offset;
    EXPECT_EQ(errno, ENOSPC) << offset;
  }
  EXPECT_EQ(target().size(), kTestSize) << "the size does not move";
}

TEST_F(EofTest, WriteCrossingEofIsShort) {
  std::vector<std::byte> two(2 * kBlock, std::byte{0x5a});
  EXPECT_EQ(::pwrite(fd(), two.data(), two.size(), static_cast<off_t>(kTestSize - kBlock)),
            static_cast<ssize_t>(kBlock));
  EXPECT_EQ(target().size(), kTestSize);
  const PageImage last = pread_block(fd(), kTestBlocks - 1);
  EXPECT_EQ(last.bytes()[0], std::byte{0x5a});
  EXPECT_EQ(last.bytes()[kBlock - 1], std::byte{0x5a});
}

TEST_F(EofTest, SequentialWriteStopsAtEof) {
  std::vector<std::byte> two(2 * kBlock, std::byte{0x33});
  ASSERT_EQ(::lseek(fd(), static_cast<off_t>(kTestSize - kBlock), SEEK_SET),
            static_cast<off_t>(kTestSize - kBlock));
  EXPECT_EQ(::write(fd(), two.data(), two.size()), static_cast<ssize_t>(kBlock));
  errno = 0;
  EXPECT_EQ(::write(fd(), two.data(), two.size()), -1);
  EXPECT_EQ(errno, ENOSPC);
}

}  // namespace
}  // namespace vmcoh::test
