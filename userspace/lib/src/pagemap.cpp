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

std::optional<PageFlags> page_flags(std::uint64_t pfn) {
  if (pfn == 0) return std::nullopt;
  const Fd fd(::open("/proc/kpageflags", O_RDONLY | O_CLOEXEC));
  if (!fd) return std::nullopt;
  PageFlags flags;
  const auto offset = static_cast<off_t>(pfn * sizeof flags.raw);
  if (::pread(fd.get(), &flags.raw, sizeof flags.raw, offset) != sizeof flags.raw) {
    return std::nullopt;
  }
  return flags;
}

std::string describe(const PageFlags& flags) {
  if (!flags.large_folio()) return flags.has(PageFlags::kHuge) ? "hugetlb page" : "small page";
  std::string out = fmt::format("part of a large folio ({}",
                                flags.has(PageFlags::kCompoundHead) ? "head" : "tail");
  if (flags.has(PageFlags::kThp)) out += ", THP";
  if (flags.has(PageFlags::kHuge)) out += ", hugetlb";
  return out + ")";
}

}  // namespace vmcoh
