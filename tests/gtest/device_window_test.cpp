// The window (uapi/vmcoh.h, "The window"): resident blocks of a backed object live in a bounded
// pool of 2 MiB ranges, reclaimed by a worker, by read(2)/write(2) inline and for the shrinker,
// never by a fault.  The scenarios are the virtiofs DAX seed
// (../shared/seeds/lkml-2020-virtiofs-dax-range-reclaim.txt): a working set several times the
// window, reclaim racing faults and writes, and the fault that reclaims inline holding its entry.
// They run in tests/guest/window.sh, which loads the module with window_mb=4 (two ranges); the
// plain gtest run has no window and skips them.
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <future>
#include <iostream>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <vmcoh/backing_server.hpp>
#include <vmcoh/error.hpp>
#include <vmcoh/fd.hpp>
#include <vmcoh/rng.hpp>
#include <vmcoh/sigbus_probe.hpp>
#include <vmcoh/test_hooks.hpp>

#include "backing_fixture.hpp"
#include "stuck_page.hpp"

namespace vmcoh::test {
namespace {

using namespace std::chrono_literals;

constexpr std::uint64_t kRangeBlocks = VMCOH_RANGE_SIZE / kBlock;

// The device's window, or nullopt if it has none (or is absent).
std::optional<vmcoh_window_stats> device_window() {
  if (!device_present()) return std::nullopt;
  const Fd fd = Fd::open(device_path(), O_RDWR | O_CLOEXEC);
  vmcoh_window_stats stats{};
  if (::ioctl(fd.get(), VMCOH_IOC_GET_WINDOW_STATS, &stats) != 0) return std::nullopt;
  return stats;
}

std::uint64_t reclaims(const vmcoh_window_stats& w) {
  return w.reclaims_inline + w.reclaims_background + w.reclaims_shrinker + w.reclaims_fault;
}

std::uint64_t generation_of(const PageImage& page) { return header_of(page).generation; }

// A backed object four times the window, its server writable.
class WindowTest : public BackingTest {
 protected:
  void SetUp() override {
    const std::optional<vmcoh_window_stats> window = device_window();
    if (!window) GTEST_SKIP() << "needs a window: window_mb > 0 (tests/guest/window.sh)";
    ranges_ = window->ranges;
    blocks_ = 4 * ranges_ * kRangeBlocks;
    set_up(BackingServer::Access::writable, blocks_, loads_, stores_);
  }
  void TearDown() override {
    if (ranges_ == 0) return;  // skipped before anything was set up
    BackingTest::TearDown();
  }

  [[nodiscard]] vmcoh_window_stats window() const { return device::get_window_stats(fd()); }
  // Loads of the other regions through `m`, a new block of each per pass, until the window's
  // reclaim has taken region 0 and its STORE of `block` reached the server; false if that did
  // not happen in 16 passes.  Region 0 was just stored into: the reclaim keeps it active (see
  // "Which range goes" in kmod/window.c) until its aging demotes it, after some picks - how
  // many depends on when the worker runs, so the passes go on until it has happened.
  [[nodiscard]] bool reclaim_region_0(const Mapping& m, std::uint64_t block) const {
    for (std::uint64_t pass = 0; pass < 16; ++pass) {
      for (std::uint64_t b = kRangeBlocks + pass; b < blocks_; b += kRangeBlocks) {
        if (!probed_block(m, b)) return false;
      }
      if (server().wait_for_stores(block, 1, 100ms)) return true;
    }
    return server().wait_for_stores(block, 1, kWait);
  }
  // Memory pressure: drop_caches, then the window's counters once `done(counters)` holds, or after
  // `timeout` - the worker reclaims for the shrinker in the background.
  template <typename Done>
  vmcoh_window_stats drop_caches_until(Done done,
                                       std::chrono::steady_clock::duration timeout = kWait) const {
    std::ofstream("/proc/sys/vm/drop_caches") << "3" << std::flush;
    vmcoh_window_stats w = window();
    for (const auto deadline = std::chrono::steady_clock::now() + timeout;
         !done(w) && std::chrono::steady_clock::now() < deadline; w = window()) {
      std::this_thread::sleep_for(10ms);
    }
    return w;
  }
  // The window's and the backing store's counters, for what a failure says.
  [[nodiscard]] std::string counters() const {
    const vmcoh_window_stats w = window();
    const vmcoh_backing_stats b = backing();
    return fmt::format(
        "ranges free {} of {}, range waits {} (timed out {}); loads {}, published {}, failed {}, "
        "timed out {}; stores {}; PMDs {}, downgrades {}",
        w.ranges_free, w.ranges, w.range_waits, w.range_wait_timeouts, b.loads, b.loads_published,
        b.loads_failed, b.load_timeouts, b.stores, w.pmd_maps, w.pmd_downgrades);
  }
  [[nodiscard]] Mapping map_all(int prot) const { return map(prot, MAP_SHARED, blocks_ * kBlock); }
  [[nodiscard]] int fsync_errno() const { return ::fsync(fd()) == 0 ? 0 : errno; }

  // The window's bound: never more resident blocks than its ranges hold.
  void expect_within_window() const {
    const vmcoh_window_stats w = window();
    EXPECT_LE(w.ranges_busy, ranges_);
    EXPECT_LE(stats().blocks_live, ranges_ * kRangeBlocks);
  }

  // Writer threads and reader processes over the whole object, at random (below).
  void stress_writers_and_readers();

