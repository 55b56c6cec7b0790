// The trap page and the pinned-write paths of pin-vs-punch (vmcoh/userfault.hpp,
// vmcoh/pinned_io.hpp), on files of the host: a call that pins a page of a mapping and then waits
// on the trap is seen waiting, holds off its write until the trap is resolved, and then writes.
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <future>
#include <optional>
#include <string>
#include <system_error>
#include <thread>

#include <gtest/gtest.h>

#include <vmcoh/fd.hpp>
#include <vmcoh/mapping.hpp>
#include <vmcoh/pinned_io.hpp>
#include <vmcoh/userfault.hpp>

#include "test_object.hpp"

namespace vmcoh::test {
namespace {

using namespace std::chrono_literals;

constexpr auto kStuck = 5s;
// How long a call that waits on the trap is watched to see that it does wait.
constexpr auto kStillWaiting = 50ms;

// A directory whose filesystem pins O_DIRECT buffers, or nullopt (/tmp is tmpfs in the VM).
std::optional<std::filesystem::path> direct_io_dir() {
  const std::filesystem::path tmp = std::filesystem::temp_directory_path();
  if (o_direct_refusal(tmp)) return std::nullopt;
  return tmp;
}

class PinnedIoTest : public testing::Test {
 protected:
  void SetUp() override {
    try {
      trap_.emplace();
    } catch (const std::system_error& e) {
      GTEST_SKIP() << "no userfaultfd here: " << e.what();
    }
    object_ = ScratchObject::tmpfs_file();
    if (!object_) GTEST_SKIP() << "no tmpfs directory";
    map_ = Mapping::map(kTestSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd());
    pwrite_block(fd(), 3, block_stamp(3, 1));
  }

  [[nodiscard]] int fd() const { return object_->target().fd(); }
  [[nodiscard]] std::byte* page(std::uint64_t block) const { return map_.data() + block * kBlock; }

  std::optional<TrapPage> trap_;
  std::unique_ptr<ScratchObject> object_;
  Mapping map_;
};

TEST_F(PinnedIoTest, WaitingForTheTrapTimesOutWhenNothingTouchesIt) {
  EXPECT_FALSE(trap_->wait_fault(10ms));
}

TEST_F(PinnedIoTest, AProcessVmWritevBlockedOnTheTrapIsSeenAndWritesOnceResolved) {
  auto call = std::async(std::launch::async,
                         [&] { return process_vm_write_self(trap_->data(), page(3), kBlock); });
  ASSERT_TRUE(trap_->wait_fault(kStuck)) << "process_vm_writev() never reached the trap";
  EXPECT_EQ(call.wait_for(kStillWaiting), std::future_status::timeout)
      << "process_vm_writev() returned with its source missing";
  EXPECT_EQ(pread_block(fd(), 3), block_stamp(3, 1)) << "written before the trap was resolved";
  const PageImage pinned = block_stamp(3, 2);
  trap_->resolve(pinned.bytes());
  EXPECT_EQ(call.get(), kBlock);
  EXPECT_EQ(pread_block(fd(), 3), pinned);
}

// A load of the trap page from another thread waits each time the page was rearmed.
TEST_F(PinnedIoTest, RearmingMakesTheNextAccessWaitAgain) {
  const PageImage first = block_stamp(1, 1);
  const PageImage second = block_stamp(1, 2);
  for (const PageImage* want : {&first, &second}) {
    trap_->rearm();
    auto load = std::async(std::launch::async, [&] {
      PageImage seen;
      std::memcpy(seen.bytes(), trap_->data(), kBlock);
      return seen;
    });
    ASSERT_TRUE(trap_->wait_fault(kStuck)) << "the load never reached the trap";
    trap_->resolve(want->bytes());
    EXPECT_EQ(load.get(), *want);
  }
}

TEST_F(PinnedIoTest, ODirectProbeRefusesTmpfsForItPinsNothing) {
  const std::filesystem::path dir = object_->target().path().parent_path();
  ASSERT_TRUE(is_tmpfs(dir));
  const std::optional<std::string> why = o_direct_refusal(dir);
  ASSERT_TRUE(why.has_value());
  EXPECT_NE(why->find("tmpfs"), std::string::npos) << *why;
}

TEST_F(PinnedIoTest, ODirectProbeAcceptsTheTemporaryDirectoryWhereItPins) {
  const std::filesystem::path tmp = std::filesystem::temp_directory_path();
  if (is_tmpfs(tmp)) GTEST_SKIP() << tmp << " is tmpfs";
  const std::optional<std::string> why = o_direct_refusal(tmp);
  EXPECT_FALSE(why.has_value()) << *why;
}

TEST_F(PinnedIoTest, AnODirectReadBlockedOnItsSecondBufferWritesTheFirstOnceResolved) {
  const std::optional<std::filesystem::path> dir = direct_io_dir();
  if (!dir) GTEST_SKIP() << "no filesystem with O_DIRECT that pins";
  const DirectFile file(*dir);
  const PageImage pinned = block_stamp(3, 2);
  file.set_first_page(pinned);
  auto call =
      std::async(std::launch::async, [&] { return file.read_into(page(3), trap_->data()); });
  ASSERT_TRUE(trap_->wait_fault(kStuck)) << "the O_DIRECT read never reached the trap";
  EXPECT_EQ(call.wait_for(kStillWaiting), std::future_status::timeout);
  EXPECT_EQ(pread_block(fd(), 3), block_stamp(3, 1)) << "read into before the trap was resolved";
  trap_->resolve_zero();
  EXPECT_EQ(call.get(), static_cast<ssize_t>(2 * kBlock));
  EXPECT_EQ(pread_block(fd(), 3), pinned);
}

TEST_F(PinnedIoTest, ReadFixedWritesThroughARegisteredAnonymousBuffer) {
  const Mapping buffer =
      Mapping::map(kBlock, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
  const Fd source = Fd::unnamed(object_->target().path().parent_path());
  pwrite_block(source.get(), 0, block_stamp(0, 7));
  IoUring ring(4);
  const RegisteredBuffer registered = ring.register_buffer(buffer.data(), kBlock);
  EXPECT_EQ(ring.read_fixed(source.get(), 0, buffer.data(), kBlock), static_cast<int>(kBlock));
  EXPECT_EQ(mapped_block(buffer, 0), block_stamp(0, 7));
}

TEST_F(PinnedIoTest, ALongTermPinOfAFileThatNeedsDirtyTrackingIsRefusedWithTheErrno) {
  const std::optional<std::filesystem::path> dir = direct_io_dir();
  if (!dir) GTEST_SKIP() << "no disk filesystem here";
  const Fd file = Fd::unnamed(*dir);
  ASSERT_EQ(::ftruncate(file.get(), kBlock), 0);
  const Mapping shared = Mapping::map(kBlock, PROT_READ | PROT_WRITE, MAP_SHARED, file.get());
  IoUring ring(4);
  try {
    static_cast<void>(ring.register_buffer(shared.data(), kBlock));
    FAIL() << "a long-term pin of a disk file's shared mapping was taken";
  } catch (const std::system_error& e) {
    // EFAULT since 6.5 (dirty tracking), EOPNOTSUPP before (any file but hugetlbfs).
    EXPECT_TRUE(e.code().value() == EFAULT || e.code().value() == EOPNOTSUPP) << e.what();
  }
}

}  // namespace
}  // namespace vmcoh::test
