#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include <vmcoh.h>
#include <vmcoh/error.hpp>
#include <vmcoh/stamp.hpp>

#include "bench.hpp"

namespace vmcoh::bench {

namespace {

#ifndef STATX_ATTR_DAX
constexpr std::uint64_t STATX_ATTR_DAX = 0x00200000;  // linux/stat.h since 5.8
#endif

constexpr std::uint64_t kFillChunk = 1ULL << 20;

bool statx_says_dax(const std::filesystem::path& path) {
  struct statx stx {};
  check_syscall(::statx(AT_FDCWD, path.c_str(), 0, STATX_BASIC_STATS, &stx), "statx");
  return (stx.stx_attributes_mask & STATX_ATTR_DAX) != 0 &&
         (stx.stx_attributes & STATX_ATTR_DAX) != 0;
}

}  // namespace

BenchTarget open_target(std::string name, const std::filesystem::path& path, bool huge) {
  Target target = Target::open(path, Target::create_policy_for(path));
  const bool dax = !target.is_device() && statx_says_dax(path);
  return {std::move(name), path, huge, dax, std::move(target)};
}

void fill(const BenchTarget& target, std::uint64_t offset, std::uint64_t length) {
  static const std::vector<std::byte> ones(kFillChunk, std::byte{0x5a});
  for (std::uint64_t done = 0; done < length;) {
    const std::uint64_t n = std::min(kFillChunk, length - done);
    const ssize_t written = check_syscall(
        ::pwrite(target.target.fd(), ones.data(), n, static_cast<off_t>(offset + done)), "pwrite");
    done += static_cast<std::uint64_t>(written);
  }
}

void prepare_full(const BenchTarget& target, const Settings& settings) {
  // From empty: blocks freed by earlier punches would otherwise leave a file system's extents
  // fragmented, and ext4-DAX falls back from 2 MiB to 4 KiB faults where they are.
  target.target.set_size(0);
  target.target.set_size(settings.size);
  fill(target, 0, settings.size);
}

Mapping map_range(const BenchTarget& target, std::uint64_t offset, std::uint64_t length, int prot,
                  bool huge) {
  Mapping map =
      Mapping::map(length, prot, MAP_SHARED, target.target.fd(), static_cast<off_t>(offset));
  if (!huge) {
    check_syscall(::madvise(map.data(), length, MADV_NOHUGEPAGE), "madvise(MADV_NOHUGEPAGE)");
  }
  return map;
}

std::uint64_t device_window(const std::vector<BenchTarget>& targets) {
  for (const BenchTarget& t : targets) {
    vmcoh_window_stats stats{};
    if (t.target.is_device() && ::ioctl(t.target.fd(), VMCOH_IOC_GET_WINDOW_STATS, &stats) == 0) {
      return stats.ranges * VMCOH_RANGE_SIZE;
    }
  }
  return 0;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  if (v.empty()) return 0;
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::uint64_t faults_of_thread() {
  rusage usage{};
  check_syscall(::getrusage(RUSAGE_THREAD, &usage), "getrusage");
  return static_cast<std::uint64_t>(usage.ru_minflt) + static_cast<std::uint64_t>(usage.ru_majflt);
}

}  // namespace vmcoh::bench
