// linux-mm 2017 again (seeds/linux-mm-2017-dax-write-vs-fault.txt), with the store fault as the
// writer that fills the hole: "a DAX read fault maps the zero page for a hole just as write(2)
// allocates the block".  Here the block is allocated by a store fault, and write(2) comes second:
//
//   A - store fault on the hole           B - write(2), then a load through another mapping
//   entry lock; publish block D
//                                         D present: copy into it, no invalidation, return
//                                         load: the zero-page PTE mapped before is still there
//   unmap the zero page                   (zeros, after write(2) returned)
//
// write(2) takes no entry lock, so the store fault must take the zero page out of every mapping
// before it publishes the block, holding the entry lock so none can map it again.  Here a hole is
// read through B's mapping (the zero page), A stores into it and parks at FAULT_ALLOCATED, just
// after publishing; B pwrite()s the page, then loads it through its mapping, and either returns
// (the zero page still mapped) or sleeps on A's entry; then A goes on.  B's load, made after its
// pwrite() returned, must not read zeros.  Two ways in: A's first touch is the store (->fault),
// or A read the hole first and its store write-faults the zero page (->page_mkwrite).
#include <sys/mman.h>

#include "interleaving.hpp"

namespace vmcoh::interleave {

namespace {

struct Sides {
  int fd;
  std::byte* a_map;
  const std::byte* b_map;
  const PageImage* a_data;
  const PageImage* b_data;
  int a_err;
  int b_err;
  Load b_load;
};

void run(Scene& s, bool a_read_first) {
  Sides& st = s.keep(Sides{s.fd(),
                           s.map(PROT_READ | PROT_WRITE, MAP_SHARED),
                           s.map(PROT_READ, MAP_SHARED),
                           nullptr,
                           nullptr,
                           0,
                           0,
                           {}});
  const Image& a_data = s.stamp("A's store");
  const Image& b_data = s.stamp("B's pwrite() data");
  st.a_data = &a_data.page;
  st.b_data = &b_data.page;
  s.require_exactly("the hole through B's MAP_SHARED mapping (the zero page)",
                    load_page(st.b_map, kIndex), s.zero());
  if (a_read_first) {
    s.require_exactly("the hole through A's MAP_SHARED mapping (the zero page)",
                      load_page(st.a_map, kIndex), s.zero());
  }

  s.arm(VMCOH_HOLD_FAULT_ALLOCATED);
  s.a().start([&st] { st.a_err = store_page(st.a_map, kIndex, *st.a_data); });
  s.wait_parked();

  const std::uint64_t waits = s.entry_lock_waits();
  s.b().start([&st] {
    st.b_err = pwrite_page(st.fd, kIndex, *st.b_data);
    st.b_load = load_page(st.b_map, kIndex);
  });
  const Scene::Progress b = s.wait_returned_or_blocked(s.b(), waits, "B's pwrite() and load");

  s.release();
  s.join(s.a(), "A's store");
  s.join(s.b(), "B's pwrite() and load");
  Scene::check_op(st.b_err, "B's pwrite()");
  Scene::check_op(st.a_err, "A's store");
  s.note(b == Scene::Progress::blocked ? "B's load slept on A's entry"
                                       : "B's load returned while A was parked");

  s.expect_words_from("B's load through its MAP_SHARED mapping after its pwrite() returned",
                      st.b_load, {&b_data, &a_data});
  s.expect_exactly("load through B's MAP_SHARED mapping after A's store and B's pwrite()",
                   load_page(st.b_map, kIndex), a_data);
}

void run_fault(Scene& s) { run(s, false); }
void run_mkwrite(Scene& s) { run(s, true); }

}  // namespace

const Interleaving kZeroUnmapAfterPublishFault = {
    "linux-mm-2017-store-fault-vs-write",
    "linux-mm-2017-dax-write-vs-fault (a store fault fills the hole; issue 14, item 2)",
    VMCOH_UNSAFE_ZERO_UNMAP_AFTER_PUBLISH,
    true,
    "B read-faults a hole (zero page); A store-faults it (->fault), parks at FAULT_ALLOCATED; "
    "B pwrite()s the page and loads it through its mapping; A goes on; B's load must not be zeros",
    run_fault,
};

const Interleaving kZeroUnmapAfterPublishMkwrite = {
    "linux-mm-2017-mkwrite-vs-write",
    "linux-mm-2017-dax-write-vs-fault (a store to the zero page fills the hole; issue 14, item 2)",
    VMCOH_UNSAFE_ZERO_UNMAP_AFTER_PUBLISH,
    true,
    "A and B read-fault a hole (zero page); A stores (->page_mkwrite), parks at FAULT_ALLOCATED; "
    "B pwrite()s the page and loads it through its mapping; A goes on; B's load must not be zeros",
    run_mkwrite,
};

}  // namespace vmcoh::interleave