  std::uint64_t ranges_ = 0;
  std::uint64_t blocks_ = 0;
  BackingServer::Loads loads_ = BackingServer::Loads::blocks;
  BackingServer::Stores stores_ = BackingServer::Stores::blocks;
};

// The same, with a server that takes runs (region loads and store runs): each miss loads a run
// of its region, and a reclaim writes each run of dirty blocks back in one STORE.
class WindowRunsTest : public WindowTest {
 protected:
  void SetUp() override {
    loads_ = BackingServer::Loads::regions;
    stores_ = BackingServer::Stores::runs;
    WindowTest::SetUp();
  }
};

// Async readahead (kmod/backing.c): a window of at least four ranges.  tests/guest/window.sh runs
// these with window_mb=16; with its usual two ranges they skip.
class WindowReadaheadTest : public WindowRunsTest {
 protected:
  void SetUp() override {
    WindowRunsTest::SetUp();
    if (!IsSkipped() && ranges_ < 4) {
      GTEST_SKIP() << "readahead needs window_mb >= 8 (tests/guest/window.sh runs it with 16)";
    }
  }
  // A mapped pass from region `region0` through four regions (below).
  void expect_a_pass_reads_ahead(const Mapping& shared, std::uint64_t region0, std::uint64_t pass);
  // Each block of the first `regions` regions was loaded exactly once.
  void expect_each_loaded_once(std::uint64_t regions) const {
    for (std::uint64_t b = 0; b < regions * kRangeBlocks; ++b) {
      ASSERT_EQ(server().loads(b), 1U) << "block " << b;
    }
  }
};

class WindowHoldTest : public WindowTest {
 protected:
  void SetUp() override {
    WindowTest::SetUp();
    if (!IsSkipped()) require_test_hooks();
  }
};

// Every 16th block of each region, so that each region needs a range and its faults are a round
// trip each (a block server, fault-around off): the worker must keep giving the next region its
// range while the reads go on.  (A round trip per block is slow beside another VM; the block
// path is the same for each, and a pass of runs reads them all, below.)
constexpr std::uint64_t kSparse = 16;

TEST_F(WindowTest, MappedReadsOfFourTimesTheWindowSeeTheirBlocksAndStayWithinIt) {
  EXPECT_NE(info().features & VMCOH_FEATURE_WINDOW, 0U);
  const Mapping shared = map_all(PROT_READ);
  const vmcoh_window_stats before = window();
  for (std::uint64_t b = 0; b < blocks_; b += kSparse) {
    const std::optional<PageImage> page = probed_block(shared, b);
    ASSERT_TRUE(page) << "SIGBUS at block " << b;
    ASSERT_EQ(*page, block_stamp(b, 1)) << "block " << b;
  }
  expect_within_window();
  const vmcoh_window_stats after = window();
  // Every region after the first ones got its range from the worker's reserve, or from a fault
  // that found the reserve gone and reclaimed one itself, having let go of its locks.
  EXPECT_GE(after.reclaims_background - before.reclaims_background + after.reclaims_fault -
                before.reclaims_fault,
            4 * ranges_ - ranges_);
  EXPECT_EQ(after.reclaims_inline, before.reclaims_inline);
  EXPECT_EQ(after.range_wait_timeouts, 0U);
  RecordProperty("range_waits", std::to_string(after.range_waits - before.range_waits));
}

// The structure only grows: a tool built against the header before reclaims_fault asks with the
// smaller size and gets the fields it knows; a size that is no structure's is refused.
TEST_F(WindowTest, WindowStatsAnswerTheSizeOfAnOlderHeader) {
  struct Older {
    std::array<std::uint64_t, VMCOH_WINDOW_STATS_SIZE_V1 / sizeof(std::uint64_t)> fields;
  };
  Older older{};
  ASSERT_EQ(::ioctl(fd(), _IOR(VMCOH_IOC_MAGIC, 0x27, Older), &older), 0) << std::strerror(errno);
  const vmcoh_window_stats now = window();
  EXPECT_EQ(older.fields[0], now.ranges);
  EXPECT_EQ(older.fields.back(), now.refaults);
  struct Ragged {
    std::array<std::uint32_t, 2 * sizeof(vmcoh_window_stats) / sizeof(std::uint64_t) - 1> words;
  };
  struct Larger {
    std::array<std::uint64_t, sizeof(vmcoh_window_stats) / sizeof(std::uint64_t) + 1> fields;
  };
  Ragged ragged{};
  EXPECT_EQ(::ioctl(fd(), _IOR(VMCOH_IOC_MAGIC, 0x27, Ragged), &ragged), -1);
  EXPECT_EQ(errno, ENOTTY);
  Larger larger{};
  EXPECT_EQ(::ioctl(fd(), _IOR(VMCOH_IOC_MAGIC, 0x27, Larger), &larger), -1);
  EXPECT_EQ(errno, ENOTTY);
}

// write(2) needs a range for each block it loads; with no reserve kept, the pool is empty when
// it does, and it reclaims one itself, writing back what it wrote there before.  Every 16th block
// of twice the window is enough: each region needs a range, and every range is reclaimed once,
// by the writes after the first window.  What was not written must come back as the server had it.
TEST_F(WindowTest, WritesReclaimInlineAndNothingWrittenIsLost) {
  const ParameterOverride no_reserve("window_reserve", "0");
  const std::uint64_t span = 2 * ranges_ * kRangeBlocks;
  const std::uint64_t inline_before = window().reclaims_inline;
  for (std::uint64_t b = 0; b < span; b += kSparse) {
    const PageImage page = block_stamp(b, 2);
    ASSERT_EQ(::pwrite(fd(), page.bytes(), kBlock, static_cast<off_t>(b * kBlock)),
              static_cast<ssize_t>(kBlock))
        << "block " << b << ": " << std::strerror(errno);
  }
  expect_within_window();
  EXPECT_GT(window().reclaims_inline, inline_before);
  ASSERT_EQ(fsync_errno(), 0);
  for (std::uint64_t b = 0; b < span; b += kSparse) {
    ASSERT_EQ(server().block(b), block_stamp(b, 2)) << "block " << b << " lost at the server";
    ASSERT_EQ(pread_block(fd(), b), block_stamp(b, 2)) << "block " << b;
    // A block not written reads as the server has it.
    ASSERT_EQ(pread_block(fd(), b + 1), block_stamp(b + 1, 1)) << "block " << b + 1;
  }
}

// The same through a shared mapping: a store's fault finds the pool empty, lets go of its entry
// and of mmap_lock, and reclaims a range itself, writing back the stores a region took before.
// The server is a thread of this process: it faults on its own memory meanwhile.
TEST_F(WindowTest, StoresReclaimInTheirFaultsAndNothingStoredIsLost) {
  const ParameterOverride no_reserve("window_reserve", "0");
  const Mapping shared = map_all(PROT_READ | PROT_WRITE);
  const std::uint64_t span = 2 * ranges_ * kRangeBlocks;
  const vmcoh_window_stats before = window();
  for (std::uint64_t b = 0; b < span; b += kSparse) {
    const PageImage page = block_stamp(b, 2);
    std::memcpy(shared.data() + b * kBlock, page.bytes(), kBlock);
  }
  expect_within_window();
  const vmcoh_window_stats after = window();
  EXPECT_GT(after.reclaims_fault, before.reclaims_fault) << "no fault reclaimed a range";
  EXPECT_EQ(after.reclaims_background, before.reclaims_background);
  EXPECT_EQ(after.range_wait_timeouts, before.range_wait_timeouts);
  ASSERT_EQ(fsync_errno(), 0);
  for (std::uint64_t b = 0; b < span; b += kSparse) {
    ASSERT_EQ(server().block(b), block_stamp(b, 2)) << "block " << b << " lost at the server";
    ASSERT_EQ(pread_block(fd(), b), block_stamp(b, 2)) << "block " << b;
    ASSERT_EQ(pread_block(fd(), b + 1), block_stamp(b + 1, 1)) << "block " << b + 1;
  }
}

// Stores through a mapping dirty their blocks; a reclaim of their range must write them back
// before it lets the range go, without any fsync.
TEST_F(WindowTest, StoresThroughAMappingSurviveTheReclaimOfTheirRange) {
  const Mapping shared = map_all(PROT_READ | PROT_WRITE);
  for (std::uint64_t b = 0; b < kRangeBlocks; b += 7) {
    const PageImage page = block_stamp(b, 3);
    std::memcpy(shared.data() + b * kBlock, page.bytes(), kBlock);
  }
  // Blocks of the other regions, through the same mapping: region 0 is reclaimed meanwhile.
  ASSERT_TRUE(reclaim_region_0(shared, 0))
      << "no STORE of region 0 (never reclaimed, or reclaimed without writeback): " << counters();
  for (std::uint64_t b = 0; b < kRangeBlocks; b += 7) {
    EXPECT_GT(server().stores(b), 0U) << "block " << b << " never stored";
    EXPECT_EQ(server().block(b), block_stamp(b, 3)) << "block " << b << " lost by the reclaim";
    const std::optional<PageImage> page = probed_block(shared, b);
    ASSERT_TRUE(page) << "SIGBUS at block " << b;
    EXPECT_EQ(*page, block_stamp(b, 3)) << "block " << b;
  }
  expect_within_window();
}

// A region stored into whole goes back in one STORE when a reclaim takes its range: the reclaim
// writes back as fsync does.
TEST_F(WindowRunsTest, AReclaimWritesARegionStoredIntoWholeBackInOneStore) {
  const Mapping shared = map_all(PROT_READ | PROT_WRITE);
  for (std::uint64_t b = 0; b < kRangeBlocks; ++b) {
    const PageImage page = block_stamp(b, 3);
    std::memcpy(shared.data() + b * kBlock, page.bytes(), kBlock);
  }
  ASSERT_TRUE(reclaim_region_0(shared, 0))
      << "no STORE of region 0 (never reclaimed, or reclaimed without writeback): " << counters();
  EXPECT_EQ(server().store_requests(), 1U) << "region 0 was not reclaimed in one STORE";
  EXPECT_EQ(server().stored_blocks(), kRangeBlocks);
  for (std::uint64_t b = 0; b < kRangeBlocks; ++b) {
    ASSERT_EQ(server().block(b), block_stamp(b, 3)) << "block " << b << " lost by the reclaim";
  }
  expect_within_window();
}

// Memory pressure (here: drop_caches, which runs every shrinker) gets memory back: free ranges
// beyond the reserve at once, owned ones reclaimed by the worker first.  With every range owned
// or kept in reserve, only the second can give any.  The window fills again after.
TEST_F(WindowTest, TheShrinkerGivesRangesBackAndTheWindowRefills) {
  const Mapping shared = map_all(PROT_READ);
  // A block of each region: every range is owned or kept in reserve after.
  for (std::uint64_t b = 0; b < blocks_; b += kRangeBlocks) ASSERT_TRUE(probed_block(shared, b));
  const vmcoh_window_stats before = window();
  const vmcoh_window_stats after = drop_caches_until(
      [&](const vmcoh_window_stats& w) { return w.ranges_populated < before.ranges_populated; });
  EXPECT_LT(after.ranges_populated, before.ranges_populated)
      << "the shrinker got no memory back (" << after.reclaims_shrinker - before.reclaims_shrinker
      << " ranges reclaimed for it)";
  EXPECT_GT(after.reclaims_shrinker, before.reclaims_shrinker);
  RecordProperty("populated_before", std::to_string(before.ranges_populated));
  RecordProperty("populated_after", std::to_string(after.ranges_populated));
  for (std::uint64_t b = 0; b < blocks_; b += 61) {
    const std::optional<PageImage> page = probed_block(shared, b);
    ASSERT_TRUE(page) << "SIGBUS at block " << b;
    ASSERT_EQ(*page, block_stamp(b, 1)) << "block " << b;
  }
}

// An orphaned object keeps its resident blocks (uapi/vmcoh.h): its server died, nobody could load
// them again, so neither the worker nor the shrinker may give their range back (issue 14, item 5).
TEST_F(WindowTest, AnOrphanedObjectKeepsItsResidentBlocksUnderMemoryPressure) {
  const Mapping shared = map_all(PROT_READ);
  for (std::uint64_t b = 0; b < kRangeBlocks; ++b) ASSERT_TRUE(probed_block(shared, b));
  server().die();
  ASSERT_EQ(info().backing, std::uint64_t{VMCOH_BACKING_ORPHANED});
  const vmcoh_window_stats before = window();
  // The worker reclaims for the shrinker, if it does, in the background: give it time to.
  const vmcoh_window_stats after = drop_caches_until(
      [&](const vmcoh_window_stats& w) { return reclaims(w) != reclaims(before); }, 1s);
  EXPECT_EQ(reclaims(after), reclaims(before)) << "a range of the orphaned object was reclaimed";
  for (std::uint64_t b = 0; b < kRangeBlocks; ++b) {
    EXPECT_EQ(pread_block(fd(), b), block_stamp(b, 1)) << "pread of block " << b;
    const std::optional<PageImage> page = probed_block(shared, b);
    ASSERT_TRUE(page) << "SIGBUS at block " << b;
    ASSERT_EQ(*page, block_stamp(b, 1)) << "block " << b;
  }
}

// Exhaustion: writer threads and reader processes over four times the window, at random, so
// that ranges are reclaimed under every one of them all the time.  Writers own blocks 1..3
// (mod 4) and read back each value they write, through the mapping or pread; the readers, in
// processes of their own, check that blocks 0 (mod 4), which nobody writes, read exactly as the
// server has them.  Nothing may hang, fail, or read wrong; in the end the server has every last
// value.
void WindowTest::stress_writers_and_readers() {
  constexpr int kWriters = 3;
  constexpr int kReaders = 2;
  const auto kStressTime = stress_time(10s);
  constexpr auto kStallAfter = 10s;
  std::vector<std::uint64_t> last(blocks_, 1);  // writer b % 4 - 1 owns block b
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> writes{0};
  std::atomic<std::uint64_t> violations{0};
  std::mutex first_mutex;
  std::string first;
  const Mapping shared = map_all(PROT_READ | PROT_WRITE);

  std::vector<pid_t> readers;
  for (int r = 0; r < kReaders; ++r) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      Rng rng(0x5eed + r);
      const auto deadline = std::chrono::steady_clock::now() + kStressTime;
      while (std::chrono::steady_clock::now() < deadline) {
        const std::uint64_t b = 4 * rng.below(blocks_ / 4);
        const std::optional<PageImage> page = probed_block(shared, b);
        if (!page || *page != block_stamp(b, 1)) ::_exit(1);
      }
      ::_exit(0);
    }
    readers.push_back(pid);
  }

