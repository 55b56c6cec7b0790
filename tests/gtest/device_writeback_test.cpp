// Dirty tracking, write-back and coherence-lock drops of a backed object (uapi/vmcoh.h, "Backing
// store"), with a writable BackingServer.  The drop scenarios are the OCFS2 seed
// (../shared/seeds/lkml-2005-ocfs2-page-lock-ordering.txt): a node must write back and invalidate
// before its cluster lock may move, while its own tasks fault on the range.
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include <vmcoh/backing_server.hpp>
#include <vmcoh/error.hpp>
#include <vmcoh/rng.hpp>
#include <vmcoh/sigbus_probe.hpp>
#include <vmcoh/test_hooks.hpp>

#include "backing_fixture.hpp"

namespace vmcoh::test {
namespace {

using namespace std::chrono_literals;

class WritebackTest : public BackingTest {
 protected:
  void SetUp() override { set_up(BackingServer::Access::writable); }

  // fsync(2) of the device: 0 or the errno.
  [[nodiscard]] int fsync_errno() const { return ::fsync(fd()) == 0 ? 0 : errno; }

  // Writers and drops at random over a few blocks (below).
  void stress_nothing_written_is_lost();
};

// A server that takes STOREs of runs (VMCOH_ATTACH_STORE_RUNS) and LOADs of runs, over four
// regions.
class WritebackRunsTest : public WritebackTest {
 protected:
  void SetUp() override {
    set_up(BackingServer::Access::writable, kRegionTestBlocks, BackingServer::Loads::regions,
           BackingServer::Stores::runs);
  }
};

class WritebackRunsHoldTest : public WritebackRunsTest {
 protected:
  void SetUp() override {
    WritebackRunsTest::SetUp();
    if (!IsSkipped()) require_test_hooks();
  }
};

constexpr std::uint64_t kRegionBlocks = VMCOH_RANGE_SIZE / kBlock;

class WritebackHoldTest : public WritebackTest {
 protected:
  void SetUp() override {
    WritebackTest::SetUp();
    if (!IsSkipped()) require_test_hooks();
  }
};

void store_block(const Mapping& map, std::uint64_t block, const PageImage& page) {
  std::memcpy(map.data() + block * kBlock, page.bytes(), kBlock);
}

volatile std::uint64_t* word_of(const Mapping& map, std::uint64_t block) {
  return reinterpret_cast<volatile std::uint64_t*>(map.data() + block * kBlock);
}

TEST_F(WritebackTest, StoresThroughAMappingReachTheServerAtFsyncAndAreWriteProtectedAgain) {
  EXPECT_NE(info().features & VMCOH_FEATURE_WRITEBACK, 0U);
  const Mapping shared = map(PROT_READ | PROT_WRITE, MAP_SHARED);
  store_block(shared, 4, block_stamp(4, 5));
  EXPECT_EQ(backing().blocks_dirty, 1U);
  EXPECT_EQ(server().stores(4), 0U) << "a STORE before fsync";

  ASSERT_EQ(fsync_errno(), 0);
  EXPECT_EQ(server().block(4), block_stamp(4, 5));
  EXPECT_EQ(server().stores(4), 1U);
  EXPECT_EQ(backing().blocks_dirty, 0U);
  ASSERT_EQ(fsync_errno(), 0);
  EXPECT_EQ(server().stores(4), 1U) << "a clean block was stored again";

  // Write-protected again: the next store must be noticed.
  const std::uint64_t mkwrites = stats().mkwrite_faults;
  store_block(shared, 4, block_stamp(4, 6));
  EXPECT_GT(stats().mkwrite_faults, mkwrites);
  EXPECT_EQ(backing().blocks_dirty, 1U);
  ASSERT_EQ(fsync_errno(), 0);
  EXPECT_EQ(server().block(4), block_stamp(4, 6));
  EXPECT_EQ(server().stores(4), 2U);
  EXPECT_EQ(server().loads(4), 1U) << "write-back must not drop the block";
}

TEST_F(WritebackTest, WriteLoadsTheBlockFirstAndMarksItDirty) {
  const std::uint64_t value = 0x1234'5678'9abc'def0;
  ASSERT_EQ(::pwrite(fd(), &value, sizeof(value), 6 * kBlock + 64), 8);
  EXPECT_EQ(server().loads(6), 1U);
  PageImage expected = block_stamp(6, 1);
  expected.words[8] = value;
  EXPECT_EQ(pread_block(fd(), 6), expected);
  const Mapping shared = map(PROT_READ, MAP_SHARED);
  EXPECT_EQ(mapped_block(shared, 6), expected);

  ASSERT_EQ(fsync_errno(), 0);
  EXPECT_EQ(server().block(6), expected);
  EXPECT_EQ(server().stores(6), 1U);
}

TEST_F(WritebackTest, AFailedStoreKeepsTheBlockDirtyAndFsyncFails) {
  server().fail_stores(3, -EIO);
  const Mapping shared = map(PROT_READ | PROT_WRITE, MAP_SHARED);
  store_block(shared, 3, block_stamp(3, 7));
  EXPECT_EQ(fsync_errno(), EIO);
  EXPECT_EQ(backing().blocks_dirty, 1U);
  EXPECT_GE(backing().stores_failed, 1U);
  EXPECT_EQ(server().block(3), block_stamp(3, 1));

  server().fail_stores(3, 0);
  EXPECT_EQ(fsync_errno(), 0);
  EXPECT_EQ(server().block(3), block_stamp(3, 7));
  EXPECT_EQ(backing().blocks_dirty, 0U);
}

// Nothing written is lost when the server goes: the object keeps its dirty blocks, orphaned,
// and the next writable server receives them.
TEST_F(WritebackTest, DirtyBlocksOutliveTheirServerAndGoToTheNextOne) {
  const Mapping shared = map(PROT_READ | PROT_WRITE, MAP_SHARED);
  store_block(shared, 2, block_stamp(2, 8));
  server().die();
  EXPECT_EQ(info().backing, VMCOH_BACKING_ORPHANED);
  EXPECT_EQ(fsync_errno(), EIO);
  EXPECT_EQ(pread_block(fd(), 2), block_stamp(2, 8));
  EXPECT_THROW(BackingServer(device_path(), kTestBlocks), std::system_error)
      << "a read-only server cannot take the dirty blocks";

  server_ =
      std::make_unique<BackingServer>(device_path(), kTestBlocks, BackingServer::Access::writable);
  EXPECT_EQ(fsync_errno(), 0);
  EXPECT_EQ(server().block(2), block_stamp(2, 8));
}

TEST_F(WritebackTest, DetachLeavesDirtyBlocksOrphanedNotLost) {
  const std::uint64_t value = 42;
  ASSERT_EQ(::pwrite(fd(), &value, sizeof(value), 9 * kBlock), 8);
  server().detach();
  EXPECT_EQ(info().backing, VMCOH_BACKING_ORPHANED);
  EXPECT_EQ(pread_block(fd(), 9).words[0], value);
  EXPECT_EQ(backing_stats(fd()).blocks_dirty, 1U);
}

TEST_F(WritebackTest, AReadOnlyServerKeepsTheObjectReadOnly) {
  server_.reset();
  server_ = std::make_unique<BackingServer>(device_path(), kTestBlocks);
  const std::uint64_t value = 1;
  EXPECT_EQ(::pwrite(fd(), &value, sizeof(value), 0), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_THROW(map(PROT_READ | PROT_WRITE, MAP_SHARED), std::system_error);
}

TEST_F(WritebackTest, BadDropsAreRejected) {
  vmcoh_range range{};
  range.offset = 1;
  range.length = kBlock;
  EXPECT_EQ(::ioctl(server().fd(), VMCOH_IOC_DROP, &range), -1);
  EXPECT_EQ(errno, EINVAL);
  range.offset = 0;
  range.flags = 1;
  EXPECT_EQ(::ioctl(server().fd(), VMCOH_IOC_DROP, &range), -1);
  EXPECT_EQ(errno, EINVAL);
  range.flags = 0;
  EXPECT_EQ(::ioctl(fd(), VMCOH_IOC_DROP, &range), -1) << "only the server drops";
  EXPECT_EQ(errno, EPERM);

  vmcoh_request request{};
  request.flags = VMCOH_RECV_NONBLOCK;
  EXPECT_EQ(::ioctl(server().fd(), VMCOH_IOC_RECV, &request), -1)
      << "a writable server's RECV needs a STORE buffer";
  EXPECT_EQ(errno, EINVAL);
}

// The scenario "dirty data survives a drop": what was stored through a mapping and written with
// write(2) is in the server's copy when DROP returns, and what the range shows afterwards is
// loaded again.
TEST_F(WritebackTest, DirtyDataSurvivesADrop) {
  const Mapping shared = map(PROT_READ | PROT_WRITE, MAP_SHARED);
  store_block(shared, 7, block_stamp(7, 9));
  const PageImage written = block_stamp(8, 9);
  ASSERT_EQ(::pwrite(fd(), written.bytes(), kBlock, 8 * kBlock), static_cast<ssize_t>(kBlock));

  server().drop(7, 2);
  EXPECT_EQ(server().block(7), block_stamp(7, 9)) << "the drop lost what was stored through mmap";
  EXPECT_EQ(server().block(8), written) << "the drop lost what write(2) wrote";
  EXPECT_EQ(backing().blocks_dirty, 0U);

  // Dropped: the next access loads again, and sees what was written.
  EXPECT_EQ(probed_block(shared, 7), std::optional(block_stamp(7, 9)));
  EXPECT_EQ(pread_block(fd(), 8), written);
  EXPECT_EQ(server().loads(7), 2U);
  EXPECT_EQ(server().loads(8), 2U);
}

// A fault that arrives while a drop writes back waits for it, then loads what the other node
// wrote once it held the lock.
TEST_F(WritebackHoldTest, AFaultDuringADropWaitsAndLoadsAgain) {
  constexpr std::uint64_t b = 5;
  const Mapping shared = map(PROT_READ, MAP_SHARED);
  EXPECT_EQ(pread_block(fd(), b), block_stamp(b, 1));  // resident, not mapped
  std::promise<void> go;
  std::optional<PageImage> seen;
  // Created before anything parks: a thread's stack is mapped under mmap_lock.
  std::thread faulter([&] {
    go.get_future().wait();
    seen = probed_block(shared, b);
  });
  HoldPoint started(fd(), VMCOH_HOLD_DROP_STARTED, b, VMCOH_HOLD_OP_DROP, kWait);
  auto drop = std::async(std::launch::async, [&] { server().drop(b); });
  ASSERT_TRUE(started.wait_parked(kWait));

  const std::uint64_t waits = backing().drop_waits;
  go.set_value();
  const auto deadline = std::chrono::steady_clock::now() + kWait;
  while (backing().drop_waits == waits && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_GT(backing().drop_waits, waits) << "the fault did not wait for the drop";
  server().set_block(b, block_stamp(b, 2));  // the other node's write, once it had the lock
  started.release();
  drop.get();
  faulter.join();
  EXPECT_EQ(seen, std::optional(block_stamp(b, 2)));
  EXPECT_EQ(server().loads(b), 2U);
}

// The scenario "lock drop vs fault", the OCFS2 inversion: a fault holds the entry lock of block
// 5 when a drop of it begins.  The drop must wait for that entry; the fault must therefore let
// go of it before it waits for the drop.  The fault runs in a child process, so that if both
// wait for each other the watchdog can report the stuck stacks and kill the child, which ends
// the deadlock instead of hanging the run.
TEST_F(WritebackHoldTest, ADropDoesNotWaitForAFaultThatWaitsForIt) {
  constexpr std::uint64_t b = 5;
  const Mapping shared = map(PROT_READ, MAP_SHARED);
  EXPECT_EQ(pread_block(fd(), b), block_stamp(b, 1));
  HoldPoint locked(fd(), VMCOH_HOLD_FAULT_LOCKED, b, 0, kWait);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const std::uint64_t generation =
        word_of(shared, b)[offsetof(StampHeader, generation) / sizeof(std::uint64_t)];
    ::_exit(generation == 2 ? 0 : 1);
  }
  ASSERT_TRUE(locked.wait_parked(kWait));

  HoldPoint started(fd(), VMCOH_HOLD_DROP_STARTED, b, VMCOH_HOLD_OP_DROP, kWait);
  auto drop = std::async(std::launch::async, [&] { server().drop(b); });
  ASSERT_TRUE(started.wait_parked(kWait));
  server().set_block(b, block_stamp(b, 2));
  locked.release();  // the fault finds the drop in progress
  started.release();

  if (drop.wait_for(kStuck) != std::future_status::ready) {
    ADD_FAILURE() << "deadlock: the DROP waits for an entry whose holder waits for the DROP; "
                  << "stuck tasks:\n"
                  << task_stacks() << task_stacks(std::to_string(child));
    ::kill(child, SIGKILL);  // its wait is killable: the entry is let go, and the drop ends
  }
  drop.get();
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) return;  // reported above
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "the fault did not load the block again after the drop (status " << status << ")";
  EXPECT_EQ(server().loads(b), 2U);
}

// Stress for "nothing written is ever lost": writers store into blocks of their own, through
// the mapping or with pwrite, and read each value back; meanwhile the server drops random ranges
// and fsyncs.  Each read-back must see the last value written, and in the end the server's copy
// must hold every last value.
void WritebackTest::stress_nothing_written_is_lost() {
  constexpr std::uint64_t kBlocks = 8;
  constexpr int kWriters = 2;
  constexpr std::uint64_t kDrops = 100000;
  const auto kStressTime = stress_time(10s);
  std::array<std::uint64_t, kBlocks> last{};  // block b belongs to writer b % kWriters
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> writes{0};
  std::atomic<std::uint64_t> violations{0};
  std::mutex first_mutex;
  std::string first;
  const Mapping shared = map(PROT_READ | PROT_WRITE, MAP_SHARED);

  auto writer = [&](int id) {
    Rng rng(0xd1e7 + id);
    while (!done.load(std::memory_order_relaxed)) {
      const std::uint64_t b = id + kWriters * rng.below(kBlocks / kWriters);
      const std::uint64_t value = ++last[b];
      const bool via_map = rng.chance(1, 2);
      std::uint64_t seen = 0;
      if (via_map) {
        *word_of(shared, b) = value;
        if (probe_load(&seen, word_of(shared, b), 1)) seen = 0;
      } else {
        if (::pwrite(fd(), &value, sizeof(value), static_cast<off_t>(b * kBlock)) != 8 ||
            ::pread(fd(), &seen, sizeof(seen), static_cast<off_t>(b * kBlock)) != 8) {
          seen = 0;
        }
      }
      if (seen != value && violations.fetch_add(1) == 0) {
        const std::scoped_lock lock(first_mutex);
        first = fmt::format("block {}: wrote {} {}, read back {}", b, value,
                            via_map ? "through the mapping" : "with pwrite", seen);
      }
      writes.fetch_add(1);
    }
  };
  std::vector<std::thread> writers;
  writers.reserve(kWriters);
  for (int i = 0; i < kWriters; ++i) writers.emplace_back(writer, i);

  Rng rng(11);
  std::uint64_t drops = 0;
  const auto deadline = std::chrono::steady_clock::now() + kStressTime;
  for (; drops < kDrops && violations.load() == 0 && std::chrono::steady_clock::now() < deadline;
       ++drops) {
    const std::uint64_t b = rng.below(kBlocks);
    if (rng.chance(1, 4)) {
      EXPECT_EQ(fsync_errno(), 0);
    } else {
      server().drop(b, 1 + rng.below(kBlocks - b));
    }
  }
  done = true;
  for (auto& t : writers) t.join();
  ASSERT_EQ(fsync_errno(), 0);
  EXPECT_EQ(violations.load(), 0U) << "values lost in " << writes.load() << " writes and " << drops
                                   << " drops and fsyncs; the first: " << first;
  for (std::uint64_t b = 0; b < kBlocks; ++b) {
    EXPECT_EQ(server().block(b).words[0], last[b]) << "block " << b << " lost at the server";
  }
  EXPECT_GT(writes.load(), 0U);
  RecordProperty("drops", std::to_string(drops));
  RecordProperty("writes", std::to_string(writes.load()));
  RecordProperty("stores", std::to_string(backing().stores));
}

TEST_F(WritebackTest, StressNothingWrittenIsLostAcrossDropsAndFsyncs) {
  stress_nothing_written_is_lost();
}

// With runs, each STORE write-protects its run by one unmap after it cleared each block's mark:
// a store between the two must still reach the server, in the copy or at the next writeback.
TEST_F(WritebackRunsTest, StressNothingWrittenInRunsIsLostAcrossDropsAndFsyncs) {
  stress_nothing_written_is_lost();
}

// The same, step by step: an fsync parks once it has cleared the marks of the run of blocks 4
// and 5, whose PTEs are still writable; a store to block 4 goes straight in, with no fault.  It
// must reach the server: the run is write-protected, then copied (kmod/writeback.c).  Copied
// first (unsafe=writeback_copy_before_unmap), the STORE carries the old contents and the block is
// clean: the store is lost.
TEST_F(WritebackRunsHoldTest, AStoreBeforeItsRunIsWriteProtectedReachesTheServer) {
  const Mapping shared = map(PROT_READ | PROT_WRITE, MAP_SHARED);
  store_block(shared, 4, block_stamp(4, 2));
  store_block(shared, 5, block_stamp(5, 2));
  std::optional<HoldPoint> cleared;
  cleared.emplace(fd(), VMCOH_HOLD_WRITEBACK_CLEARED, 4, 0, kWait);
  auto fsync = std::async(std::launch::async, [&] { return fsync_errno(); });
  ASSERT_TRUE(cleared->wait_parked(kWait));
  EXPECT_EQ(backing().blocks_dirty, 0U);

  const std::uint64_t mkwrites = stats().mkwrite_faults;
  store_block(shared, 4, block_stamp(4, 3));
  EXPECT_EQ(stats().mkwrite_faults, mkwrites) << "the PTE was write-protected already";
  cleared->release();
  ASSERT_EQ(fsync.get(), 0);
  ASSERT_EQ(fsync_errno(), 0);  // sends block 4 again if it is dirty again
  EXPECT_EQ(server().block(4), block_stamp(4, 3))
      << "a store before its run was write-protected was lost";
  EXPECT_EQ(server().block(5), block_stamp(5, 2));
}

// One STORE for each run of dirty blocks in a row, never across a region: a region written whole
// goes back in one round trip, and each block of a run is write-protected again.
TEST_F(WritebackRunsTest, FsyncSendsOneStorePerRunOfDirtyBlocksWithinARegion) {
  EXPECT_NE(info().features & VMCOH_FEATURE_STORE_RUNS, 0U);
  const Mapping shared = map(PROT_READ | PROT_WRITE, MAP_SHARED, kRegionTestBlocks * kBlock);
  std::vector<std::uint64_t> dirty;
  for (std::uint64_t b = 0; b < kRegionBlocks; ++b) dirty.push_back(b);  // region 0 whole
  for (const std::uint64_t b : {600, 601, 602, 604}) dirty.push_back(b);
  for (std::uint64_t b = 1020; b < 1028; ++b) dirty.push_back(b);  // across a region's end
  for (const std::uint64_t b : dirty) {
    if (b < 1020) {
      store_block(shared, b, block_stamp(b, 2));
    } else {
      pwrite_block(fd(), b, block_stamp(b, 2));
    }
  }
  ASSERT_EQ(backing().blocks_dirty, dirty.size());

  const std::uint64_t stores = backing().stores;  // counted since the module was loaded
  ASSERT_EQ(fsync_errno(), 0);
  // [0, 512), [600, 603), 604, [1020, 1024), [1024, 1028)
  EXPECT_EQ(server().store_requests(), 5U);
  EXPECT_EQ(server().stored_blocks(), dirty.size());
  EXPECT_EQ(backing().stores - stores, 5U);
  EXPECT_EQ(backing().blocks_dirty, 0U);
  for (const std::uint64_t b : dirty) {
    ASSERT_EQ(server().block(b), block_stamp(b, 2)) << "block " << b;
    ASSERT_EQ(server().stores(b), 1U) << "block " << b;
  }
  EXPECT_EQ(server().stores(603), 0U) << "a clean block went back";

  // Each store must pass ->page_mkwrite again, which marks its block.
  for (const std::uint64_t b : {5, 300}) store_block(shared, b, block_stamp(b, 3));
  EXPECT_EQ(backing().blocks_dirty, 2U) << "a block of the run stayed writable";
  ASSERT_EQ(fsync_errno(), 0);
  EXPECT_EQ(server().store_requests(), 7U);
  EXPECT_EQ(server().block(5), block_stamp(5, 3));
  EXPECT_EQ(server().block(300), block_stamp(300, 3));
}

// A run the server does not keep stays dirty, all of it, and fsync fails; the next one sends it
// again.
TEST_F(WritebackRunsTest, ARunTheServerDoesNotKeepStaysDirtyWhole) {
  for (std::uint64_t b = 10; b < 20; ++b) pwrite_block(fd(), b, block_stamp(b, 2));
  server().fail_stores(15, -EIO);
  const std::uint64_t failed = backing().stores_failed;
  EXPECT_EQ(fsync_errno(), EIO);
  EXPECT_EQ(server().store_requests(), 1U);
  EXPECT_EQ(backing().blocks_dirty, 10U);
  EXPECT_EQ(backing().stores_failed - failed, 1U);
  EXPECT_EQ(server().block(10), block_stamp(10, 1)) << "the server kept part of a failed run";

  server().fail_stores(15, 0);
  ASSERT_EQ(fsync_errno(), 0);
  EXPECT_EQ(server().store_requests(), 2U);
  EXPECT_EQ(backing().blocks_dirty, 0U);
  for (std::uint64_t b = 10; b < 20; ++b) EXPECT_EQ(server().block(b), block_stamp(b, 2));
}

// Store runs need a writable server: the flag alone is refused before anything else is looked
// at; with WRITABLE, this object already has a server.
TEST_F(WritebackRunsTest, StoreRunsNeedAWritableServer) {
  const Fd other = Fd::open(device_path(), O_RDWR);
  vmcoh_attach attach{};
  attach.flags = VMCOH_ATTACH_STORE_RUNS;
  EXPECT_EQ(::ioctl(other.get(), VMCOH_IOC_ATTACH, &attach), -1);
  EXPECT_EQ(errno, EINVAL);
  attach.flags |= VMCOH_ATTACH_WRITABLE;
  EXPECT_EQ(::ioctl(other.get(), VMCOH_IOC_ATTACH, &attach), -1);
  EXPECT_EQ(errno, EBUSY);
}

}  // namespace
}  // namespace vmcoh::test
