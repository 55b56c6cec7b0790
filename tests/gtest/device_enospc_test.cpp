// The allocation cap (GET_INFO.max_size, module parameter max_mb): writes beyond it fail with
// ENOSPC and lose nothing already written.  Meant for a module loaded with a small max_mb.
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "test_object.hpp"

namespace vmcoh::test {
namespace {

constexpr std::uint64_t kLargestCapTested = 64ULL << 20;
constexpr std::uint64_t kChunkBlocks = 16;

class CapTest : public DeviceTest {
 protected:
  void SetUp() override {
    DeviceTest::SetUp();
    if (IsSkipped()) return;
    const vmcoh_info i = info();
    if (i.max_size > kLargestCapTested) {
      GTEST_SKIP() << "max_size " << i.max_size << " > 64 MiB: load the module with a small max_mb";
    }
    // Room for more than the cap, so the cap (not EOF) stops the writes.
    size_ = std::min(i.max_object_size, (i.max_size + 64 * kBlock) / kBlock * kBlock);
    if (size_ <= i.max_size) GTEST_SKIP() << "max_object_size does not exceed max_size";
    target().set_size(size_);
  }

  std::uint64_t size_ = 0;
};

TEST_F(CapTest, WritesStopAtTheCapWithNothingLost) {
  const vmcoh_info i = info();
  const std::uint64_t live_before = stats().blocks_live;
  std::vector<std::byte> chunk(kChunkBlocks * kBlock);
  std::uint64_t written = 0;  // bytes, from offset 0
  int error = 0;
  while (written < size_) {
    for (std::uint64_t b = 0; b < kChunkBlocks; ++b) {
      const PageImage page = block_stamp(written / kBlock + b, 1);
      std::memcpy(chunk.data() + b * kBlock, page.bytes(), kBlock);
    }
    const ssize_t n = ::pwrite(fd(), chunk.data(), chunk.size(), static_cast<off_t>(written));
    if (n < 0) {
      error = errno;
      break;
    }
    ASSERT_EQ(n % kBlock, 0U) << "a short write ends on a block boundary";
    written += static_cast<std::uint64_t>(n);
  }
  EXPECT_EQ(error, ENOSPC) << std::strerror(error);
  EXPECT_LT(written, size_) << "the cap, not EOF, stopped the writes";
  EXPECT_EQ(stats().blocks_live * kBlock, i.max_size) << "every block under the cap is used";
  EXPECT_EQ(written, i.max_size - live_before * kBlock);

  for (std::uint64_t b = 0; b < written / kBlock; ++b) {
    ASSERT_EQ(pread_block(fd(), b), block_stamp(b, 1)) << "block " << b;
  }
  EXPECT_TRUE(pread_block(fd(), written / kBlock).is_zero()) << "the failed write left nothing";
}

TEST_F(CapTest, PunchAtTheCapMakesRoomAgain) {
  const std::uint64_t room = info().max_size / kBlock - stats().blocks_live;
  for (std::uint64_t b = 0; b < room; ++b) pwrite_block(fd(), b, block_stamp(b, 1));
  const PageImage page = block_stamp(room, 1);
  errno = 0;
  ASSERT_EQ(::pwrite(fd(), page.bytes(), kBlock, static_cast<off_t>(room * kBlock)), -1);
  ASSERT_EQ(errno, ENOSPC);
  target().punch_hole(0, kBlock);
  pwrite_block(fd(), room, page);
  EXPECT_EQ(pread_block(fd(), room), page);
}

}  // namespace
}  // namespace vmcoh::test