  // A write takes milliseconds.  If the writers are still at it well after the deadline,
  // something waits that must not: say what, while it waits - by the time a load times out
  // (load_timeout_ms, 30 s) all that is left to see is the SIGBUS.  It starts before the
  // writers: a thread's stack is an mmap, which a stalled fault may hold up.
  std::string stall;
  std::jthread watchdog([&](const std::stop_token& stop) {
    std::mutex mutex;
    std::condition_variable_any cv;
    std::unique_lock lock(mutex);
    if (cv.wait_for(lock, stop, kStressTime + kStallAfter, [] { return false; }) ||
        stop.stop_requested()) {
      return;
    }
    stall =
        fmt::format("still writing {} s after the deadline: {}\n", kStallAfter.count(), counters());
    stall += "this process:\n" + task_stacks();
    for (const pid_t pid : readers) {
      stall += fmt::format("reader {}:\n", pid) + task_stacks(std::to_string(pid));
    }
    stall += "every task in the module:\n" + module_task_stacks();
    std::cerr << stall << std::flush;
  });
  auto writer = [&](int id) {
    Rng rng(0xd1e7 + id);
    while (!done.load(std::memory_order_relaxed)) {
      const std::uint64_t b = 4 * rng.below(blocks_ / 4) + 1 + id;
      const PageImage page = block_stamp(b, ++last[b]);
      const bool via_map = rng.chance(1, 2);
      std::optional<PageImage> seen;
      if (via_map) {
        if (!probe_store(reinterpret_cast<volatile std::uint64_t*>(shared.data() + b * kBlock),
                         page.words.data(), kWordsPerPage)) {
          seen = probed_block(shared, b);
        }
      } else if (::pwrite(fd(), page.bytes(), kBlock, static_cast<off_t>(b * kBlock)) ==
                 static_cast<ssize_t>(kBlock)) {
        const ReadResult read = read_block(fd(), b);
        if (read.error == 0) seen = read.page;
      }
      if (seen != page && violations.fetch_add(1) == 0) {
        const std::scoped_lock lock(first_mutex);
        first = fmt::format("block {}: wrote generation {} {}, read back {}", b, last[b],
                            via_map ? "through the mapping" : "with pwrite",
                            seen ? std::to_string(generation_of(*seen)) : "an error");
      }
      writes.fetch_add(1);
    }
  };
  std::vector<std::thread> writers;
  writers.reserve(kWriters);
  for (int i = 0; i < kWriters; ++i) writers.emplace_back(writer, i);
  std::this_thread::sleep_for(kStressTime);
  done = true;
  for (auto& t : writers) t.join();
  watchdog.request_stop();
  watchdog.join();
  EXPECT_EQ(stall, "");

  for (const pid_t pid : readers) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "reader " << pid << " read a wrong block or took SIGBUS (status " << status << ")";
  }
  EXPECT_EQ(violations.load(), 0U)
      << "in " << writes.load() << " writes; the first: " << first << " (" << counters() << ")";
  ASSERT_EQ(fsync_errno(), 0);
  for (std::uint64_t b = 0; b < blocks_; ++b) {
    if (b % 4 == 0) continue;
    ASSERT_EQ(generation_of(server().block(b)), last[b]) << "block " << b << " lost";
  }
  expect_within_window();
  const vmcoh_window_stats w = window();
  EXPECT_GT(reclaims(w), 0U);
  EXPECT_EQ(w.range_wait_timeouts, 0U);
  RecordProperty("writes", std::to_string(writes.load()));
  RecordProperty("reclaims", std::to_string(reclaims(w)));
  RecordProperty("range_waits", std::to_string(w.range_waits));
  RecordProperty("stores", std::to_string(backing().stores));
}

