// lkml 2006, "smp race fix between invalidate_inode_pages* and do_no_page"
// (seeds/lkml-2006-invalidate-vs-do_no_page.txt):
//
//   truncate                              do_no_page
//                                         i_size check passes
//   i_size = new size
//   unmap: nothing mapped yet
//                                         ->nopage, map the page beyond EOF
//
// The fault checks the size again under its entry lock, after any shrink that could have
// missed it.  Here A parks after the first size check, before any lock; B shrinks the object
// below the page and returns; then A goes on.  A's load, and every later one, must SIGBUS.
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
  s.pwrite(s.stamp("D, the data cut off"));
  Sides& st = s.keep(Sides{s.fd(), s.map(PROT_READ, MAP_SHARED), {}, 0});

  s.arm(VMCOH_HOLD_FAULT_SIZE_CHECKED);
  s.a().start([&st] { st.a_load = load_page(st.shared, kIndex); });
  s.wait_parked();

  s.b().start([&st] { st.b_err = set_size_pages(st.fd, kIndex); });
  s.wait_returned(s.b(), "B's shrink");
  Scene::check_op(st.b_err, "B's shrink");

  s.release();
  s.join(s.a(), "A's load");
  s.join(s.b(), "B's shrink");
  s.note("B's shrink returned while A was parked");

  s.expect_sigbus("A's load of the page, beyond EOF once B's shrink returned", st.a_load);
  s.expect_sigbus("a second load through A's MAP_SHARED mapping, beyond EOF",
                  load_page(st.shared, kIndex));
}

}  // namespace

const Interleaving kTruncateVsNopage = {
    "lkml-2006-truncate-vs-nopage",
    "lkml-2006-invalidate-vs-do_no_page",
    VMCOH_UNSAFE_NO_SIZE_RECHECK,
    true,
    "A faults page i < size, parks at FAULT_SIZE_CHECKED (no lock); B shrinks below i and "
    "returns; A goes on; A's load and a second load must SIGBUS",
    run,
};

}  // namespace vmcoh::interleave
