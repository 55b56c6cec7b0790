// Backed objects (uapi/vmcoh.h, "Backing store"): blocks that are not resident are loaded from a
// userspace server.  Each test drives one interleaving of the wendelin.core seed
// (../shared/seeds/wendelin-virtmem-loadblk-unlocked.txt) with the server's timing: a load is held
// at the server while the rest of the scenario runs, then answered.
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <vmcoh/backing_server.hpp>
#include <vmcoh/error.hpp>
#include <vmcoh/fd.hpp>
#include <vmcoh/sigbus_probe.hpp>

#include "test_object.hpp"

namespace vmcoh::test {
namespace {

using namespace std::chrono_literals;

constexpr auto kWait = 10s;  // for what must happen; a failure costs this much

// The server's copy: block b holds its stamp at generation 1.
void fill_server(BackingServer& server) {
  for (std::uint64_t b = 0; b < server.blocks(); ++b) server.set_block(b, block_stamp(b, 1));
}

vmcoh_backing_stats backing_stats(int fd) {
  vmcoh_backing_stats stats{};
  check_syscall(::ioctl(fd, VMCOH_IOC_GET_BACKING_STATS, &stats), "VMCOH_IOC_GET_BACKING_STATS");
  return stats;
}

// A module parameter set for the length of a test (we run as root in the VM).
class ParameterOverride {
 public:
  ParameterOverride(std::string name, const std::string& value)
      : path_("/sys/module/vmcoh/parameters/" + std::move(name)) {
    std::ifstream(path_) >> old_;
    std::ofstream(path_) << value;
  }
  ParameterOverride(const ParameterOverride&) = delete;
  ParameterOverride& operator=(const ParameterOverride&) = delete;
  ~ParameterOverride() { std::ofstream(path_) << old_; }

 private:
  std::string path_;
  std::string old_;
};

// pread of one block: the page, or the errno.
struct ReadResult {
  PageImage page;
  int error = 0;
};

ReadResult read_block(int fd, std::uint64_t block) {
  ReadResult result;
  const ssize_t n = ::pread(fd, result.page.bytes(), kBlock, static_cast<off_t>(block * kBlock));
  if (n < 0) result.error = errno;
  return result;
}

class BackingTest : public DeviceTest {
 protected:
  void SetUp() override {
    DeviceTest::SetUp();
    if (IsSkipped()) return;
    install_sigbus_probe();
    server_ = std::make_unique<BackingServer>(device_path(), kTestBlocks);
    fill_server(*server_);
  }

  void TearDown() override {
    server_.reset();
    // A test that failed halfway may leave the object orphaned: bring it back to plain.
    if (device_present() && info().backing != VMCOH_BACKING_NONE) BackingServer(device_path(), 0);
    DeviceTest::TearDown();
  }

  [[nodiscard]] BackingServer& server() const { return *server_; }
  [[nodiscard]] vmcoh_backing_stats backing() const { return backing_stats(fd()); }