TEST_F(WindowTest, StressWritersAndReaderProcessesOverFourTimesTheWindow) {
  stress_writers_and_readers();
}

TEST_F(WindowRunsTest, StressWritersAndReaderProcessesOverFourTimesTheWindowWithRuns) {
  stress_writers_and_readers();
}

// Two passes over four times the window, a server of runs: every block right, within the
// window, in runs (far fewer requests than blocks), and the second pass finds regions that came
// back protected (refaults), not a window emptied in the order the pass needs it.
TEST_F(WindowRunsTest, MappedPassesOverFourTimesTheWindowLoadRunsAndStayWithinIt) {
  const std::uint64_t refaults = window().refaults;  // since the module loaded
  const Mapping shared = map_all(PROT_READ);
  for (int pass = 0; pass < 2; ++pass) {
    for (std::uint64_t b = 0; b < blocks_; ++b) {
      const std::optional<PageImage> page = probed_block(shared, b);
      ASSERT_TRUE(page) << "SIGBUS at block " << b << " in pass " << pass;
      ASSERT_EQ(*page, block_stamp(b, 1)) << "block " << b << " in pass " << pass;
    }
    expect_within_window();
  }
  EXPECT_LT(server().requests() * VMCOH_LOAD_RUN_MIN, 2 * blocks_) << counters();
  EXPECT_GT(window().refaults, refaults) << counters();
  EXPECT_EQ(window().range_wait_timeouts, 0U);
  RecordProperty("requests", std::to_string(server().requests()));
  RecordProperty("refaults", std::to_string(window().refaults - refaults));
}

// Random 4 KiB loads beyond the window (kmod/window.c, "Sparse regions"): a region that comes back
// through a scattered miss takes pages of its own rather than a 2 MiB range, so more regions hold
// blocks than the window has ranges, each with the runs it was read in, and the blocks stay within
// the window's pages.  With ranges only, at most `ranges_` regions held blocks, and beyond the
// window a fourth of their memory was data (docs/bench.md).
TEST_F(WindowRunsTest, RandomLoadsBeyondTheWindowTakePagesOfTheirOwnAndStayWithinIt) {
  const Mapping shared = map_all(PROT_READ);
  // 4 KiB faults: a 2 MiB fault on a region without blocks loads it whole (fault_pmd_load()).
  ASSERT_EQ(::madvise(shared.data(), shared.size(), MADV_NOHUGEPAGE), 0);
  // A pass first: every region has had a range, and the reclaim took most of them back.
  for (std::uint64_t b = 0; b < blocks_; ++b) {
    ASSERT_TRUE(probed_block(shared, b)) << "SIGBUS at block " << b;
  }
  const vmcoh_window_stats before = window();
  Rng rng(0x5ca7);
  std::uint64_t most_regions = 0;
  for (int i = 0; i < 2048; ++i) {
    const std::uint64_t b = rng.below(blocks_);
    const std::optional<PageImage> page = probed_block(shared, b);
    ASSERT_TRUE(page) << "SIGBUS at block " << b;
    ASSERT_EQ(*page, block_stamp(b, 1)) << "block " << b;
    if (i % 32 != 0) continue;
    const vmcoh_window_stats w = window();
    most_regions = std::max<std::uint64_t>(most_regions, w.ranges_busy + w.sparse_regions);
    // Ranges with memory and pages of their own, in one look: the window's pages at most.
    ASSERT_LE(w.ranges_populated * kRangeBlocks + w.sparse_blocks, ranges_ * kRangeBlocks)
        << counters();
    expect_within_window();
  }
  const vmcoh_window_stats after = window();
  EXPECT_GT(after.sparse_taken, before.sparse_taken) << counters();
  EXPECT_GT(most_regions, ranges_) << counters();
  EXPECT_EQ(after.range_wait_timeouts, 0U);
  RecordProperty("sparse_taken", std::to_string(after.sparse_taken - before.sparse_taken));
  RecordProperty("most_regions", std::to_string(most_regions));
}

// The miss that loads the rest of a region sends the next region ahead; the pass's fault on
// that region's first block sends the one after, and so on: each region is requested before the
// reader gets there, once, and nothing is loaded twice.  Mapped by PMDs (a region sent ahead is
// resident when the reader gets there), the PMD fault reads ahead.  Mapped by PTEs, the first
// fault in a region finds no page table and goes to ->fault; a pass again through the same
// mapping finds them, and fault-around must leave the marked block to ->fault.
void WindowReadaheadTest::expect_a_pass_reads_ahead(const Mapping& shared, std::uint64_t region0,
                                                    std::uint64_t pass) {
  const vmcoh_backing_stats before = backing();
  const std::uint64_t requests = server().requests();
  const std::uint64_t start = region0 * kRangeBlocks;
  for (std::uint64_t b = start; b < start + kRangeBlocks; ++b) {
    ASSERT_EQ(mapped_block(shared, b), block_stamp(b, 1)) << "block " << b;
  }
  EXPECT_TRUE(server().wait_for_loads(start + kRangeBlocks, pass, kWait))
      << "the region after the first was not sent ahead";
  EXPECT_EQ(server().loads(start + 2 * kRangeBlocks), pass - 1) << "sent two regions ahead";
  for (std::uint64_t region = region0 + 1; region < region0 + 4; ++region) {
    const std::uint64_t first = region * kRangeBlocks;
    // Resident before the reader gets there: nothing else sends ->fault to its first block.
    const std::uint64_t published = (region - region0 + 1) * kRangeBlocks;
    for (const auto deadline = std::chrono::steady_clock::now() + kWait;
         backing().loads_published - before.loads_published < published &&
         std::chrono::steady_clock::now() < deadline;) {
      std::this_thread::sleep_for(1ms);
    }
    ASSERT_EQ(mapped_block(shared, first), block_stamp(first, 1));
    EXPECT_TRUE(server().wait_for_loads(first + kRangeBlocks, pass, kWait))
        << "reaching region " << region << " did not send the next, in pass " << pass;
    for (std::uint64_t b = first + 1; b < first + kRangeBlocks; ++b) {
      ASSERT_EQ(mapped_block(shared, b), block_stamp(b, 1)) << "block " << b;
    }
  }
  for (std::uint64_t b = start; b < start + 4 * kRangeBlocks; ++b) {
    ASSERT_EQ(server().loads(b), pass) << "block " << b;
  }
  EXPECT_EQ(backing().loads_ahead - before.loads_ahead, 4U) << counters();
  // The first region in six runs (16 to 256 blocks, and the 16 left), then one request each.
  EXPECT_EQ(server().requests() - requests, 6U + 4U);
}

TEST_F(WindowReadaheadTest, PassesMappedByPtesSendEachRegionBeforeTheReaderGetsThere) {
  const Mapping shared = map_all(PROT_READ);
  ASSERT_EQ(::madvise(shared.data(), shared.size(), MADV_NOHUGEPAGE), 0);
  expect_a_pass_reads_ahead(shared, 0, 1);
  // Every block goes; the page tables stay.
  server().invalidate(0, 5 * kRangeBlocks);
  expect_a_pass_reads_ahead(shared, 0, 2);
}

