// /proc/self/pagemap: what this process's page tables hold for one virtual page
// (Documentation/admin-guide/mm/pagemap.rst).  The frame number reads as 0 without CAP_SYS_ADMIN.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace vmcoh {

struct PagemapEntry {
  std::uint64_t raw = 0;

  [[nodiscard]] bool present() const noexcept { return (raw >> 63) & 1; }
  [[nodiscard]] bool swapped() const noexcept { return (raw >> 62) & 1; }
  // A file page or shared anonymous page, as opposed to a private anonymous one (a COW copy).
  [[nodiscard]] bool file_or_shared() const noexcept { return (raw >> 61) & 1; }
  [[nodiscard]] bool exclusive() const noexcept { return (raw >> 56) & 1; }
  [[nodiscard]] std::uint64_t pfn() const noexcept {
    return present() ? raw & ((std::uint64_t{1} << 55) - 1) : 0;
  }
};

// The entry for the page holding `address`; throws std::system_error if pagemap cannot be read.
[[nodiscard]] PagemapEntry pagemap_entry(const volatile void* address);

// "no PTE", or "PTE to pfn 0x1234 (file page, exclusive)".
[[nodiscard]] std::string describe(const PagemapEntry& entry);

// /proc/kpageflags (root only): the flags of one page frame, which say whether it is part of a
// large folio (Documentation/admin-guide/mm/pagemap.rst).
struct PageFlags {
  std::uint64_t raw = 0;

  static constexpr int kCompoundHead = 15;
  static constexpr int kCompoundTail = 16;
  static constexpr int kHuge = 17;  // hugetlbfs
  static constexpr int kThp = 22;

  [[nodiscard]] bool has(int bit) const noexcept { return (raw >> bit) & 1; }
  [[nodiscard]] bool large_folio() const noexcept {
    return has(kCompoundHead) || has(kCompoundTail);
  }
};

// The flags of frame `pfn`, or nullopt if /proc/kpageflags cannot be read (not root, no pfn).
[[nodiscard]] std::optional<PageFlags> page_flags(std::uint64_t pfn);

// "small page", or "part of a large folio (tail, THP)".
[[nodiscard]] std::string describe(const PageFlags& flags);

}  // namespace vmcoh
