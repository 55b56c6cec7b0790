// mm/truncate.c, commit cd656375f946 ("mm: fix data corruption due to stale mmap reads") and
// 4636e70bb0a8: invalidation must remove the entries before it unmaps.
//
//   punch                                 read fault
//                                         entry lock, block map: block D
//   block map: hole
//   unmap: nothing mapped yet
//   remove entry: waits for the fault
//                                         map D, unlock
//   entry removed, D freed                (D stays mapped: stale, forever)
//
// Removing the entries first, waiting for each locked one, means every PTE built from the old
// block map exists when the unmap runs.  A plain object's block is mapped under its page lock
// rather than its entry lock (kmod/fault.c, "Page locks"), as the page cache maps a folio, and the
// fix is then the page cache's: after the unmap, lock each page and unmap it again if it is mapped
// (truncate_cleanup_folio(); kmod/invalidate.c step 3b, which the broken order skips).  Here A
// parks holding the block's page lock with D read; B's punch runs until it sleeps on that lock
// (or returns, in the broken order); then A goes on.  Once the punch has returned, a load must
// read zeros.
#include <sys/mman.h>

#include "interleaving.hpp"

namespace vmcoh::interleave {

namespace {

struct Sides {
  int fd;
  const std::byte* shared;
  Load a_load;
  int b_err;
};

void run(Scene& s) {
  const Image& data = s.stamp("D, the data punched");
  s.pwrite(data);
  Sides& st = s.keep(Sides{s.fd(), s.map(PROT_READ, MAP_SHARED), {}, 0});

  s.arm(VMCOH_HOLD_FAULT_LOOKED_UP);
  s.a().start([&st] { st.a_load = load_page(st.shared, kIndex); });
  s.wait_parked();

  s.b().start([&st] { st.b_err = punch_page(st.fd, kIndex); });
  const bool b_returned = s.b().wait(kPageLockBound);

  s.release();
  s.join(s.a(), "A's load");
  s.join(s.b(), "B's punch");
  Scene::check_op(st.b_err, "B's punch");
  s.note(b_returned ? "B's punch returned while A was parked"
                    : "B's punch waited for the block A had locked");

  s.expect_words_from("A's load of the page, concurrent with B's punch", st.a_load,
                      {&data, &s.zero()});
  s.expect_exactly("load through A's MAP_SHARED mapping after B's punch returned",
                   load_page(st.shared, kIndex), s.zero());
}

}  // namespace

const Interleaving kUnmapBeforeRemove = {
    "truncate-pagecache-unmap-before-remove",
    "mm/truncate.c cd656375f946, 4636e70bb0a8",
    VMCOH_UNSAFE_UNMAP_BEFORE_REMOVE,
    true,
    "page written (D), not mapped; A read-faults it, parks at FAULT_LOOKED_UP holding its page "
    "lock; B punches until it sleeps on that lock; A goes on; a load after the punch must read "
    "zeros",
    run,
};

}  // namespace vmcoh::interleave