// Mapped by PMDs, a 2 MiB fault on a region with nothing resident loads the region whole and maps
// it by one PMD once it is in; right after the previous region it reads the next ahead, and
// reaching a region sent ahead - resident, or still loading, which the fault waits for - sends
// the one after: one request per region, every region mapped by one PMD.
TEST_F(WindowReadaheadTest, APassMappedByPmdsLoadsEachRegionWholeAndReadsAhead) {
  const Mapping shared = map_all(PROT_READ);
  const vmcoh_backing_stats before = backing();
  const std::uint64_t requests = server().requests();
  const std::uint64_t pmd_maps = window().pmd_maps;
  const std::uint64_t start = 8 * kRangeBlocks;
  for (std::uint64_t b = start; b < start + 4 * kRangeBlocks; ++b) {
    ASSERT_EQ(mapped_block(shared, b), block_stamp(b, 1)) << "block " << b;
  }
  for (std::uint64_t b = start; b < start + 4 * kRangeBlocks; ++b) {
    ASSERT_EQ(server().loads(b), 1U) << "block " << b;
  }
  // Regions 8 and 9 for their faults, 10 to 12 ahead.  Region 12 was sent by the fault on
  // region 11, but the server's thread may not have received it yet.
  EXPECT_TRUE(server().wait_for_loads(start + 4 * kRangeBlocks, 1, kWait))
      << "region 12 was not sent ahead; " << counters();
  EXPECT_EQ(server().requests() - requests, 5U) << counters();
  EXPECT_EQ(backing().loads_ahead - before.loads_ahead, 3U) << counters();
  EXPECT_EQ(window().pmd_maps - pmd_maps, 4U) << "a region loaded for a 2 MiB fault, or sent "
                                                 "ahead, was mapped by PTEs; "
                                              << counters();
}

TEST_F(WindowReadaheadTest, ReadsOfOneMiBSendTheNextRegionAsFaultsDo) {
  const vmcoh_backing_stats before = backing();
  std::vector<std::byte> buf(1 << 20);
  for (std::uint64_t off = 0; off < 3 * VMCOH_RANGE_SIZE; off += buf.size()) {
    ASSERT_EQ(::pread(fd(), buf.data(), buf.size(), static_cast<off_t>(off)),
              static_cast<ssize_t>(buf.size()));
    const std::uint64_t first = off / kBlock;
    for (std::uint64_t b = first; b < first + buf.size() / kBlock; b += 97) {
      PageImage page;
      std::memcpy(page.bytes(), buf.data() + (b - first) * kBlock, kBlock);
      ASSERT_EQ(page, block_stamp(b, 1)) << "block " << b;
    }
  }
  expect_each_loaded_once(3);
  EXPECT_EQ(backing().loads_ahead - before.loads_ahead, 3U) << counters();
}

// A region sent ahead is loading like any other: an INVALIDATE of part of it, before the answer
// comes, drops the answer for that part only, and the next read loads it again.
TEST_F(WindowReadaheadTest, AnInvalidationOfARegionSentAheadDropsThatPartOfItsAnswer) {
  const std::uint64_t target = kRangeBlocks + 5;
  server().hold(target);
  std::vector<std::byte> buf(VMCOH_RANGE_SIZE);
  ASSERT_EQ(::pread(fd(), buf.data(), buf.size(), 0), static_cast<ssize_t>(buf.size()));
  ASSERT_TRUE(server().wait_for_loads(target, 1, kWait)) << "region 1 was not sent ahead";
  EXPECT_TRUE(change_and_invalidate(server(), target, 2));
  server().release(target);
  EXPECT_EQ(generation_of(pread_block(fd(), target)), 2U) << "the answer sent before the "
                                                             "INVALIDATE was installed";
  EXPECT_EQ(server().loads(target), 2U);
  EXPECT_EQ(pread_block(fd(), target + 1), block_stamp(target + 1, 1));
  EXPECT_EQ(server().loads(target + 1), 1U) << "the rest of the answer was dropped too";
}

// The seed's deadlock, made exact.  The window is full and keeps no reserve.  A fault on a
// block of a region without a range holds that block's entry lock when the server INVALIDATEs
// the block: the INVALIDATE takes io_rwsem and waits for the entry.  A fault that reclaimed a
// range right there would wait for io_rwsem, holding the entry: neither would ever finish.  The
// fault must let go of its entry (and of mmap_lock), reclaim a range only then, and load again.
// It runs in a child process, so that the watchdog can report the stacks and kill it.
TEST_F(WindowHoldTest, AFaultWaitingForARangeDoesNotHoldItsEntry) {
  const ParameterOverride no_reserve("window_reserve", "0");
  const Mapping shared = map_all(PROT_READ);
  // Fill the window: every range owned, none free.
  for (std::uint64_t r = 0; r < ranges_; ++r) ASSERT_TRUE(probed_block(shared, r * kRangeBlocks));
  ASSERT_EQ(window().ranges_free, 0U);

  const std::uint64_t b = ranges_ * kRangeBlocks + 3;  // the first region without a range
  const vmcoh_window_stats before = window();
  HoldPoint locked(fd(), VMCOH_HOLD_FAULT_LOCKED, b, 0, kWait);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const std::optional<PageImage> page = probed_block(shared, b);
    ::_exit(page && generation_of(*page) == 2 ? 0 : 1);
  }
  ASSERT_TRUE(locked.wait_parked(kWait));
  server().set_block(b, block_stamp(b, 2));
  auto invalidate = std::async(std::launch::async, [&] { server().invalidate(b); });
  // The INVALIDATE now holds io_rwsem and waits for the parked fault's entry.
  EXPECT_EQ(invalidate.wait_for(200ms), std::future_status::timeout)
      << "the INVALIDATE did not wait for the entry lock";
  locked.release();

  if (invalidate.wait_for(kStuck) != std::future_status::ready) {
    ADD_FAILURE() << "deadlock: a fault reclaims a range holding the entry an INVALIDATE "
                  << "waits for; stuck tasks:\n"
                  << task_stacks() << task_stacks(std::to_string(child));
    ::kill(child, SIGKILL);  // the reclaim's waits are killable: the entry is let go
  }
  invalidate.get();
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) return;  // reported above
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "the fault did not get a range and load the block (status " << status << ")";
  EXPECT_GT(window().reclaims_fault, before.reclaims_fault) << "the fault did not reclaim";
}

// The backed case of the pins (issue 14, item 3): a store through a pin taken before the server's
// INVALIDATE must not land on the block loaded after it, where nothing would mark it dirty.  The
// load waits for the pin to go before its answer takes the page.
TEST_F(WindowTest, AStoreThroughAPinDoesNotLandOnTheBlockReloadedAfterAnInvalidate) {
  StuckPage source;
  if (!source.usable()) GTEST_SKIP() << "no userfaultfd here";
  const Mapping shared = map_all(PROT_READ | PROT_WRITE);
  ASSERT_EQ(read_block(fd(), 1).page, block_stamp(1, 1));
  const vmcoh_window_stats before = window();
  auto pin = std::async(std::launch::async, [&] {
    const iovec local{source.data(), kBlock};
    const iovec remote{shared.data() + kBlock, kBlock};
    return ::process_vm_writev(::getpid(), &local, 1, &remote, 1, 0);
  });
  ASSERT_TRUE(source.wait_stuck(5s)) << "process_vm_writev() never started its copy";
  server().set_block(1, block_stamp(1, 2));
  server().invalidate(1);
  auto reader = std::async(std::launch::async, [&] { return read_block(fd(), 1); });
  static_cast<void>(reader.wait_for(1s));
  source.resolve(block_stamp(1, 3));
  EXPECT_EQ(pin.get(), static_cast<ssize_t>(kBlock)) << std::strerror(errno);
  EXPECT_EQ(reader.get().page, block_stamp(1, 2));
  EXPECT_EQ(pread_block(fd(), 1), block_stamp(1, 2))
      << "a store through a pin taken before the INVALIDATE landed on the block loaded after it";
  EXPECT_GT(window().pin_waits, before.pin_waits) << "the load never waited for the pin";
}

