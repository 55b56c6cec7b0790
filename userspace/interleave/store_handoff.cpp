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
// returned, A's mapping and pread() must agree: the store landed in D before the punch's second
// unmap (zeros in both) or faulted again into a new block (S in both).  With the variant A's
// mapping keeps S in a freed block while pread() reads the hole.
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>

#include "interleaving.hpp"

namespace vmcoh::interleave {

namespace {

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
  s.expect_words_from("load through A's mapping after A's store and B's punch", mapped,
                      {&store, &s.zero()});
  s.expect_exactly("pread() after A's store and B's punch, against A's mapping", read,
                   mapped.page == store.page ? store : s.zero());
}

}  // namespace

const Interleaving kStoreHandoff = {
    "truncate-pagecache-store-handoff",
    "mm/truncate.c (a folio is locked after the unmap); kmod/invalidate.c step 3b",
    VMCOH_UNSAFE_NO_STORE_WAIT,
    true,
    "page written (D), no PTE; A stores S, parks at MKWRITE_LOCKED; B punches; A goes on; then "
    "A's mapping and pread() agree (S in both, or zeros in both)",
    run,
};

}  // namespace vmcoh::interleave
