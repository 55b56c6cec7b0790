// 2 MiB mappings (uapi/vmcoh.h, "The window"): a fully resident, aligned region of an object in a
// window is mapped by one PMD under one 2 MiB entry lock; a mapping of a single page of it
// downgrades it (every PMD of the region unmapped, the entry removed, then PTEs); an
// invalidation of any part of it unmaps its PMDs.  They run in tests/guest/window.sh (window_mb=4:
// two ranges); the plain gtest run has no window and skips them.  unsafe=pmd_downgrade_no_unmap
// removes the 2 MiB entry without unmapping its PMDs, and
// APageMappingDowngradesTheRegionSoThatAPunchStillUnmapsIt must catch it.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include <vmcoh/backing_server.hpp>
#include <vmcoh/fd.hpp>
#include <vmcoh/rng.hpp>
#include <vmcoh/sigbus_probe.hpp>
#include <vmcoh/test_hooks.hpp>

#include "backing_fixture.hpp"

namespace vmcoh::test {
namespace {

using namespace std::chrono_literals;

constexpr std::uint64_t kRegion = VMCOH_RANGE_SIZE;
constexpr std::uint64_t kRegionBlocks = kRegion / kBlock;

// Does the device map 2 MiB regions by PMDs?  Skips the test if not, or if absent.
bool pmd_device() {
  if (!device_present()) return false;
  const Fd fd = Fd::open(device_path(), O_RDWR | O_CLOEXEC);
  return (device::get_info(fd.get()).features & VMCOH_FEATURE_PMD) != 0;
}

constexpr const char* kNeedsPmd =
    "needs 2 MiB mappings: window_mb > 0, pmd=1 (the default), FS_DAX (tests/guest/window.sh)";

// A plain object of two regions in a window, both written.
class PmdTest : public DeviceTest {
 protected:
  void SetUp() override {
    if (!pmd_device()) GTEST_SKIP() << kNeedsPmd;
    DeviceTest::SetUp();
    device::set_size(fd(), kRegions * kRegion);
    for (std::uint64_t r = 0; r < kRegions; ++r) write_region(r, 1);
    base_ = device::get_window_stats(fd());
  }

  // Every block of region r at `generation`, in one write(2).
  void write_region(std::uint64_t r, std::uint64_t generation) const {
    std::vector<PageImage> pages;
    pages.reserve(kRegionBlocks);
    for (std::uint64_t b = 0; b < kRegionBlocks; ++b) {
      pages.push_back(block_stamp(r * kRegionBlocks + b, generation));
    }
    ASSERT_EQ(::pwrite(fd(), pages.data(), kRegion, static_cast<off_t>(r * kRegion)),
              static_cast<ssize_t>(kRegion))
        << std::strerror(errno);
  }

  // The whole object, shared; mmap(2) gives a 2 MiB-aligned address.
  [[nodiscard]] Mapping map_regions(int prot) const {
    Mapping m = map(prot, MAP_SHARED, kRegions * kRegion);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(m.data()) % kRegion, 0U)
        << "mmap did not align the mapping to 2 MiB";
    return m;
  }

  // One page of the object, at block b: a mapping no PMD fits in.
  [[nodiscard]] Mapping map_page(std::uint64_t b) const {
    return Mapping::map(kBlock, PROT_READ, MAP_SHARED, fd(), static_cast<off_t>(b * kBlock));
  }

  // The 2 MiB counters since SetUp (the device's count from its load).
  [[nodiscard]] std::uint64_t pmd_maps() const {
    return device::get_window_stats(fd()).pmd_maps - base_.pmd_maps;
  }
  [[nodiscard]] std::uint64_t pmd_fallbacks() const {
    return device::get_window_stats(fd()).pmd_fallbacks - base_.pmd_fallbacks;
  }
  [[nodiscard]] std::uint64_t pmd_downgrades() const {
    return device::get_window_stats(fd()).pmd_downgrades - base_.pmd_downgrades;
  }

  // Every block of region r through `m` is its stamp at `generation`; the first that is not.
  static std::optional<std::uint64_t> first_wrong(const Mapping& m, std::uint64_t r,
                                                  std::uint64_t generation) {
    for (std::uint64_t b = r * kRegionBlocks; b < (r + 1) * kRegionBlocks; ++b) {
      if (mapped_block(m, b) != block_stamp(b, generation)) return b;
    }
    return std::nullopt;
  }

