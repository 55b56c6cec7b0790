// mm/truncate.c again, for a store mapped in one trap (kmod/fault.c, fault_store_in_one_trap()):
// the core installs its PTE after ->page_mkwrite let go of the entry lock, holding the block's
// page lock, so a punch's ranged unmap may come before the PTE does.  truncate_inode_pages_range()
// locks each folio after its first unmap and unmaps one found mapped again; kmod/invalidate.c
// step 3b waits for each block's page lock the same way.
//
//   A - store fault on block D                 B - punch
//   ->fault hands D to the core
//   ->page_mkwrite: D locked, entry unlocked
//                                              block map: hole; entries removed; unmap (no PTE)
//                                              free D           (unsafe=no_store_wait)
//   the core: PTE -> D, writable; the store
//   lands in a block that is not the object's
//
// Here D is written and A's mapping has no PTE for it; A stores S and parks at MKWRITE_LOCKED; B
// punches, and returns (the variant) or waits for D's page lock; then A goes on.  Once both have
// returned, A's mapping and pread() must agree.  A's store is 512 word stores, and the punch's
// second unmap may come between any two of them: the first k landed in D, which the punch freed,
// and the rest faulted again into a new, zeroed block.  So both must show k words of zeros, then
// S, for one k from 0 (all of S) to 512 (the hole).  With the variant A's mapping keeps S in a
// freed block while pread() reads the hole.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>

#include <fmt/format.h>

#include "interleaving.hpp"

namespace vmcoh::interleave {

namespace {

// The page A's store leaves if its first `k` words landed in the punched block and the rest in a
// new one: `k` words of zeros, then the rest of `store`.
Image split_store(const Image& store, std::size_t k) {
  Image split{fmt::format("{} words of zeros, then {}", k, store.label), store.page};
  std::fill_n(split.page.words.begin(), k, 0);
  return split;
}

// The `k` for which `seen` is split_store(store, k), if there is one: the first word from which
// on `seen` is `store`, provided every word before it is zero.
std::optional<std::size_t> split_point(const Load& seen, const Image& store) {
  if (seen.sigbus) return std::nullopt;
  std::size_t k = kWordsPerPage;
  while (k > 0 && seen.page.words[k - 1] == store.page.words[k - 1]) --k;
  const bool zeros_before = std::all_of(seen.page.words.begin(), seen.page.words.begin() + k,
                                        [](std::uint64_t w) { return w == 0; });
  return zeros_before ? std::optional(k) : std::nullopt;
}

struct Sides {
  int fd;
  std::byte* a_map;
  const PageImage* a_data;
  int a_err;
  int b_err;
};

void run(Scene& s) {
  const Image& data = s.stamp("D, the data punched");
  const Image& store = s.stamp("S, A's store");
  s.pwrite(data);
  Sides& st = s.keep(Sides{s.fd(), s.map(PROT_READ | PROT_WRITE, MAP_SHARED), &store.page, 0, 0});

  s.arm(VMCOH_HOLD_MKWRITE_LOCKED);
  s.a().start([&st] { st.a_err = store_page(st.a_map, kIndex, *st.a_data); });
  s.wait_parked();

  s.b().start([&st] { st.b_err = punch_page(st.fd, kIndex); });
  const bool b_returned = s.b().wait(kPageLockBound);

  s.release();
  s.join(s.a(), "A's store");
  s.join(s.b(), "B's punch");
  Scene::check_op(st.a_err, "A's store");
  Scene::check_op(st.b_err, "B's punch");
  s.note(b_returned ? "B's punch returned while A's store was parked with its block locked"
                    : "B's punch waited for the block A's store had locked");

  const Load mapped = load_page(st.a_map, kIndex);
  Load read;
  if (::pread(st.fd, read.page.bytes(), kPageSize, static_cast<off_t>(kIndex * kPageSize)) !=
      static_cast<ssize_t>(kPageSize)) {
    throw std::runtime_error("pread of the page after the punch failed");
  }
  const std::optional<std::size_t> k = split_point(mapped, store);
  if (!k) {
    // Not a split of S: no k makes it one, so this records the violation.
    s.expect_exactly("load through A's mapping after A's store and B's punch", mapped,
                     Image{"k words of zeros, then " + store.label + ", for one k", store.page});
    return;
  }
  s.expect_exactly("pread() after A's store and B's punch, against A's mapping", read,
                   *k == 0               ? store
                   : *k == kWordsPerPage ? s.zero()
                                         : split_store(store, *k));
}

}  // namespace

const Interleaving kStoreHandoff = {
    "truncate-pagecache-store-handoff",
    "mm/truncate.c (a folio is locked after the unmap); kmod/invalidate.c step 3b",
    VMCOH_UNSAFE_NO_STORE_WAIT,
    true,
    "page written (D), no PTE; A stores S, parks at MKWRITE_LOCKED; B punches; A goes on; then "
    "A's mapping and pread() agree (k words of zeros, then S, in both)",
    run,
};

}  // namespace vmcoh::interleave