// How a child process that touches block `b` - through `map`, or with pread(2) - ends within
// kWait: "block" (it read the server's block), "SIGBUS", "errno N", "stuck" (killed), or
// "stuck, unkillable" (left behind: the module cannot be unloaded after that).
std::string child_access(int fd, const Mapping& map, std::uint64_t b, bool mapped) {
  const pid_t child = ::fork();
  if (child == 0) {
    // Async-signal-safe calls only: the server is a thread of the parent.
    PageImage page;
    if (mapped) {
      std::memcpy(page.bytes(), map.data() + b * kBlock, kBlock);
    } else if (::pread(fd, page.bytes(), kBlock, static_cast<off_t>(b * kBlock)) !=
               static_cast<ssize_t>(kBlock)) {
      ::_exit(errno & 0x7f);
    }
    ::_exit(page == block_stamp(b, 1) ? 0 : 0x7f);
  }
  if (child < 0) return "fork failed";
  int status = 0;
  for (const auto deadline = std::chrono::steady_clock::now() + kWait;
       ::waitpid(child, &status, WNOHANG) == 0;) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(child, SIGKILL);
      for (const auto killed = std::chrono::steady_clock::now() + kWait;
           ::waitpid(child, &status, WNOHANG) == 0;) {
        if (std::chrono::steady_clock::now() > killed) return "stuck, unkillable";
        std::this_thread::sleep_for(10ms);
      }
      return "stuck";
    }
    std::this_thread::sleep_for(10ms);
  }
  if (WIFSIGNALED(status)) return WTERMSIG(status) == SIGBUS ? "SIGBUS" : "signal";
  if (WEXITSTATUS(status) == 0) return "block";
  return fmt::format("errno {}", WEXITSTATUS(status));
}

// Free ranges whose memory the shrinker gave back get it again when a region takes one.  A
// fault or read(2) whose quick allocation of it fails must try hard, and fail with SIGBUS or
// ENOMEM if that fails too - not go round for ever because some range is free (issue 14, item
// 9c).  fail_range_alloc=1 fails the quick allocations, 2 all of them.
TEST_F(WindowTest, AFreeRangeWithoutMemoryGetsSomeOrTheAccessFails) {
  const ParameterOverride reserve("window_reserve", "0");
  const Mapping shared = map_all(PROT_READ);
  for (std::uint64_t b = 0; b < 2 * ranges_ * kRangeBlocks; b += kRangeBlocks) {
    ASSERT_TRUE(probed_block(shared, b));
  }
  // Every free range without memory: what a range taken now must be given.
  const auto free_without_memory = [](const vmcoh_window_stats& w) {
    return w.ranges_free > 0 && w.ranges_populated == w.ranges_busy;
  };
  vmcoh_window_stats w = drop_caches_until(free_without_memory);
  ASSERT_GT(w.ranges_free, 0U) << "the shrinker reclaimed nothing";
  ASSERT_EQ(w.ranges_populated, w.ranges_busy) << "a free range kept its memory";

  const std::uint64_t b = 3 * ranges_ * kRangeBlocks + 5;  // a region nobody touched
  {
    const ParameterOverride fail("fail_range_alloc", "1");
    EXPECT_EQ(child_access(fd(), shared, b, true), "block")
        << "a fault whose quick allocation of a range failed";
  }
  server().invalidate(0, blocks_);  // nothing resident: every range free again
  w = drop_caches_until(free_without_memory);
  ASSERT_EQ(w.ranges_populated, w.ranges_busy) << "a free range kept its memory";
  const ParameterOverride fail("fail_range_alloc", "2");
  EXPECT_EQ(child_access(fd(), shared, b, true), "SIGBUS") << "a fault with no memory for a range";
  EXPECT_EQ(child_access(fd(), shared, b, false), fmt::format("errno {}", ENOMEM))
      << "a read(2) with no memory for a range";
}

// A plain object (no server) in a window: its blocks cannot be given back, so once every range
// is owned, writes into a new region fail with ENOSPC and stores with SIGBUS; punching a
// region's blocks returns its range to the pool.
TEST_F(DeviceTest, WindowWithoutAServerFillsThenGivesENOSPCUntilPunched) {
  const std::optional<vmcoh_window_stats> window = device_window();
  if (!window) GTEST_SKIP() << "needs a window: window_mb > 0 (tests/guest/window.sh)";
  const std::uint64_t ranges = window->ranges;
  const std::uint64_t blocks = (ranges + 1) * kRangeBlocks;
  device::set_size(fd(), blocks * kBlock);
  install_sigbus_probe();
  const PageImage page = block_stamp(0, 1);
  for (std::uint64_t r = 0; r < ranges; ++r) {
    ASSERT_EQ(::pwrite(fd(), page.bytes(), kBlock, static_cast<off_t>(r * VMCOH_RANGE_SIZE)),
              static_cast<ssize_t>(kBlock))
        << "region " << r << ": " << std::strerror(errno);
  }
  const std::uint64_t last_region = ranges * kRangeBlocks;
  EXPECT_EQ(::pwrite(fd(), page.bytes(), kBlock, static_cast<off_t>(last_region * kBlock)), -1);
  EXPECT_EQ(errno, ENOSPC);
  const Mapping shared = map(PROT_READ | PROT_WRITE, MAP_SHARED, blocks * kBlock);
  const std::uint64_t word = 7;
  EXPECT_TRUE(probe_store(
      reinterpret_cast<volatile std::uint64_t*>(shared.data() + last_region * kBlock), &word, 1))
      << "a store into a region without a range did not raise SIGBUS";

  device::punch_hole(fd(), 0, VMCOH_RANGE_SIZE);
  EXPECT_EQ(device::get_window_stats(fd()).ranges_free, 1U);
  EXPECT_EQ(::pwrite(fd(), page.bytes(), kBlock, static_cast<off_t>(last_region * kBlock)),
            static_cast<ssize_t>(kBlock))
      << std::strerror(errno);
  EXPECT_EQ(pread_block(fd(), last_region), page);
  EXPECT_EQ(pread_block(fd(), 0), PageImage{}) << "the punched block is not a hole";
}

// In a window, fault-around maps the blocks it finds in the block map under no lock of the
// module's, only counted (kmod/fault.c, "Counted fault-around"), so one that read the block map
// before a punch may install its PTE after the punch's unmap.  The punch must then wait for it and
// unmap again (kmod/invalidate.c, step 3b); unsafe=no_store_wait returns at once, and the mapping
// keeps the punched data where pread() reads a hole (the range's page keeps what it held: nothing
// writes a block as it is freed).
//
//   A (a child) - read fault at block 4: ->fault maps it, then fault-around finds D at block 5
//                 and parks, counted (FAULT_LOOKED_UP, armed for block 5)
//   B           - punch block 5: block map, entries, a new generation, unmap; waits for A
//   A           - maps D at block 5; B unmaps it again, frees it
//
// A runs in a child so that its parked fault, which holds its mmap_lock, holds nothing of the
// test's; it reads block 5 through its mapping once B has returned, and sends it back.
TEST_F(DeviceTest, WindowAFaultAroundThatReadTheBlockMapBeforeAPunchIsWaitedFor) {
  if (!device_window()) GTEST_SKIP() << "needs a window: window_mb > 0 (tests/guest/window.sh)";
  require_test_hooks();
  if (IsSkipped()) return;
  if (fault_around_window() < 16) {
    GTEST_SKIP() << "needs fault_around=16 with test_hooks=1 (tests/guest/window.sh's around run)";
  }
  constexpr std::uint64_t kFaulted = 4;
  constexpr std::uint64_t kPunched = 5;
  device::set_size(fd(), VMCOH_RANGE_SIZE);
  for (std::uint64_t b = 0; b < 16; ++b) pwrite_block(fd(), b, block_stamp(b, 1));
  const Mapping shared = map(PROT_READ, MAP_SHARED, VMCOH_RANGE_SIZE);
  ASSERT_EQ(::madvise(shared.data(), VMCOH_RANGE_SIZE, MADV_NOHUGEPAGE), 0);
  std::array<int, 2> go{};
  std::array<int, 2> back{};
  ASSERT_EQ(::pipe2(go.data(), O_CLOEXEC), 0);
  const Fd go_read(go[0]);
  const Fd go_write(go[1]);
  ASSERT_EQ(::pipe2(back.data(), O_CLOEXEC), 0);
  const Fd back_read(back[0]);
  const Fd back_write(back[1]);

  HoldPoint looked_up(fd(), VMCOH_HOLD_FAULT_LOOKED_UP, kPunched, 0, kWait);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // No allocation here: the parent's threads may have held malloc's locks at the fork.
    const auto* words = reinterpret_cast<const volatile std::uint64_t*>(shared.data());
    (void)words[kFaulted * kBlock / sizeof(std::uint64_t)];
    char token = 0;
    if (::read(go_read.get(), &token, 1) != 1) ::_exit(1);
    PageImage seen;
    std::memcpy(seen.bytes(), shared.data() + kPunched * kBlock, kBlock);
    const auto sent = ::write(back_write.get(), seen.bytes(), kBlock);
    ::_exit(sent == static_cast<ssize_t>(kBlock) ? 0 : 1);
  }
  const bool parked = looked_up.wait_parked(kWait);
  auto punch =
      std::async(std::launch::async, [&] { device::punch_hole(fd(), kPunched * kBlock, kBlock); });
  const bool waited = punch.wait_for(200ms) == std::future_status::timeout;
  looked_up.release();
  punch.get();
  char token = 1;
  ASSERT_EQ(::write(go_write.get(), &token, 1), 1);
  PageImage seen;
  const ssize_t got = ::read(back_read.get(), seen.bytes(), kBlock);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(parked) << "the fault-around did not park after its lookup";
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the child failed: " << status;
  ASSERT_EQ(got, static_cast<ssize_t>(kBlock));
  EXPECT_TRUE(waited) << "the punch returned while a fault-around that read the block map before "
                      << "it was still to map what it found";
  EXPECT_EQ(pread_block(fd(), kPunched), PageImage{}) << "the punched block is not a hole";
  EXPECT_EQ(seen, PageImage{})
      << "the punched block stayed mapped: a fault-around mapped it after the punch's unmap";
}