  std::unique_ptr<BackingServer> server_;
};

TEST_F(BackingTest, FaultsAndReadsLoadEachBlockOnceFromTheServer) {
  EXPECT_EQ(info().backing, VMCOH_BACKING_SERVED);
  const Mapping shared = map(PROT_READ, MAP_SHARED);
  EXPECT_EQ(mapped_block(shared, 3), block_stamp(3, 1));
  EXPECT_EQ(pread_block(fd(), 5), block_stamp(5, 1));
  EXPECT_EQ(mapped_block(shared, 3), block_stamp(3, 1));
  EXPECT_EQ(pread_block(fd(), 3), block_stamp(3, 1));
  EXPECT_EQ(mapped_block(shared, 5), block_stamp(5, 1));
  EXPECT_EQ(server().loads(3), 1U);
  EXPECT_EQ(server().loads(5), 1U);
  EXPECT_EQ(server().loads(4), 0U) << "fault-around maps resident blocks only";
  EXPECT_EQ(backing().loads_published, backing().loads);
}

TEST_F(BackingTest, TasksWantingOneBlockShareOneLoad) {
  server().hold(7);
  const Mapping shared = map(PROT_READ, MAP_SHARED);
  const vmcoh_backing_stats before = backing();
  std::vector<std::future<PageImage>> readers;
  for (int i = 0; i < 3; ++i) {
    readers.push_back(std::async(std::launch::async, [&] { return mapped_block(shared, 7); }));
  }
  readers.push_back(std::async(std::launch::async, [&] { return pread_block(fd(), 7); }));
  ASSERT_TRUE(server().wait_for_loads(7, 1, kWait));
  std::this_thread::sleep_for(100ms);  // time for every reader to find the load in flight
  EXPECT_EQ(server().loads(7), 1U);
  server().release(7);
  for (auto& reader : readers) EXPECT_EQ(reader.get(), block_stamp(7, 1));
  EXPECT_EQ(server().loads(7), 1U) << "one LOAD however many tasks wanted the block";
  EXPECT_GE(backing().load_waits - before.load_waits, readers.size()) << "each waited for it";
}

TEST_F(BackingTest, LoadsOfDifferentBlocksAreInFlightTogether) {
  server().hold(10);
  server().hold(11);
  const Mapping shared = map(PROT_READ, MAP_SHARED);
  ASSERT_EQ(pread_block(fd(), 3), block_stamp(3, 1));
  auto a = std::async(std::launch::async, [&] { return mapped_block(shared, 10); });
  auto b = std::async(std::launch::async, [&] { return pread_block(fd(), 11); });
  ASSERT_TRUE(server().wait_for_loads(10, 1, kWait));
  ASSERT_TRUE(server().wait_for_loads(11, 1, kWait));
  EXPECT_GE(server().max_pending(), 2U) << "the server saw both loads in flight at once";
  // Nothing else waits for them: a fault, read(2) and an invalidation elsewhere proceed.
  EXPECT_EQ(mapped_block(shared, 3), block_stamp(3, 1));
  EXPECT_EQ(pread_block(fd(), 3), block_stamp(3, 1));
  server().invalidate(20, 4);
  server().release(10);
  server().release(11);
  EXPECT_EQ(a.get(), block_stamp(10, 1));
  EXPECT_EQ(b.get(), block_stamp(11, 1));
}

// The wendelin case: the server's copy changes while a load of the old copy is on its way.
TEST_F(BackingTest, ALoadInvalidatedInFlightIsDroppedAndRedone) {
  server().hold(12);
  const Mapping shared = map(PROT_READ, MAP_SHARED);
  auto fault = std::async(std::launch::async, [&] { return mapped_block(shared, 12); });
  auto read = std::async(std::launch::async, [&] { return pread_block(fd(), 12); });
  ASSERT_TRUE(server().wait_for_loads(12, 1, kWait));

  server().set_block(12, block_stamp(12, 2));
  auto invalidate = std::async(std::launch::async, [&] { server().invalidate(12); });
  ASSERT_EQ(invalidate.wait_for(kWait), std::future_status::ready)
      << "INVALIDATE must not wait for the load in flight";
  invalidate.get();

  server().release(12);  // answers with generation 1: what the server had when asked
  EXPECT_EQ(fault.get(), block_stamp(12, 2)) << "a stale answer was installed";
  EXPECT_EQ(read.get(), block_stamp(12, 2));
  EXPECT_EQ(mapped_block(shared, 12), block_stamp(12, 2));
  EXPECT_EQ(server().loads(12), 2U);
  EXPECT_GE(backing().loads_invalidated, 1U);
}

TEST_F(BackingTest, InvalidationReachesEveryMappingAndRead) {
  const Mapping shared = map(PROT_READ, MAP_SHARED);
  const Mapping priv = map(PROT_READ, MAP_PRIVATE);
  ASSERT_EQ(mapped_block(shared, 4), block_stamp(4, 1));
  ASSERT_EQ(mapped_block(priv, 4), block_stamp(4, 1));
  server().set_block(4, block_stamp(4, 2));
  server().invalidate(4);
  EXPECT_EQ(mapped_block(shared, 4), block_stamp(4, 2));
  EXPECT_EQ(mapped_block(priv, 4), block_stamp(4, 2));
  EXPECT_EQ(pread_block(fd(), 4), block_stamp(4, 2));
  EXPECT_EQ(server().loads(4), 2U);
}

TEST_F(BackingTest, AFailedLoadIsSigbusForFaultsAndEioForReads) {
  server().fail_loads(13, -EIO);
  const Mapping shared = map(PROT_READ, MAP_SHARED);
  EXPECT_TRUE(load_would_sigbus(shared.data() + 13 * kBlock));
  EXPECT_EQ(read_block(fd(), 13).error, EIO);
  server().fail_loads(13, 0);
  EXPECT_EQ(mapped_block(shared, 13), block_stamp(13, 1)) << "a later load may succeed";
  EXPECT_GE(backing().loads_failed, 2U);
}

TEST_F(BackingTest, AServerThatDiesFailsItsLoadsAndANewOneCanAttach) {
  server().hold(14);
  const Mapping shared = map(PROT_READ, MAP_SHARED);
  ASSERT_EQ(mapped_block(shared, 3), block_stamp(3, 1));
  auto read = std::async(std::launch::async, [&] { return read_block(fd(), 14); });
  ASSERT_TRUE(server().wait_for_loads(14, 1, kWait));
  server().die();
  EXPECT_EQ(read.get().error, EIO);
  EXPECT_EQ(info().backing, VMCOH_BACKING_ORPHANED);
  EXPECT_TRUE(load_would_sigbus(shared.data() + 15 * kBlock)) << "no server: loads fail at once";
  EXPECT_EQ(mapped_block(shared, 3), block_stamp(3, 1)) << "resident blocks stay";

  server_ = std::make_unique<BackingServer>(device_path(), kTestBlocks);
  fill_server(server());
  EXPECT_EQ(mapped_block(shared, 14), block_stamp(14, 1));
  EXPECT_EQ(pread_block(fd(), 15), block_stamp(15, 1));
}

// The same, with a real server process killed while it holds a request.
TEST_F(BackingTest, AServerProcessKilledMidLoadFailsTheLoad) {
  server_->detach();
  server_.reset();
  const std::string dev_path = device_path().string();  // no allocation after fork()
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  Fd from_child(pipe_fds[0]);
  Fd to_parent(pipe_fds[1]);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Only async-signal-safe calls here: the parent has threads.
    const int dev = ::open(dev_path.c_str(), O_RDWR | O_CLOEXEC);
    vmcoh_attach attach{};
    char ok = dev >= 0 && ::ioctl(dev, VMCOH_IOC_ATTACH, &attach) == 0 ? 'a' : 'x';
    if (::write(to_parent.get(), &ok, 1) != 1 || ok != 'a') ::_exit(1);
    vmcoh_request request{};
    ok = ::ioctl(dev, VMCOH_IOC_RECV, &request) == 0 ? 'r' : 'x';
    if (::write(to_parent.get(), &ok, 1) != 1) ::_exit(1);
    ::pause();
    ::_exit(0);
  }
  to_parent.reset();
  char step = 0;
  ASSERT_EQ(::read(from_child.get(), &step, 1), 1);
  ASSERT_EQ(step, 'a') << "the child could not attach";
  const Mapping shared = map(PROT_READ, MAP_SHARED);
  auto fault = std::async(std::launch::async,
                          [&] { return load_would_sigbus(shared.data() + 16 * kBlock); });
  ASSERT_EQ(::read(from_child.get(), &step, 1), 1);
  ASSERT_EQ(step, 'r') << "the child received no request";
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(fault.get()) << "the fault whose load the dead server held";
  EXPECT_EQ(info().backing, VMCOH_BACKING_ORPHANED);
}

TEST_F(BackingTest, ALoadTheServerLeavesUnansweredTimesOut) {
  const ParameterOverride timeout("load_timeout_ms", "300");
  server().hold(17);
  const vmcoh_backing_stats before = backing();
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(read_block(fd(), 17).error, EIO);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 250ms);
  EXPECT_EQ(backing().load_timeouts, before.load_timeouts + 1);
  server().release(17);
  EXPECT_EQ(server().stale_replies(), 1U) << "a late answer is refused with ENOENT";
}

