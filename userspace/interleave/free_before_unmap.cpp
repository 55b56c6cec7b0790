// mm/truncate.c: a page leaves the page cache only after it is unmapped (truncate_pagecache:
// unmap, truncate, unmap); kmod/invalidate.c frees blocks last for the same reason.
//
//   punch                                 a task with the page mapped
//   block map: hole, entries removed
//   free the block (reused, poisoned)
//                                         load: reads the freed block
//   unmap
//
// Here the page is mapped (PTE present) through a shared mapping; B's punch parks before its
// unmap; the driver loads the page through the still-present PTE, where D (the punch is not
// done) or zeros are legal and a freed block - poison - never is.  Then B goes on; once the
// punch has returned, loads read zeros.
#include <sys/mman.h>

#include "interleaving.hpp"

namespace vmcoh::interleave {

namespace {

struct Sides {
  int fd;
  int b_err;
};

void run(Scene& s) {
  const Image& data = s.stamp("D, the data punched");
  s.pwrite(data);
  const std::byte* shared = s.map(PROT_READ, MAP_SHARED);
  s.require_exactly("the page through a MAP_SHARED mapping before the punch",
                    load_page(shared, kIndex), data);
  Sides& st = s.keep(Sides{s.fd(), 0});

  s.arm(VMCOH_HOLD_INVAL_BEFORE_UNMAP, VMCOH_HOLD_OP_PUNCH);
  s.b().start([&st] { st.b_err = punch_page(st.fd, kIndex); });
  s.wait_parked();

  const Load during = load_page(shared, kIndex);

  s.release();
  s.join(s.b(), "B's punch");
  Scene::check_op(st.b_err, "B's punch");
  s.note("B's punch parked before its unmap while the page was loaded");

  s.expect_words_from("load through the mapped PTE while B's punch is parked before its unmap",
                      during, {&data, &s.zero()});
  s.expect_exactly("load through the MAP_SHARED mapping after B's punch returned",
                   load_page(shared, kIndex), s.zero());
}

}  // namespace

const Interleaving kFreeBeforeUnmap = {
    "truncate-pagecache-free-before-unmap",
    "mm/truncate.c (unmap before the page is freed); kmod/invalidate.c step 4",
    VMCOH_UNSAFE_FREE_BEFORE_UNMAP,
    true,
    "page written (D) and mapped; B punches, parks at INVAL_BEFORE_UNMAP; a load through the "
    "PTE must read D or zeros, never a freed block; after the punch, zeros",
    run,
};

}  // namespace vmcoh::interleave