// A store through a GUP pin taken before a punch must not land on what is written at the index
// after the punch (issue 14, item 3).  process_vm_writev() pins the page of block 1, then stops
// inside its copy, reading a source page held by userfaultfd; meanwhile the block is punched and
// written again with write(2), and only then does the copy go on.  Without a window the punched
// block's page is freed once the pin lets go, and write(2) fills a new one.  In a window, block
// i is always page i of its region's range, so the module must not publish the index again into
// that page while a pin may write it: the punch, or the write(2), waits for the pin instead, as
// truncation waits for pinned pages in fs/dax.c (dax_layout_busy_page()).
enum class Rewrite { write, store };

void expect_a_pin_taken_before_a_punch_does_not_overwrite_a_later_write(int fd, Rewrite how) {
  StuckPage source;
  if (!source.usable()) GTEST_SKIP() << "no userfaultfd here";
  device::set_size(fd, 4 * kBlock);
  const PageImage before = block_stamp(1, 1);
  const PageImage after = block_stamp(1, 2);
  const PageImage pinned = block_stamp(1, 3);
  ASSERT_EQ(::pwrite(fd, before.bytes(), kBlock, kBlock), static_cast<ssize_t>(kBlock));
  const Mapping shared = Mapping::map(4 * kBlock, PROT_READ | PROT_WRITE, MAP_SHARED, fd);

  auto pin = std::async(std::launch::async, [&] {
    const iovec local{source.data(), kBlock};
    const iovec remote{shared.data() + kBlock, kBlock};
    return ::process_vm_writev(::getpid(), &local, 1, &remote, 1, 0);
  });
  ASSERT_TRUE(source.wait_stuck(5s)) << "process_vm_writev() never started its copy";
  auto punch = std::async(std::launch::async, [&] { device::punch_hole(fd, kBlock, kBlock); });
  // The write(2) comes after the punch returned, and the pin may not be waited for after that:
  // the write waits (a fault would, or a load) or not, the copy goes on after 1 s regardless.
  const auto rewrite = [&] {
    return std::async(std::launch::async, [&]() -> ssize_t {
      if (how == Rewrite::write) return ::pwrite(fd, after.bytes(), kBlock, kBlock);
      store_block(shared, 1, after);  // a store fault, into the hole the punch left
      return static_cast<ssize_t>(kBlock);
    });
  };
  std::future<ssize_t> write;
  if (punch.wait_for(1s) == std::future_status::ready) {
    write = rewrite();
    static_cast<void>(write.wait_for(1s));
  }
  source.resolve(pinned);
  EXPECT_EQ(pin.get(), static_cast<ssize_t>(kBlock)) << std::strerror(errno);
  punch.get();
  if (!write.valid()) write = rewrite();
  ASSERT_EQ(write.get(), static_cast<ssize_t>(kBlock)) << std::strerror(errno);
  EXPECT_EQ(pread_block(fd, 1), after)
      << "a store through a pin taken before the punch overwrote "
      << (how == Rewrite::write ? "a write(2)" : "a store") << " that returned after it";
}

// The same with a reference rather than a pin (FOLL_GET, as O_DIRECT takes on 6.1): vmsplice()
// puts the page of block 1 into a pipe, and what the pipe's reader gets must be what block 1 held
// then, not what a write(2) after a punch put there.  In a window the write(2) waits until the
// pipe gives the page back.
void expect_a_spliced_page_keeps_what_the_block_held(int fd) {
  device::set_size(fd, 4 * kBlock);
  const PageImage before = block_stamp(1, 1);
  const PageImage after = block_stamp(1, 2);
  ASSERT_EQ(::pwrite(fd, before.bytes(), kBlock, kBlock), static_cast<ssize_t>(kBlock));
  const Mapping shared = Mapping::map(4 * kBlock, PROT_READ, MAP_SHARED, fd);
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  const Fd out(fds[0]);
  const Fd in(fds[1]);
  const iovec page{shared.data() + kBlock, kBlock};
  ASSERT_EQ(::vmsplice(in.get(), &page, 1, 0), static_cast<ssize_t>(kBlock))
      << std::strerror(errno);

  auto rewrite = std::async(std::launch::async, [&] {
    device::punch_hole(fd, kBlock, kBlock);
    return ::pwrite(fd, after.bytes(), kBlock, kBlock);
  });
  static_cast<void>(rewrite.wait_for(1s));
  PageImage spliced;
  ASSERT_EQ(::read(out.get(), spliced.bytes(), kBlock), static_cast<ssize_t>(kBlock));
  ASSERT_EQ(rewrite.get(), static_cast<ssize_t>(kBlock)) << std::strerror(errno);
  EXPECT_EQ(spliced, before) << "the pipe holds what a write(2) after the punch wrote";
  EXPECT_EQ(pread_block(fd, 1), after);
}

// With a window, REPLY pins a page-aligned answer and copies each block straight into the range;
// the pin, like the copy it replaces, comes before the request leaves the in-flight set.
TEST_F(DeviceTest, WindowAReplyStuckPinningItsAnswerDoesNotKeepTheLoadFromTimingOut) {
  if (!device_window()) GTEST_SKIP() << "needs a window: window_mb > 0 (tests/guest/window.sh)";
  expect_a_stuck_reply_does_not_keep_its_load_from_timing_out(fd());
}