  static constexpr std::uint64_t kRegions = 2;
  vmcoh_window_stats base_{};
};

TEST_F(PmdTest, ReadsOfAResidentRegionMapItWithOnePmd) {
  const Mapping m = map_regions(PROT_READ);
  const std::uint64_t faults = stats().faults;
  EXPECT_EQ(first_wrong(m, 0, 1), std::nullopt);
  EXPECT_EQ(pmd_maps(), 1U);
  EXPECT_EQ(stats().faults, faults) << "the region was mapped by PTEs (->fault)";
}

// A region with a hole is not fully resident: PTEs (the hole maps the zero page).
TEST_F(PmdTest, ARegionWithAHoleIsMappedByPtes) {
  device::punch_hole(fd(), 17 * kBlock, kBlock);
  const Mapping m = map_regions(PROT_READ);
  EXPECT_EQ(mapped_block(m, 17), PageImage{});
  EXPECT_EQ(mapped_block(m, 18), block_stamp(18, 1));
  EXPECT_EQ(pmd_maps(), 0U);
  EXPECT_GT(pmd_fallbacks(), 0U);
}

// GUP (process_vm_readv/writev pin the pages) through a PMD, both ways.
TEST_F(PmdTest, GupThroughAPmdReadsAndWritesTheBlocks) {
  const Mapping m = map_regions(PROT_READ | PROT_WRITE);
  ASSERT_EQ(mapped_block(m, 3), block_stamp(3, 1));  // the PMD, read-only
  EXPECT_EQ(pmd_maps(), 1U);

  PageImage got;
  iovec local{got.bytes(), kBlock};
  iovec remote{m.data() + 5 * kBlock, kBlock};
  ASSERT_EQ(::process_vm_readv(::getpid(), &local, 1, &remote, 1, 0), static_cast<ssize_t>(kBlock))
      << std::strerror(errno);
  EXPECT_EQ(got, block_stamp(5, 1));

  PageImage put = block_stamp(6, 2);
  local = {put.bytes(), kBlock};
  remote = {m.data() + 6 * kBlock, kBlock};
  ASSERT_EQ(::process_vm_writev(::getpid(), &local, 1, &remote, 1, 0), static_cast<ssize_t>(kBlock))
      << std::strerror(errno);
  EXPECT_EQ(pread_block(fd(), 6), put);
  EXPECT_EQ(mapped_block(m, 6), put);
  EXPECT_EQ(pmd_downgrades(), 0U);
}

// A store through the read-only PMD makes it writable; write(2) and stores see each other.
TEST_F(PmdTest, StoresThroughAPmdAndWritesSeeEachOther) {
  const Mapping m = map_regions(PROT_READ | PROT_WRITE);
  ASSERT_EQ(mapped_block(m, 0), block_stamp(0, 1));
  const std::uint64_t mkwrites = stats().mkwrite_faults;
  store_block(m, 9, block_stamp(9, 2));
  EXPECT_EQ(pread_block(fd(), 9), block_stamp(9, 2));
  EXPECT_EQ(stats().mkwrite_faults, mkwrites) << "the store went through a PTE";
  pwrite_block(fd(), 10, block_stamp(10, 3));
  EXPECT_EQ(mapped_block(m, 10), block_stamp(10, 3));
  EXPECT_EQ(pmd_downgrades(), 0U);
}

// The downgrade, and why it unmaps before it removes: a one-page mapping of block 7 faults a PTE
// inside the PMD-mapped region, so the region's 2 MiB entry must go - and the PMD with it, or a
// later punch of block 9 (which finds no entry at 9, so unmaps nothing) leaves the PMD mapping
// block 9's old contents.  unsafe=pmd_downgrade_no_unmap does exactly that.
TEST_F(PmdTest, APageMappingDowngradesTheRegionSoThatAPunchStillUnmapsIt) {
  const Mapping whole = map_regions(PROT_READ);
  ASSERT_EQ(first_wrong(whole, 0, 1), std::nullopt);
  ASSERT_EQ(pmd_maps(), 1U);

  const Mapping page = map_page(7);
  EXPECT_EQ(mapped_block(page, 0), block_stamp(7, 1));
  EXPECT_EQ(pmd_downgrades(), 1U);

  device::punch_hole(fd(), 9 * kBlock, kBlock);
  EXPECT_EQ(mapped_block(whole, 9), PageImage{})
      << "the PMD outlived its 2 MiB entry: the punched block is still mapped";
  EXPECT_EQ(mapped_block(whole, 8), block_stamp(8, 1));
  // The region is PTE-mapped from now on: block 7 keeps an entry of its own.
  const std::uint64_t maps = pmd_maps();
  pwrite_block(fd(), 9, block_stamp(9, 2));
  const Mapping again = map_regions(PROT_READ);
  EXPECT_EQ(mapped_block(again, 9), block_stamp(9, 2));
  EXPECT_EQ(mapped_block(again, 100), block_stamp(100, 1));
  EXPECT_EQ(pmd_maps(), maps);
}

// An invalidation of part of a region (here a punch of one page) removes the 2 MiB entry and
// unmaps the whole PMD: the rest of the region faults back by PTEs, unchanged, and the punched
// page reads zeros.  Those PTEs' entries keep the region PTE-mapped, until an invalidation of the
// whole region (a punch, then a write of it) removes them: then it gets one PMD again.
TEST_F(PmdTest, APartialPunchUnmapsThePmdAndTheRestFaultsBack) {
  const Mapping m = map_regions(PROT_READ);
  ASSERT_EQ(first_wrong(m, 0, 1), std::nullopt);
  ASSERT_EQ(pmd_maps(), 1U);
  const std::uint64_t faults = stats().faults;
  device::punch_hole(fd(), 200 * kBlock, kBlock);
  for (std::uint64_t b = 0; b < kRegionBlocks; ++b) {
    ASSERT_EQ(mapped_block(m, b), b == 200 ? PageImage{} : block_stamp(b, 1)) << "block " << b;
  }
  EXPECT_GT(stats().faults, faults) << "nothing faulted again: the PMD survived the punch";
  EXPECT_EQ(pmd_maps(), 1U);

  device::punch_hole(fd(), 0, kRegion);
  write_region(0, 2);
  // Our first mapping keeps the page table of its PTEs; a new one (a new address) gets a PMD.
  const Mapping fresh = map_regions(PROT_READ);
  EXPECT_EQ(first_wrong(fresh, 0, 2), std::nullopt);
  EXPECT_EQ(pmd_maps(), 2U);
  // The old mapping's page faults downgrade it, and read the same.
  EXPECT_EQ(first_wrong(m, 0, 2), std::nullopt);
  EXPECT_EQ(first_wrong(fresh, 0, 2), std::nullopt);
  EXPECT_EQ(pmd_downgrades(), 1U);
}

// A shrink through a PMD-mapped region: the pages beyond EOF must SIGBUS, those below stay.
TEST_F(PmdTest, AShrinkIntoAPmdRegionUnmapsIt) {
  const Mapping m = map_regions(PROT_READ);
  ASSERT_EQ(first_wrong(m, 1, 1), std::nullopt);
  device::set_size(fd(), kRegion + 100 * kBlock);
  install_sigbus_probe();
  EXPECT_FALSE(probed_block(m, kRegionBlocks + 100)) << "a page beyond EOF is still mapped";
  const std::optional<PageImage> below = probed_block(m, kRegionBlocks + 99);
  ASSERT_TRUE(below);
  EXPECT_EQ(*below, block_stamp(kRegionBlocks + 99, 1));
}

// The exact interleaving at 2 MiB: a PMD fault holds the region's entry, having read the block
// map, when a punch of one of its pages comes.  The punch must wait for the entry, and then unmap
// the PMD the fault installed: the punched page reads zeros.
TEST_F(PmdTest, APunchWaitsForAPmdFaultHoldingItsRegion) {
  require_test_hooks();
  const Mapping m = map_regions(PROT_READ);
  // Both threads exist before the fault parks: it holds this process's mmap_lock on 6.1, and
  // creating a thread (its stack is an mmap) would wait for it.
  std::promise<void> go;
  auto punch = std::async(std::launch::async, [&, started = go.get_future()] {
    started.wait();
    device::punch_hole(fd(), 9 * kBlock, kBlock);
  });
  HoldPoint looked_up(fd(), VMCOH_HOLD_FAULT_LOOKED_UP, 0, 0, kWait);
  auto reader = std::async(std::launch::async, [&] { return mapped_block(m, 1); });
  ASSERT_TRUE(looked_up.wait_parked(kWait));
  go.set_value();
  EXPECT_EQ(punch.wait_for(200ms), std::future_status::timeout)
      << "the punch did not wait for the region's entry";
  looked_up.release();
  EXPECT_EQ(reader.get(), block_stamp(1, 1));
  punch.get();
  EXPECT_EQ(mapped_block(m, 9), PageImage{}) << "the PMD installed before the punch survived it";
  EXPECT_EQ(pmd_maps(), 1U);
}

// PMD and PTE faults mixed with invalidation, at random: a reader thread maps the object whole
// (PMDs), another maps single pages (each a downgrade), a third punches pages and rewrites them,
// or punches and rewrites whole regions (which makes them PMD-mappable again), then reads one
// page of the region through a one-page mapping.  The writer, the
// only one to change the object, checks after each change, through a mapping of its own, that
// every page it changed reads back exactly what it wrote: a PMD or PTE that outlived an
// invalidation is seen.  Readers check that each page they read is the page of its own index, or
// a hole, by its stamp's offset: one aligned word, which a read racing the writer cannot tear.
TEST_F(PmdTest, StressPmdAndPteFaultsWithPunchesAndWrites) {
  const auto kStressTime = stress_time(5s);
  constexpr auto kMixTime = 30s;  // the slowest kernels go on till they have mixed
  constexpr std::uint64_t kMixDowngrades = 2;
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> violations{0};
  std::atomic<std::uint64_t> changes{0};
  std::vector<std::string> first(3);

  auto report = [&](int who, std::string what) {
    if (violations.fetch_add(1) == 0) first[who] = std::move(what);
  };
  // The stamp's offset in page `page` of `m`, read with one load: b's offset, or 0 for a hole.
  auto offset_in = [](const Mapping& m, std::uint64_t page) {
    return reinterpret_cast<const volatile std::uint64_t*>(
        m.data() + page * kBlock)[offsetof(StampHeader, offset) / sizeof(std::uint64_t)];
  };
  auto plausible = [](std::uint64_t offset, std::uint64_t b) {
    return offset == 0 || offset == b * kBlock;
  };

  auto pmd_reader = [&] {
    Rng rng(0x9d);
    while (!done.load(std::memory_order_relaxed)) {
      const Mapping m = map_regions(PROT_READ);
      for (int i = 0; i < 64; ++i) {
        const std::uint64_t b = rng.below(kRegions * kRegionBlocks);
        const std::uint64_t offset = offset_in(m, b);
        if (!plausible(offset, b)) {
          report(0, fmt::format("PMD reader: block {} maps the page of offset {:#x}", b, offset));
        }
      }
    }
  };
  auto pte_reader = [&] {
    Rng rng(0x97e);
    while (!done.load(std::memory_order_relaxed)) {
      const std::uint64_t b = rng.below(kRegions * kRegionBlocks);
      const Mapping m = map_page(b);
      const std::uint64_t offset = offset_in(m, 0);
      if (!plausible(offset, b)) {
        report(1, fmt::format("PTE reader: block {} maps the page of offset {:#x}", b, offset));
      }
      // Not so often that a rewritten region never gets its PMD before a page's entry.
      std::this_thread::sleep_for(200us);
    }
  };
  std::thread readers[] = {std::thread(pmd_reader), std::thread(pte_reader)};

  Rng rng(0x3217e);
  std::vector<std::uint64_t> generation(kRegions, 1);
  const auto start = std::chrono::steady_clock::now();
  const auto mixing = [&] {
    const auto now = std::chrono::steady_clock::now();
    return now < start + kStressTime ||
           (now < start + kMixTime && pmd_downgrades() < kMixDowngrades);
  };
  while (mixing() && violations.load() == 0) {
    const std::uint64_t r = rng.below(kRegions);
    // Fault the region in through a new mapping first, by a PMD where the region allows (which
    // the single-page reader then downgrades), so that the change has something to unmap.
    const Mapping mine = map_regions(PROT_READ);
    (void)mapped_block(mine, r * kRegionBlocks + rng.below(kRegionBlocks));
    if (rng.chance(1, 3)) {
      device::punch_hole(fd(), r * kRegion, kRegion);
      write_region(r, ++generation[r]);
      // A new mapping has no page table here: one PMD, unless a page's entry came first.  Then
      // the old mapping, whose page table is left from PTEs, downgrades it.
      if (const auto b = first_wrong(map_regions(PROT_READ), r, generation[r])) {
        report(2, fmt::format("writer: block {} wrong through a new mapping", *b));
      }
      if (const auto b = first_wrong(mine, r, generation[r])) {
        report(2, fmt::format("writer: block {} stale after the region was written", *b));
      }
      // A page of it, through a mapping of its own: the downgrade, if that was a PMD.
      const std::uint64_t b = r * kRegionBlocks + rng.below(kRegionBlocks);
      if (mapped_block(map_page(b), 0) != block_stamp(b, generation[r])) {
        report(2, fmt::format("writer: block {} wrong through a one-page mapping", b));
      }
    } else {
      const std::uint64_t b = r * kRegionBlocks + rng.below(kRegionBlocks);
      device::punch_hole(fd(), b * kBlock, kBlock);
      if (mapped_block(mine, b) != PageImage{}) {
        report(2, fmt::format("writer: block {} still mapped after its punch", b));
      }
      pwrite_block(fd(), b, block_stamp(b, generation[r]));
      if (mapped_block(mine, b) != block_stamp(b, generation[r])) {
        report(2, fmt::format("writer: block {} stale after it was rewritten", b));
      }
    }
    changes.fetch_add(1);
  }
  done = true;
  for (auto& t : readers) t.join();

  EXPECT_EQ(violations.load(), 0U) << first[0] << first[1] << first[2];
  EXPECT_GT(pmd_maps(), 0U) << "no PMD was ever mapped: the scenario did not mix";
  EXPECT_GT(pmd_downgrades(), 0U) << "no downgrade: the scenario did not mix";
  RecordProperty("changes", std::to_string(changes.load()));
  RecordProperty("pmd_maps", std::to_string(pmd_maps()));
  RecordProperty("pmd_downgrades", std::to_string(pmd_downgrades()));
}

// A backed object: a store through a PMD dirties the whole region; fsync sends it, downgrading
// the region so that each block is write-protected again; a later store is noticed and sent too.
class PmdBackedTest : public BackingTest {
 protected:
  void SetUp() override {
    if (!pmd_device()) GTEST_SKIP() << kNeedsPmd;
    set_up(BackingServer::Access::writable, kRegionBlocks);
  }
  void TearDown() override {
    if (!server_) return;  // skipped before anything was set up
    BackingTest::TearDown();
  }
};

TEST_F(PmdBackedTest, StoresThroughAPmdReachTheServerAtFsync) {
  // read(2) loads every block without an entry: the region is resident and PMD-mappable.
  std::vector<std::byte> all(kRegion);
  ASSERT_EQ(::pread(fd(), all.data(), kRegion, 0), static_cast<ssize_t>(kRegion));
  const Mapping m = map(PROT_READ | PROT_WRITE, MAP_SHARED, kRegion);
  const std::uint64_t maps = device::get_window_stats(fd()).pmd_maps;
  store_block(m, 5, block_stamp(5, 2));
  EXPECT_EQ(device::get_window_stats(fd()).pmd_maps, maps + 1);
  ASSERT_EQ(::fsync(fd()), 0) << std::strerror(errno);
  EXPECT_EQ(server().block(5), block_stamp(5, 2));
  EXPECT_GE(backing().stores, kRegionBlocks) << "a PMD store must dirty the whole region";
  EXPECT_GT(device::get_window_stats(fd()).pmd_downgrades, 0U);

  // Writeback left no entry behind: the next store maps a writable PMD again.
  const std::uint64_t stores = backing().stores;
  store_block(m, 5, block_stamp(5, 3));
  ASSERT_EQ(::fsync(fd()), 0) << std::strerror(errno);
  EXPECT_EQ(server().block(5), block_stamp(5, 3)) << "a store after the writeback was missed";
  EXPECT_GT(backing().stores, stores);
}

}  // namespace
}  // namespace vmcoh::test
