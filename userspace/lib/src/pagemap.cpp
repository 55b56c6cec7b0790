#include <fcntl.h>
#include <unistd.h>

#include <cstdint>

#include <fmt/format.h>

#include <vmcoh/error.hpp>
#include <vmcoh/fd.hpp>
#include <vmcoh/pagemap.hpp>

namespace vmcoh {

PagemapEntry pagemap_entry(const volatile void* address) {
  const Fd fd = Fd::open("/proc/self/pagemap", O_RDONLY);
  const auto page_size = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto offset = static_cast<off_t>(reinterpret_cast<std::uintptr_t>(address) / page_size *
                                         sizeof(std::uint64_t));
  PagemapEntry entry;
  const ssize_t n = check_syscall(::pread(fd.get(), &entry.raw, sizeof entry.raw, offset),
                                  "pread /proc/self/pagemap");
  if (static_cast<std::size_t>(n) != sizeof entry.raw) entry.raw = 0;
  return entry;
}

std::string describe(const PagemapEntry& entry) {
  if (entry.swapped()) return "swapped out";
  if (!entry.present()) return "no PTE";
  return fmt::format("PTE to pfn {:#x} ({}{})", entry.pfn(),
                     entry.file_or_shared() ? "file page" : "anonymous page",
                     entry.exclusive() ? ", exclusive" : "");
}

}  // namespace vmcoh