TEST_F(BackingTest, ABackedObjectIsReadOnly) {
  const PageImage page = block_stamp(2, 9);
  errno = 0;
  EXPECT_EQ(::pwrite(fd(), page.bytes(), kBlock, 0), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(::mmap(nullptr, kTestSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd(), 0), MAP_FAILED);
  EXPECT_EQ(errno, EACCES);
  const Mapping shared = map(PROT_READ, MAP_SHARED);
  EXPECT_EQ(::mprotect(shared.data(), kTestSize, PROT_READ | PROT_WRITE), -1);
  EXPECT_EQ(errno, EACCES);
  vmcoh_range range{0, kBlock, 0, 0};
  EXPECT_EQ(::ioctl(fd(), VMCOH_IOC_PUNCH_HOLE, &range), -1);
  EXPECT_EQ(errno, EOPNOTSUPP);
  // Private mappings copy on write, and the object keeps the server's data.
  const Mapping priv = map(PROT_READ | PROT_WRITE, MAP_PRIVATE);
  store_block(priv, 2, page);
  EXPECT_EQ(mapped_block(priv, 2), page);
  EXPECT_EQ(pread_block(fd(), 2), block_stamp(2, 1));
  // SEEK_HOLE finds no hole before EOF: every block has data, resident or not.
  EXPECT_EQ(::lseek(fd(), 0, SEEK_HOLE), static_cast<off_t>(kTestSize));
  EXPECT_EQ(::lseek(fd(), 5 * kBlock, SEEK_DATA), static_cast<off_t>(5 * kBlock));
}

TEST_F(BackingTest, OnlyTheServerServesAndOnlyOneAttaches) {
  const Fd other = Fd::open(device_path(), O_RDWR);
  vmcoh_attach attach{};
  EXPECT_EQ(::ioctl(other.get(), VMCOH_IOC_ATTACH, &attach), -1);
  EXPECT_EQ(errno, EBUSY);
  vmcoh_request request{};
  request.flags = VMCOH_RECV_NONBLOCK;
  EXPECT_EQ(::ioctl(other.get(), VMCOH_IOC_RECV, &request), -1);
  EXPECT_EQ(errno, EPERM);
  vmcoh_range range{0, kBlock, 0, 0};
  EXPECT_EQ(::ioctl(other.get(), VMCOH_IOC_INVALIDATE, &range), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(::ioctl(other.get(), VMCOH_IOC_DETACH, &attach), -1);
  EXPECT_EQ(errno, EPERM);
  vmcoh_reply reply{};
  reply.id = 1;
  reply.error = -EIO;
  EXPECT_EQ(::ioctl(other.get(), VMCOH_IOC_REPLY, &reply), -1);
  EXPECT_EQ(errno, EPERM);
}

TEST_F(BackingTest, BadRequestsAreRejected) {
  vmcoh_reply reply{};
  reply.id = 0xdead;
  reply.error = -EIO;
  EXPECT_EQ(::ioctl(server().fd(), VMCOH_IOC_REPLY, &reply), -1);
  EXPECT_EQ(errno, ENOENT) << "no such request";
  reply.error = 5;
  EXPECT_EQ(::ioctl(server().fd(), VMCOH_IOC_REPLY, &reply), -1);
  EXPECT_EQ(errno, EINVAL) << "an error must be a negative errno";
  reply.error = 0;
  reply.length = kBlock / 2;
  EXPECT_EQ(::ioctl(server().fd(), VMCOH_IOC_REPLY, &reply), -1);
  EXPECT_EQ(errno, EINVAL) << "an answer is a whole block";
  reply.length = kBlock;
  reply.reserved[1] = 1;
  EXPECT_EQ(::ioctl(server().fd(), VMCOH_IOC_REPLY, &reply), -1);
  EXPECT_EQ(errno, EINVAL);
  vmcoh_request request{};
  request.flags = 2;
  EXPECT_EQ(::ioctl(server().fd(), VMCOH_IOC_RECV, &request), -1);
  EXPECT_EQ(errno, EINVAL) << "unknown RECV flag";
  vmcoh_range range{kBlock / 2, kBlock, 0, 0};
  EXPECT_EQ(::ioctl(server().fd(), VMCOH_IOC_INVALIDATE, &range), -1);
  EXPECT_EQ(errno, EINVAL) << "unaligned";
  vmcoh_attach attach{};
  attach.flags = 1;
  EXPECT_EQ(::ioctl(server().fd(), VMCOH_IOC_DETACH, &attach), -1);
  EXPECT_EQ(errno, EINVAL);
}

TEST_F(BackingTest, DetachDropsEveryBlockAndTheObjectReadsAsHoles) {
  const Mapping shared = map(PROT_READ, MAP_SHARED);
  ASSERT_EQ(mapped_block(shared, 6), block_stamp(6, 1));
  server_->detach();
  server_.reset();
  EXPECT_EQ(info().backing, VMCOH_BACKING_NONE);
  EXPECT_TRUE(mapped_block(shared, 6).is_zero());
  EXPECT_TRUE(pread_block(fd(), 6).is_zero());
  EXPECT_EQ(stats().blocks_live, 0U);
}

// Plain objects with blocks of their own cannot be attached: their data would be shadowed.
TEST_F(DeviceTest, AttachRefusesAnObjectThatHoldsBlocks) {
  pwrite_block(fd(), 1, block_stamp(1, 1));
  vmcoh_attach attach{};
  EXPECT_EQ(::ioctl(fd(), VMCOH_IOC_ATTACH, &attach), -1);
  EXPECT_EQ(errno, EBUSY);
  attach.reserved[2] = 1;
  EXPECT_EQ(::ioctl(fd(), VMCOH_IOC_ATTACH, &attach), -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_EQ(info().backing, VMCOH_BACKING_NONE);
}

// A hole mapped to the zero page before ATTACH must show the server's data after it.
TEST_F(DeviceTest, AttachReplacesZeroPagesMappedBefore) {
  install_sigbus_probe();
  const Mapping shared = map(PROT_READ, MAP_SHARED);
  ASSERT_TRUE(mapped_block(shared, 8).is_zero());
  {
    BackingServer server(device_path(), kTestBlocks);
    fill_server(server);
    EXPECT_EQ(mapped_block(shared, 8), block_stamp(8, 1));
  }
  EXPECT_TRUE(mapped_block(shared, 8).is_zero());
}

}  // namespace
}  // namespace vmcoh::test
