// The workloads of vmcoh-bench.  Scaling workloads (read-fault, write-fault) give each
// worker its own slice of the object, so workers never fault the same page: what limits their
// scaling is shared state in the fault path (and mmap_lock, for threads of one process).
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <memory>
#include <thread>

#include <fmt/format.h>

#include <vmcoh/backing_server.hpp>
#include <vmcoh/clock.hpp>
#include <vmcoh/error.hpp>
#include <vmcoh/rng.hpp>
#include <vmcoh/shared_array.hpp>
#include <vmcoh/stamp.hpp>

#include "bench.hpp"

namespace vmcoh::bench {

namespace {

constexpr std::uint64_t kTimeCheckPages = 256;  // look at the clock this often in a pass
constexpr std::uint64_t kWriteChunk = 64ULL * 1024;
constexpr std::size_t kLatencyChunkPages = 64;  // what the latency writer punches and rewrites
constexpr auto kJoinSlack = std::chrono::seconds(120);

std::uint64_t budget_ns(const Settings& settings) {
  return static_cast<std::uint64_t>(settings.seconds * 1e9);
}

void load(const std::byte* p) { static_cast<void>(*static_cast<const volatile std::byte*>(p)); }
void store(std::byte* p) { *static_cast<volatile std::byte*>(p) = std::byte{1}; }

// What one worker of a scaling workload did, in shared memory (it may be a process).
struct WorkerReport {
  std::uint64_t pages;
  std::uint64_t faults;
  std::uint64_t timed_ns;
};

// A worker's rate over its timed passes.
double pages_per_s(const WorkerReport& r) {
  return r.timed_ns ? static_cast<double>(r.pages) * 1e9 / static_cast<double>(r.timed_ns) : 0.0;
}

// All workers start together: each counts itself ready, then waits for the last one.
struct StartLine {
  std::uint64_t ready;
};

void wait_for_everyone(StartLine& line, std::size_t workers) {
  atomic(line.ready).fetch_add(1);
  while (atomic(line.ready).load() < workers) sched_yield();
}

// Waits for every actor of `group`; one that did not finish makes the workload fail.
void join_all(ActorGroup& group, std::chrono::steady_clock::time_point deadline) {
  for (const ActorOutcome& outcome : group.join(deadline)) {
    if (outcome.status != ActorOutcome::Status::finished) {
      throw std::runtime_error(
          fmt::format("{} {}: {}", outcome.name, to_string(outcome.status), outcome.detail));
    }
  }
}

// A pass over [offset, offset + length): touch one byte of each page through a fresh mapping.
enum class Touch { load, store };

// Repeats untimed `prepare` + a timed pass over its slice until `budget` ns of passes; `huge`
// lets the mappings take 2 MiB faults.
WorkerReport run_passes(const BenchTarget& target, std::uint64_t offset, std::uint64_t length,
                        Touch touch, const std::function<void()>& prepare, std::uint64_t budget,
                        bool huge) {
  WorkerReport report{};
  const std::uint64_t faults_before = faults_of_thread();
  const std::uint64_t pages = length / kPageSize;
  const int prot = touch == Touch::load ? PROT_READ : PROT_READ | PROT_WRITE;
  while (report.timed_ns < budget) {
    if (prepare) prepare();
    const std::uint64_t start = monotonic_ns();
    {
      const Mapping map = map_range(target, offset, length, prot, huge);
      for (std::uint64_t i = 0; i < pages; ++i) {
        std::byte* page = map.data() + i * kPageSize;
        touch == Touch::load ? load(page) : store(page);
        ++report.pages;
        if (i % kTimeCheckPages == kTimeCheckPages - 1 &&
            report.timed_ns + (monotonic_ns() - start) >= budget) {
          break;
        }
      }
    }
    report.timed_ns += monotonic_ns() - start;
  }
  report.faults = faults_of_thread() - faults_before;
  return report;
}

// Runs `workers` workers in `mode`, worker w on slice w of the object; returns pages/s summed
// over workers, and minor faults per page.
Measurement scale(const BenchTarget& target, const Settings& settings, ActorMode mode,
                  std::size_t workers, Touch touch, bool punch_first) {
  const std::uint64_t slice = settings.size / workers / kPageSize * kPageSize;
  SharedArray<WorkerReport> reports(workers);
  SharedArray<StartLine> line(1);
  ActorGroup group(mode, workers);
  for (std::size_t w = 0; w < workers; ++w) {
    group.spawn(fmt::format("worker-{}", w), [&, w] {
      const std::uint64_t offset = w * slice;
      std::function<void()> prepare;
      if (punch_first) prepare = [&] { target.target.punch_hole(offset, slice); };
      wait_for_everyone(line[0], workers);
      reports[w] =
          run_passes(target, offset, slice, touch, prepare, budget_ns(settings), target.huge);
    });
  }
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(settings.seconds)) +
                        kJoinSlack;
  join_all(group, deadline);
  Measurement m;
  std::uint64_t pages = 0;
  std::uint64_t faults = 0;
  for (const WorkerReport& r : reports.items()) {
    m.value += pages_per_s(r);
    pages += r.pages;
    faults += r.faults;
  }
  m.extra["faults_per_page"] = pages ? static_cast<double>(faults) / static_cast<double>(pages) : 0;
  return m;
}

RoundResults scaling(BenchTarget& target, const Settings& settings, Touch touch,
                     const std::vector<std::pair<std::string, bool>>& variants) {
  RoundResults out;
  for (const auto& [variant, punch_first] : variants) {
    prepare_full(target, settings);
    for (const ActorMode mode : {ActorMode::threads, ActorMode::processes}) {
      for (std::size_t workers = 1; workers <= settings.max_workers; ++workers) {
        out[{0, variant, mode, workers}] =
            scale(target, settings, mode, workers, touch, punch_first);
      }
    }
  }
  return out;
}

RoundResults read_fault(BenchTarget& target, const Settings& settings) {
  return scaling(target, settings, Touch::load, {{"", false}});
}

RoundResults write_fault(BenchTarget& target, const Settings& settings) {
  return scaling(target, settings, Touch::store, {{"allocated", false}, {"holes", true}});
}

std::string size_label(std::uint64_t bytes) {
  return bytes >= (1ULL << 20) ? fmt::format("{}MiB", bytes >> 20)
                               : fmt::format("{}KiB", bytes >> 10);
}

// Punch a fully written, mapped and touched range of each size (4 KiB, x16 steps, and the whole
// object): ms per punch (median of the repetitions of this round), and for the device how many
// ranged unmaps each punch issued.
RoundResults invalidate(BenchTarget& target, const Settings& settings) {
  RoundResults out;
  target.target.set_size(settings.size);
  std::vector<std::uint64_t> ranges;
  for (std::uint64_t range = 4096; range < settings.size; range *= 16) ranges.push_back(range);
  ranges.push_back(settings.size);
  for (const std::uint64_t length : ranges) {
    const int reps = static_cast<int>(std::clamp<std::uint64_t>(settings.size / length, 3, 15));
    std::vector<double> ms;
    double unmaps = 0;
    for (int r = 0; r < reps; ++r) {
      fill(target, 0, length);
      const Mapping map = map_range(target, 0, length, PROT_READ);
      for (std::uint64_t off = 0; off < length; off += kPageSize) load(map.data() + off);
      const auto before = target.target.stats();
      const std::uint64_t start = monotonic_ns();
      target.target.punch_hole(0, length);
      ms.push_back(static_cast<double>(monotonic_ns() - start) / 1e6);
      if (const auto after = target.target.stats(); before && after) {
        unmaps += static_cast<double>(after->ranged_unmaps - before->ranged_unmaps);
      }
    }
    Measurement& m = out[{static_cast<int>(std::log2(static_cast<double>(length))),
                          size_label(length), ActorMode::threads, 1}];
    m.value = median(ms);
    if (target.target.is_device()) m.extra["ranged_unmaps_per_punch"] = unmaps / reps;
  }
  return out;
}

// Readers that fault the whole object over and over, until `stop`.
void fault_until(const BenchTarget& target, const Settings& settings, std::uint64_t& stop) {
  const Mapping map = map_range(target, 0, settings.size, PROT_READ);
  while (atomic(stop).load(std::memory_order_relaxed) == 0) {
    for (std::uint64_t off = 0; off < settings.size; off += kPageSize) load(map.data() + off);
    check_syscall(::madvise(map.data(), settings.size, MADV_DONTNEED), "madvise(MADV_DONTNEED)");
  }
}

// write(2) of kWriteChunk bytes at a time over the object: MB/s, into allocated blocks or holes,
// alone or with max_workers - 1 (at least one) readers faulting the same range meanwhile.
RoundResults write_throughput(BenchTarget& target, const Settings& settings) {
  RoundResults out;
  const std::vector<std::byte> chunk(kWriteChunk, std::byte{0x3c});
  const std::size_t readers = std::max<std::size_t>(1, settings.max_workers - 1);
  for (const bool holes : {false, true}) {
    for (const bool with_readers : {false, true}) {
      prepare_full(target, settings);
      SharedArray<std::uint64_t> stop(1);
      ActorGroup group(ActorMode::threads, readers);
      if (with_readers) {
        for (std::size_t r = 0; r < readers; ++r) {
          group.spawn(fmt::format("reader-{}", r), [&] { fault_until(target, settings, stop[0]); });
        }
      }
      std::uint64_t bytes = 0;
      std::uint64_t timed = 0;
      while (timed < budget_ns(settings)) {
        if (holes) target.target.punch_hole(0, settings.size);
        const std::uint64_t start = monotonic_ns();
        for (std::uint64_t off = 0; off < settings.size; off += kWriteChunk) {
          bytes += static_cast<std::uint64_t>(check_syscall(
              ::pwrite(target.target.fd(), chunk.data(), kWriteChunk, static_cast<off_t>(off)),
              "pwrite"));
          if (timed + (monotonic_ns() - start) >= budget_ns(settings)) break;
        }
        timed += monotonic_ns() - start;
      }
      atomic(stop[0]).store(1);
      join_all(group, std::chrono::steady_clock::now() + kJoinSlack);
      const std::string variant =
          fmt::format("{}{}", holes ? "holes" : "allocated", with_readers ? "+readers" : "");
      out[{0, variant, ActorMode::threads, with_readers ? readers + 1 : 1}].value =
          static_cast<double>(bytes) / 1e6 / (static_cast<double>(timed) / 1e9);
    }
  }
  return out;
}

// Fault latency of readers (max_workers - 1, at least one) while a writer keeps punching and
// rewriting 64-page chunks of the object: each reader drops one page of its mapping and times
// the load that faults it back.
RoundResults latency(BenchTarget& target, const Settings& settings) {
  prepare_full(target, settings);
  const std::size_t readers = std::max<std::size_t>(1, settings.max_workers - 1);
  const std::uint64_t pages = settings.size / kPageSize;
  SharedArray<std::uint64_t> stop(1);
  SharedArray<std::uint64_t> taken(1);  // samples so far, all readers
  std::vector<std::vector<double>> samples(readers);
  ActorGroup group(ActorMode::threads, readers + 1);
  group.spawn("writer", [&] {
    const std::uint64_t chunk = kLatencyChunkPages * kPageSize;
    for (std::uint64_t i = 0; atomic(stop[0]).load() == 0; ++i) {
      const std::uint64_t off = (i * 7919 % (settings.size / chunk)) * chunk;
      target.target.punch_hole(off, chunk);
      fill(target, off, chunk);
    }
  });
  for (std::size_t r = 0; r < readers; ++r) {
    group.spawn(fmt::format("reader-{}", r), [&, r] {
      const Mapping map = map_range(target, 0, settings.size, PROT_READ);
      std::vector<double>& mine = samples[r];
      for (std::uint64_t i = r; atomic(stop[0]).load() == 0; i += 104729) {
        std::byte* page = map.data() + (i % pages) * kPageSize;
        check_syscall(::madvise(page, kPageSize, MADV_DONTNEED), "madvise(MADV_DONTNEED)");
        const std::uint64_t start = monotonic_ns();
        load(page);
        mine.push_back(static_cast<double>(monotonic_ns() - start) / 1e3);
        atomic(taken[0]).fetch_add(1);
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(settings.seconds));
  // A short cell (--quick) on a busy host may end before a reader has mapped its range: give
  // the readers, within a bound, the time for one sample each.
  const auto deadline = std::chrono::steady_clock::now() + kJoinSlack;
  while (atomic(taken[0]).load() < readers && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  atomic(stop[0]).store(1);
  join_all(group, std::chrono::steady_clock::now() + kJoinSlack);
  std::vector<double> all;
  for (const auto& s : samples) all.insert(all.end(), s.begin(), s.end());
  std::sort(all.begin(), all.end());
  RoundResults out;
  if (all.empty()) return out;
  const auto at = [&](double q) {
    return all[std::min(all.size() - 1,
                        static_cast<std::size_t>(q * static_cast<double>(all.size())))];
  };
  const std::size_t workers = readers + 1;
  out[{0, "p50", ActorMode::threads, workers}].value = at(0.50);
  out[{1, "p99", ActorMode::threads, workers}].value = at(0.99);
  out[{2, "max", ActorMode::threads, workers}].value = all.back();
  for (auto& [key, m] : out) m.extra["samples"] = static_cast<double>(all.size());
  return out;
}

// 2 MiB read faults: mapped reads of a filled object the size of the device's window, one thread,
// each pass through a fresh mapping: pages/s, and faults per page (1/512 for one PMD per 2 MiB).
// The device's regions are then fully resident, so each maps by one PMD; ext4-dax-2m maps its
// extents the same way, ext4-dax and tmpfs by PTEs.  Before window-read, which leaves the device
// backed.  Nothing without a window in the run.
RoundResults pmd_read(BenchTarget& target, const Settings& settings) {
  RoundResults out;
  if (settings.window == 0) return out;
  Settings window = settings;
  window.size = settings.window;
  prepare_full(target, window);
  const bool huge = target.huge || target.target.is_device();
  const auto pmd_maps = [&] {
    return target.target.is_device() ? device::get_window_stats(target.target.fd()).pmd_maps : 0;
  };
  const std::uint64_t maps_before = pmd_maps();
  const WorkerReport r =
      run_passes(target, 0, settings.window, Touch::load, nullptr, budget_ns(settings), huge);
  Measurement& m = out[{0, "", ActorMode::threads, 1}];
  m.value = pages_per_s(r);
  m.extra["faults_per_page"] =
      r.pages ? static_cast<double>(r.faults) / static_cast<double>(r.pages) : 0.0;
  if (target.target.is_device() && r.pages) {
    constexpr std::uint64_t kRegionPages = VMCOH_RANGE_SIZE / kPageSize;
    m.extra["pmds_per_region"] = static_cast<double>((pmd_maps() - maps_before) * kRegionPages) /
                                 static_cast<double>(r.pages);
  }
  target.target.set_size(settings.size);
  return out;
}

// How a served workload goes through its working set.
enum class Served { sequential_map, random_map, read_1m, sequential_store };

constexpr std::uint64_t kReadChunk = 1ULL << 20;

// Passes over [0, set) until `budget` ns: a load of each page through a fresh mapping, in order
// or at random (as many loads as pages, through one mapping per pass), read(2) of 1 MiB chunks
// in order, or a store into each page through a fresh shared mapping, in order.
WorkerReport served_passes(const BenchTarget& target, std::uint64_t set, Served how,
                           std::uint64_t budget) {
  if (how == Served::sequential_map || how == Served::sequential_store) {
    return run_passes(target, 0, set, how == Served::sequential_store ? Touch::store : Touch::load,
                      nullptr, budget, target.huge);
  }
  WorkerReport report{};
  const std::uint64_t faults_before = faults_of_thread();
  const std::uint64_t pages = set / kPageSize;
  std::vector<std::byte> buf(how == Served::read_1m ? kReadChunk : 0);
  Rng rng(0x5e7);
  while (report.timed_ns < budget) {
    const std::uint64_t start = monotonic_ns();
    if (how == Served::random_map) {
      const Mapping map = map_range(target, 0, set, PROT_READ);
      for (std::uint64_t i = 0; i < pages; ++i) {
        load(map.data() + rng.below(pages) * kPageSize);
        ++report.pages;
        if (i % kTimeCheckPages == kTimeCheckPages - 1 &&
            report.timed_ns + (monotonic_ns() - start) >= budget) {
          break;
        }
      }
    } else {
      for (std::uint64_t off = 0; off < set; off += kReadChunk) {
        const std::uint64_t n = std::min(kReadChunk, set - off);
        check_syscall(::pread(target.target.fd(), buf.data(), n, static_cast<off_t>(off)), "pread");
        report.pages += n / kPageSize;
        if (report.timed_ns + (monotonic_ns() - start) >= budget) break;
      }
    }
    report.timed_ns += monotonic_ns() - start;
  }
  report.faults = faults_of_thread() - faults_before;
  return report;
}

// A working set 1x, 2x and 4x the device's window (window_mb), one thread reading it again and
// again as `how` says (or storing into it): pages/s after one untimed pass.  The device is backed
// by a server in this process that takes runs (VMCOH_ATTACH_REGIONS; writable with
// VMCOH_ATTACH_STORE_RUNS to store), so blocks beyond the window are reclaimed - written back
// first if dirty - and loaded again; loads_per_page and round_trips_per_region (the server's LOADs
// per 2 MiB they asked for) say how, and store_round_trips_per_region the same for STOREs.  Files
// are filled and read the same way: a FUSE file's page cache is bounded to the window by the
// memory cgroup the run puts it in (tools/bench), whose dirty pages the kernel writes back as
// FUSE_WRITEs.  Nothing without a window in the run.
RoundResults served(BenchTarget& target, const Settings& settings, Served how) {
  RoundResults out;
  if (settings.window == 0) return out;
  for (const std::uint64_t times : {1, 2, 4}) {
    const std::uint64_t set = times * settings.window;
    target.target.set_size(0);
    target.target.set_size(set);
    std::unique_ptr<BackingServer> server;
    if (target.target.is_device()) {
      const bool stores = how == Served::sequential_store;
      server = std::make_unique<BackingServer>(
          target.path, set / kPageSize,
          stores ? BackingServer::Access::writable : BackingServer::Access::read_only,
          BackingServer::Loads::regions,
          stores ? BackingServer::Stores::runs : BackingServer::Stores::blocks);
    } else {
      fill(target, 0, set);
    }
    const auto loads = [&] {
      vmcoh_backing_stats stats{};
      check_syscall(::ioctl(target.target.fd(), VMCOH_IOC_GET_BACKING_STATS, &stats),
                    "VMCOH_IOC_GET_BACKING_STATS");
      return stats.loads;
    };
    {  // the first pass loads everything, untimed
      const Mapping map = map_range(target, 0, set, PROT_READ);
      for (std::uint64_t off = 0; off < set; off += kPageSize) load(map.data() + off);
    }
    const std::uint64_t loads_before = server ? loads() : 0;
    const std::uint64_t requests_before = server ? server->requests() : 0;
    const std::uint64_t blocks_before = server ? server->requested_blocks() : 0;
    const std::uint64_t stores_before = server ? server->store_requests() : 0;
    const std::uint64_t stored_before = server ? server->stored_blocks() : 0;
    const WorkerReport r = served_passes(target, set, how, budget_ns(settings));
    Measurement& m =
        out[{static_cast<int>(times), fmt::format("{}x", times), ActorMode::threads, 1}];
    m.value = pages_per_s(r);
    if (server) {
      m.extra["loads_per_page"] =
          r.pages ? static_cast<double>(loads() - loads_before) / static_cast<double>(r.pages)
                  : 0.0;
      constexpr std::uint64_t kRegionPages = VMCOH_RANGE_SIZE / kPageSize;
      constexpr auto kRegionBlocks = static_cast<double>(kRegionPages);
      const auto blocks = static_cast<double>(server->requested_blocks() - blocks_before);
      m.extra["round_trips_per_region"] =
          blocks > 0
              ? static_cast<double>(server->requests() - requests_before) * kRegionBlocks / blocks
              : 0.0;
      if (how == Served::sequential_store) {
        const auto stored = static_cast<double>(server->stored_blocks() - stored_before);
        m.extra["store_round_trips_per_region"] =
            stored > 0 ? static_cast<double>(server->store_requests() - stores_before) *
                             kRegionBlocks / stored
                       : 0.0;
      }
    }
  }
  target.target.set_size(settings.size);
  return out;
}

RoundResults window_read(BenchTarget& target, const Settings& settings) {
  return served(target, settings, Served::sequential_map);
}

RoundResults window_random(BenchTarget& target, const Settings& settings) {
  return served(target, settings, Served::random_map);
}

RoundResults window_pread(BenchTarget& target, const Settings& settings) {
  return served(target, settings, Served::read_1m);
}

RoundResults window_write(BenchTarget& target, const Settings& settings) {
  return served(target, settings, Served::sequential_store);
}

}  // namespace

const std::vector<Workload>& all_workloads() {
  static const std::vector<Workload> workloads = {
      {"read-fault", "pages_per_s", "pages/s", true, read_fault},
      {"write-fault", "pages_per_s", "pages/s", true, write_fault},
      {"invalidate", "ms_per_punch", "ms", false, invalidate},
      {"write", "mb_per_s", "MB/s", true, write_throughput},
      {"latency", "us", "us", false, latency},
      {"pmd-read", "pages_per_s", "pages/s", true, pmd_read},
      {"window-read", "pages_per_s", "pages/s", true, window_read},
      {"window-random", "pages_per_s", "pages/s", true, window_random},
      {"window-pread", "pages_per_s", "pages/s", true, window_pread},
      {"window-write", "pages_per_s", "pages/s", true, window_write},
  };
  return workloads;
}

}  // namespace vmcoh::bench
