// splice(2) and sendfile(2) to and from the object: read(2) and write(2) by another way in
// (->splice_read and ->splice_write go through ->read_iter and ->write_iter), so they must be as
// coherent with mappings as read(2) and write(2) are.  Each runs against the device and a tmpfs
// file, the reference.  copy_file_range(2) takes regular files only, which the device is not.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <future>

#include <vmcoh.h>
#include <vmcoh/fd.hpp>
#include <vmcoh/target.hpp>

#include "test_object.hpp"

namespace vmcoh::test {
namespace {

using SpliceTest = ObjectTest;

// A pipe, both ends owned.
struct Pipe {
  Fd out;  // the read end
  Fd in;   // the write end
};

Pipe make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) ADD_FAILURE() << "pipe2: " << std::strerror(errno);
  return {Fd(fds[0]), Fd(fds[1])};
}

// A scratch file that no name reaches.
Fd scratch_file() { return Fd::unnamed(std::filesystem::temp_directory_path()); }

PageImage read_pipe(const Pipe& pipe) {
  PageImage page;
  EXPECT_EQ(::read(pipe.out.get(), page.bytes(), kBlock), static_cast<ssize_t>(kBlock))
      << std::strerror(errno);
  return page;
}

void write_pipe(const Pipe& pipe, const PageImage& page) {
  ASSERT_EQ(::write(pipe.in.get(), page.bytes(), kBlock), static_cast<ssize_t>(kBlock))
      << std::strerror(errno);
}

TEST_P(SpliceTest, ASpliceReadGetsWhatReadGetsBlocksAndHoles) {
  pwrite_block(fd(), 0, block_stamp(0, 1));
  pwrite_block(fd(), 2, block_stamp(2, 1));
  const Pipe pipe = make_pipe();
  loff_t off = 0;
  ASSERT_EQ(::splice(fd(), &off, pipe.in.get(), nullptr, 4 * kBlock, 0),
            static_cast<ssize_t>(4 * kBlock))
      << std::strerror(errno);
  EXPECT_EQ(off, static_cast<loff_t>(4 * kBlock));
  for (std::uint64_t b = 0; b < 4; ++b) EXPECT_EQ(read_pipe(pipe), pread_block(fd(), b)) << b;
}

TEST_P(SpliceTest, ASpliceWriteIntoAHoleIsSeenThroughAMappingOfItsZeroPage) {
  const Mapping shared = map(PROT_READ, MAP_SHARED);
  ASSERT_TRUE(mapped_block(shared, 1).is_zero());
  const Pipe pipe = make_pipe();
  write_pipe(pipe, block_stamp(1, 1));
  loff_t off = kBlock;
  ASSERT_EQ(::splice(pipe.out.get(), nullptr, fd(), &off, kBlock, 0), static_cast<ssize_t>(kBlock))
      << std::strerror(errno);
  EXPECT_EQ(mapped_block(shared, 1), block_stamp(1, 1))
      << "the mapping still shows the hole the splice filled";
  EXPECT_EQ(pread_block(fd(), 1), block_stamp(1, 1));
}

TEST_P(SpliceTest, ASpliceWriteOverAMappedBlockIsSeenThroughTheMapping) {
  pwrite_block(fd(), 2, block_stamp(2, 1));
  const Mapping shared = map(PROT_READ, MAP_SHARED);
  ASSERT_EQ(mapped_block(shared, 2), block_stamp(2, 1));
  const Pipe pipe = make_pipe();
  write_pipe(pipe, block_stamp(2, 2));
  loff_t off = 2 * kBlock;
  ASSERT_EQ(::splice(pipe.out.get(), nullptr, fd(), &off, kBlock, 0), static_cast<ssize_t>(kBlock))
      << std::strerror(errno);
  EXPECT_EQ(mapped_block(shared, 2), block_stamp(2, 2));
}