// A run's answer goes in whole from any buffer: a page-aligned one is pinned and copied into the
// range, any other copied through blocks of the module's own.  A buffer with a page the server
// cannot read is refused with EFAULT on either path, and the request is still there to answer.
TEST_F(DeviceTest, WindowARunGoesInFromAnAlignedOrUnalignedAnswerAndAnUnreadableOneIsEFAULT) {
  if (!device_window()) GTEST_SKIP() << "needs a window: window_mb > 0 (tests/guest/window.sh)";
  constexpr std::uint64_t kRun = VMCOH_LOAD_RUN_MIN;
  device::set_size(fd(), kRangeBlocks * kBlock);
  const Fd srv = Fd::open(device_path(), O_RDWR);
  vmcoh_attach attach{};
  attach.flags = VMCOH_ATTACH_REGIONS;
  ASSERT_EQ(::ioctl(srv.get(), VMCOH_IOC_ATTACH, &attach), 0) << std::strerror(errno);
  // A run and two pages more, the last unreadable.
  const Mapping buf =
      Mapping::map((kRun + 2) * kBlock, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
  ASSERT_EQ(::mprotect(buf.data() + (kRun + 1) * kBlock, kBlock, PROT_NONE), 0);
  const auto put_run = [&](std::size_t at, std::uint64_t first, std::uint64_t generation) {
    for (std::uint64_t b = 0; b < kRun; ++b) {
      const PageImage page = block_stamp(first + b, generation);
      std::memcpy(buf.data() + at + b * kBlock, page.bytes(), kBlock);
    }
  };
  const auto reply = [&](const vmcoh_request& request, std::size_t at) {
    vmcoh_reply r{};
    r.id = request.id;
    r.data = reinterpret_cast<std::uintptr_t>(buf.data() + at);
    r.length = request.length;
    return ::ioctl(srv.get(), VMCOH_IOC_REPLY, &r) == 0 ? 0 : errno;
  };
  const auto request_for = [&](std::uint64_t block) {
    auto read = std::async(std::launch::async, [&, block] { return read_block(fd(), block); });
    vmcoh_request request{};
    EXPECT_EQ(::ioctl(srv.get(), VMCOH_IOC_RECV, &request), 0) << std::strerror(errno);
    EXPECT_EQ(request.length, kRun * kBlock) << "not a run of read-around";
    return std::pair{std::move(read), request};
  };

  auto [read_unaligned, unaligned] = request_for(3);
  ASSERT_EQ(unaligned.offset, 0U);
  EXPECT_EQ(reply(unaligned, 2 * kBlock), EFAULT) << "a pinned answer over an unreadable page";
  EXPECT_EQ(reply(unaligned, kBlock + 8), EFAULT) << "a copied answer over an unreadable page";
  put_run(8, 0, 5);
  EXPECT_EQ(reply(unaligned, 8), 0) << "an answer at no page boundary";
  EXPECT_EQ(read_unaligned.get().page, block_stamp(3, 5));
  EXPECT_EQ(pread_block(fd(), 0), block_stamp(0, 5));
  EXPECT_EQ(pread_block(fd(), kRun - 1), block_stamp(kRun - 1, 5));

  auto [read_aligned, aligned] = request_for(2 * kRun + 8);
  ASSERT_EQ(aligned.offset, 2 * kRun * kBlock);
  put_run(kBlock, 2 * kRun, 6);
  EXPECT_EQ(reply(aligned, kBlock), 0) << "a page-aligned answer";
  EXPECT_EQ(read_aligned.get().page, block_stamp(2 * kRun + 8, 6));
  EXPECT_EQ(pread_block(fd(), 2 * kRun), block_stamp(2 * kRun, 6));
  EXPECT_EQ(pread_block(fd(), 3 * kRun - 1), block_stamp(3 * kRun - 1, 6));
  // The server's pages are its own again: the answer was copied, not kept.
  put_run(kBlock, 2 * kRun, 7);
  EXPECT_EQ(pread_block(fd(), 2 * kRun + 1), block_stamp(2 * kRun + 1, 6));
  vmcoh_attach detach{};
  EXPECT_EQ(::ioctl(srv.get(), VMCOH_IOC_DETACH, &detach), 0) << std::strerror(errno);
}

// O_DIRECT into a mapping: the read's I/O pins the mapped blocks (GUP, as in the tests above) and
// its data must land in them, with or without a window, and with nothing made to wait.  The
// file is this test's own executable, on the VM's 9p root, whose O_DIRECT reads go to the
// pinned pages by virtio zero-copy.
void expect_an_o_direct_read_lands_in_the_mapped_blocks(int fd) {
  constexpr std::uint64_t kBlocks = 16;
  const Fd direct(::open("/proc/self/exe", O_RDONLY | O_DIRECT | O_CLOEXEC));
  if (!direct) GTEST_SKIP() << "no O_DIRECT here: " << std::strerror(errno);
  device::set_size(fd, kBlocks * kBlock);
  device::punch_hole(fd, 0, kBlocks * kBlock);
  const Mapping shared = Mapping::map(kBlocks * kBlock, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
  const ssize_t n = ::pread(direct.get(), shared.data(), kBlocks * kBlock, 0);
  if (n < 0 && errno == EINVAL) GTEST_SKIP() << "this filesystem refuses O_DIRECT";
  ASSERT_EQ(n, static_cast<ssize_t>(kBlocks * kBlock)) << std::strerror(errno);
  const Fd plain = Fd::open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  for (std::uint64_t b = 0; b < kBlocks; ++b) {
    PageImage want;
    ASSERT_EQ(::pread(plain.get(), want.bytes(), kBlock, static_cast<off_t>(b * kBlock)),
              static_cast<ssize_t>(kBlock));
    ASSERT_EQ(pread_block(fd, b), want) << "block " << b;
  }
}

TEST_F(DeviceTest, AnODirectReadLandsInTheMappedBlocks) {
  if (device_window()) GTEST_SKIP() << "the window's case is WindowAnODirectRead...";
  expect_an_o_direct_read_lands_in_the_mapped_blocks(fd());
}

TEST_F(DeviceTest, WindowAnODirectReadLandsInTheMappedBlocks) {
  const std::optional<vmcoh_window_stats> before = device_window();
  if (!before) GTEST_SKIP() << "needs a window: window_mb > 0 (tests/guest/window.sh)";
  expect_an_o_direct_read_lands_in_the_mapped_blocks(fd());
  EXPECT_EQ(device::get_window_stats(fd()).pin_waits, before->pin_waits)
      << "a pin with no punch made something wait";
}

TEST_F(DeviceTest, APinTakenBeforeAPunchDoesNotOverwriteALaterWrite) {
  if (device_window()) GTEST_SKIP() << "the window's case is WindowAPinTaken...";
  expect_a_pin_taken_before_a_punch_does_not_overwrite_a_later_write(fd(), Rewrite::write);
  expect_a_pin_taken_before_a_punch_does_not_overwrite_a_later_write(fd(), Rewrite::store);
}

TEST_F(DeviceTest, WindowAPinTakenBeforeAPunchDoesNotOverwriteALaterWrite) {
  const std::optional<vmcoh_window_stats> before = device_window();
  if (!before) GTEST_SKIP() << "needs a window: window_mb > 0 (tests/guest/window.sh)";
  expect_a_pin_taken_before_a_punch_does_not_overwrite_a_later_write(fd(), Rewrite::write);
  EXPECT_GT(device::get_window_stats(fd()).pin_waits, before->pin_waits)
      << "the write(2) never waited for the pin";
}

TEST_F(DeviceTest, WindowAPinTakenBeforeAPunchDoesNotOverwriteALaterStore) {
  const std::optional<vmcoh_window_stats> before = device_window();
  if (!before) GTEST_SKIP() << "needs a window: window_mb > 0 (tests/guest/window.sh)";
  expect_a_pin_taken_before_a_punch_does_not_overwrite_a_later_write(fd(), Rewrite::store);
  EXPECT_GT(device::get_window_stats(fd()).pin_waits, before->pin_waits)
      << "the store's fault never waited for the pin";
}

TEST_F(DeviceTest, ASplicedPageKeepsWhatTheBlockHeld) {
  if (device_window()) GTEST_SKIP() << "the window's case is WindowASplicedPage...";
  expect_a_spliced_page_keeps_what_the_block_held(fd());
}

TEST_F(DeviceTest, WindowASplicedPageKeepsWhatTheBlockHeld) {
  const std::optional<vmcoh_window_stats> before = device_window();
  if (!before) GTEST_SKIP() << "needs a window: window_mb > 0 (tests/guest/window.sh)";
  expect_a_spliced_page_keeps_what_the_block_held(fd());
  EXPECT_GT(device::get_window_stats(fd()).pin_waits, before->pin_waits)
      << "the write(2) never waited for the pipe";
}

}  // namespace
}  // namespace vmcoh::test
