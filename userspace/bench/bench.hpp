// vmcoh-bench: what the entry-lock protocol costs next to the kernel's own implementations.
// Each workload runs against every target of one run (the device, a tmpfs file, an ext4-DAX
// file), round after round, so that all of them see the same host.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <vmcoh/actors.hpp>
#include <vmcoh/mapping.hpp>
#include <vmcoh/target.hpp>

namespace vmcoh::bench {

// One object under test.  `huge` leaves the kernel free to map 2 MiB per fault; otherwise every
// mapping is madvise(MADV_NOHUGEPAGE)d, which puts ext4-DAX on its 4 KiB path.
struct BenchTarget {
  std::string name;
  std::filesystem::path path;
  bool huge = false;
  bool dax = false;  // statx says STATX_ATTR_DAX
  Target target;
};

struct Settings {
  std::uint64_t size = 128ULL << 20;  // bytes in each object
  double seconds = 1.0;               // timed per cell per round
  std::size_t max_workers = 1;        // 1..max_workers for the scaling workloads
  std::uint64_t window = 0;           // bytes in the device's window (window_mb); 0: none
};

// One measurement of one round: the value of the cell's metric, and anything else worth
// reporting (summed over rounds, then divided by their number).
struct Measurement {
  double value = 0;
  std::map<std::string, double> extra;
};

// A workload's cells for one target in one round: key (variant, mode, workers) -> measurement.
struct CellKey {
  int order = 0;  // sorts variants that do not sort by name (sizes, percentiles)
  std::string variant;
  ActorMode mode = ActorMode::threads;
  std::size_t workers = 1;
  // NOLINTNEXTLINE(modernize-use-nullptr): a clang-tidy false positive on a defaulted <=>
  auto operator<=>(const CellKey&) const = default;
};
using RoundResults = std::map<CellKey, Measurement>;

struct Workload {
  std::string_view name;
  std::string_view metric;  // JSON name of the value
  std::string_view unit;
  bool higher_is_better;
  RoundResults (*run)(BenchTarget& target, const Settings& settings);
};

[[nodiscard]] const std::vector<Workload>& all_workloads();

// --- helpers shared by the workloads and the report (targets.cpp) ---

// Opens (creating a file if missing) and checks DAX; the object is sized by prepare_full().
BenchTarget open_target(std::string name, const std::filesystem::path& path, bool huge);
// Empties the object, sizes it to settings.size and writes every page of it (so every block is
// allocated).
void prepare_full(const BenchTarget& target, const Settings& settings);
// Writes [offset, offset + length) with non-zero bytes.
void fill(const BenchTarget& target, std::uint64_t offset, std::uint64_t length);
// MAP_SHARED of [offset, offset + length), NOHUGEPAGE unless `huge` (default: the target's).
Mapping map_range(const BenchTarget& target, std::uint64_t offset, std::uint64_t length, int prot,
                  bool huge);
inline Mapping map_range(const BenchTarget& target, std::uint64_t offset, std::uint64_t length,
                         int prot) {
  return map_range(target, offset, length, prot, target.huge);
}
// The bytes of the window of the first device target that has one, else 0.
std::uint64_t device_window(const std::vector<BenchTarget>& targets);
// The median of `v` (the mean of the middle two for an even count; 0 if empty).
double median(std::vector<double> v);
// Page faults of the calling thread so far, minor and major (a DAX fault that allocates a block
// counts as major).
std::uint64_t faults_of_thread();

}  // namespace vmcoh::bench