TEST_P(SpliceTest, SendfileCopiesTheObjectToAFileAndAFileIntoTheObject) {
  pwrite_block(fd(), 1, block_stamp(1, 1));
  const Fd file = scratch_file();
  off_t off = 0;
  EXPECT_EQ(::sendfile(file.get(), fd(), &off, 2 * kBlock), static_cast<ssize_t>(2 * kBlock))
      << std::strerror(errno);
  EXPECT_TRUE(pread_block(file.get(), 0).is_zero());
  EXPECT_EQ(pread_block(file.get(), 1), block_stamp(1, 1));

  // And back, over a hole a mapping shows: the object's sendfile is its write(2).
  const Mapping shared = map(PROT_READ, MAP_SHARED);
  ASSERT_TRUE(mapped_block(shared, 3).is_zero());
  pwrite_block(file.get(), 0, block_stamp(3, 1));
  ASSERT_EQ(::lseek(fd(), 3 * kBlock, SEEK_SET), static_cast<off_t>(3 * kBlock));
  off = 0;
  EXPECT_EQ(::sendfile(fd(), file.get(), &off, kBlock), static_cast<ssize_t>(kBlock))
      << std::strerror(errno);
  EXPECT_EQ(mapped_block(shared, 3), block_stamp(3, 1));
}

INSTANTIATE_TEST_SUITE_P(Backends, SpliceTest, testing::Values(Backend::device, Backend::tmpfs),
                         backend_name);

// copy_file_range(2) between the device and a file: the VFS refuses anything but regular files
// (generic_file_rw_checks(), 6.1 and 6.12 alike) before a driver could take part, so -EINVAL is
// the kernel's answer, and cp(1) falls back to read(2) and write(2).
TEST_F(DeviceTest, CopyFileRangeIsEinvalAsForEveryDevice) {
  const Fd file = scratch_file();
  pwrite_block(file.get(), 0, block_stamp(0, 1));
  loff_t in = 0;
  loff_t out = 0;
  errno = 0;
  EXPECT_EQ(::copy_file_range(fd(), &in, file.get(), &out, kBlock, 0), -1);
  EXPECT_EQ(errno, EINVAL) << std::strerror(errno);
  errno = 0;
  EXPECT_EQ(::copy_file_range(file.get(), &in, fd(), &out, kBlock, 0), -1);
  EXPECT_EQ(errno, EINVAL) << std::strerror(errno);
}

// A splice read takes the block's contents as they were, a copy in pages of the pipe's own:
// copy_splice_read() on 6.12, and on 6.1 generic_file_splice_read(), whose ITER_PIPE the module
// copies into (compat.h) rather than put the block's page itself into the pipe.  After a punch
// and a write(2) of the index, the pipe still gives what the block held; in a window the index's
// next block is the same page.
void expect_a_spliced_read_keeps_what_the_block_held(int fd) {
  const PageImage before = block_stamp(1, 1);
  const PageImage after = block_stamp(1, 2);
  pwrite_block(fd, 1, before);
  const Pipe pipe = make_pipe();
  loff_t off = kBlock;
  ASSERT_EQ(::splice(fd, &off, pipe.in.get(), nullptr, kBlock, 0), static_cast<ssize_t>(kBlock))
      << std::strerror(errno);
  auto rewrite = std::async(std::launch::async, [&] {
    device::punch_hole(fd, kBlock, kBlock);
    return ::pwrite(fd, after.bytes(), kBlock, kBlock);
  });
  static_cast<void>(rewrite.wait_for(std::chrono::seconds(1)));
  EXPECT_EQ(read_pipe(pipe), before) << "the pipe holds what a write(2) after the punch wrote";
  ASSERT_EQ(rewrite.get(), static_cast<ssize_t>(kBlock)) << std::strerror(errno);
  EXPECT_EQ(pread_block(fd, 1), after);
}

bool has_window(int fd) {
  vmcoh_window_stats stats{};
  return ::ioctl(fd, VMCOH_IOC_GET_WINDOW_STATS, &stats) == 0;
}

TEST_F(DeviceTest, ASplicedReadKeepsWhatTheBlockHeldAcrossAPunchAndARewrite) {
  if (has_window(fd())) GTEST_SKIP() << "the window's case is WindowASplicedRead...";
  expect_a_spliced_read_keeps_what_the_block_held(fd());
}

TEST_F(DeviceTest, WindowASplicedReadKeepsWhatTheBlockHeldAcrossAPunchAndARewrite) {
  if (!has_window(fd())) GTEST_SKIP() << "needs a window: window_mb > 0 (tests/guest/window.sh)";
  expect_a_spliced_read_keeps_what_the_block_held(fd());
}

}  // namespace
}  // namespace vmcoh::test
