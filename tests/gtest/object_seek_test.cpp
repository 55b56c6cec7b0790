// lseek: SEEK_END, SEEK_DATA and SEEK_HOLE, shared by the device and a tmpfs file.  The object
// starts as holes; data is only what a test writes (no mapping faults pages in here).
#include <unistd.h>

#include <cerrno>

#include "test_object.hpp"

namespace vmcoh::test {
namespace {

using SeekTest = ObjectTest;

off_t seek(int fd, std::uint64_t offset, int whence) {
  return ::lseek(fd, static_cast<off_t>(offset), whence);
}

TEST_P(SeekTest, SeekEndIsRelativeToTheSize) {
  EXPECT_EQ(::lseek(fd(), 0, SEEK_END), static_cast<off_t>(kTestSize));
  EXPECT_EQ(::lseek(fd(), -static_cast<off_t>(kBlock), SEEK_END),
            static_cast<off_t>(kTestSize - kBlock));
}

TEST_P(SeekTest, SeekDataInAHoleFindsTheNextData) {
  pwrite_block(fd(), 10, block_stamp(10, 1));
  EXPECT_EQ(seek(fd(), 0, SEEK_DATA), static_cast<off_t>(10 * kBlock));
  EXPECT_EQ(seek(fd(), 9 * kBlock + 17, SEEK_DATA), static_cast<off_t>(10 * kBlock));
}

TEST_P(SeekTest, SeekDataInDataStaysPut) {
  pwrite_block(fd(), 10, block_stamp(10, 1));
  EXPECT_EQ(seek(fd(), 10 * kBlock + 5, SEEK_DATA), static_cast<off_t>(10 * kBlock + 5));
}

TEST_P(SeekTest, SeekDataWithNoDataBeforeEofIsEnxio) {
  pwrite_block(fd(), 10, block_stamp(10, 1));
  errno = 0;
  EXPECT_EQ(seek(fd(), 11 * kBlock, SEEK_DATA), -1);
  EXPECT_EQ(errno, ENXIO);
}

TEST_P(SeekTest, SeekDataAtOrBeyondEofIsEnxio) {
  pwrite_block(fd(), kTestBlocks - 1, block_stamp(kTestBlocks - 1, 1));
  for (const std::uint64_t offset : {kTestSize, kTestSize + kBlock}) {
    errno = 0;
    EXPECT_EQ(seek(fd(), offset, SEEK_DATA), -1) << offset;
    EXPECT_EQ(errno, ENXIO) << offset;
  }
}

TEST_P(SeekTest, SeekHoleInDataFindsTheEndOfTheDataRun) {
  for (std::uint64_t b = 4; b <= 6; ++b) pwrite_block(fd(), b, block_stamp(b, 1));
  EXPECT_EQ(seek(fd(), 4 * kBlock + 1, SEEK_HOLE), static_cast<off_t>(7 * kBlock));
}

TEST_P(SeekTest, SeekHoleInAHoleStaysPut) {
  EXPECT_EQ(seek(fd(), 3 * kBlock + 9, SEEK_HOLE), static_cast<off_t>(3 * kBlock + 9));
}

TEST_P(SeekTest, SeekHoleInDataRunningToEofFindsEof) {
  pwrite_block(fd(), kTestBlocks - 2, block_stamp(kTestBlocks - 2, 1));
  pwrite_block(fd(), kTestBlocks - 1, block_stamp(kTestBlocks - 1, 1));
  EXPECT_EQ(seek(fd(), (kTestBlocks - 2) * kBlock, SEEK_HOLE), static_cast<off_t>(kTestSize));
}

TEST_P(SeekTest, SeekHoleAtOrBeyondEofIsEnxio) {
  errno = 0;
  EXPECT_EQ(seek(fd(), kTestSize, SEEK_HOLE), -1);
  EXPECT_EQ(errno, ENXIO);
}

INSTANTIATE_TEST_SUITE_P(Backends, SeekTest, testing::Values(Backend::device, Backend::tmpfs),
                         backend_name);

}  // namespace
}  // namespace vmcoh::test
