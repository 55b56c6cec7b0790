// linux-mm 2017, "dax write vs fault" (seeds/linux-mm-2017-dax-write-vs-fault.txt):
//
//   CPU1 - write(2)                     CPU2 - read fault
//                                       ->iomap_begin() - sees hole
//   ->iomap_begin - allocates blocks
//   invalidate: nothing to invalidate
//                                       add zero page, map it to page tables
//
// The fault reads the block map under its entry lock, so write(2)'s invalidation waits for the
// fault and then unmaps the zero page it installed.  Here A parks right after reading the block
// map (a hole), B's pwrite() fills the hole and either returns (nothing to wait for) or sleeps
// on A's entry; then A goes on.  Once pwrite() has returned, a load must see B's data.
#include <sys/mman.h>

#include "interleaving.hpp"

namespace vmcoh::interleave {

namespace {

struct Sides {
  int fd;
  const std::byte* shared;
  const PageImage* data;
  Load a_load;
  int b_err;
};

void run(Scene& s) {
  Sides& st = s.keep(Sides{s.fd(), s.map(PROT_READ, MAP_SHARED), nullptr, {}, 0});
  const Image& data = s.stamp("B's data");
  st.data = &data.page;

  s.arm(VMCOH_HOLD_FAULT_LOOKED_UP);
  s.a().start([&st] { st.a_load = load_page(st.shared, kIndex); });
  s.wait_parked();

  const std::uint64_t waits = s.entry_lock_waits();
  s.b().start([&st] { st.b_err = pwrite_page(st.fd, kIndex, *st.data); });
  const Scene::Progress b = s.wait_returned_or_blocked(s.b(), waits, "B's pwrite()");

  s.release();
  s.join(s.a(), "A's load");
  s.join(s.b(), "B's pwrite()");
  Scene::check_op(st.b_err, "B's pwrite()");
  s.note(b == Scene::Progress::blocked ? "B's pwrite() slept on A's entry"
                                       : "B's pwrite() returned while A was parked");

  s.expect_words_from("A's load of the page, concurrent with B's pwrite()", st.a_load,
                      {&s.zero(), &data});
  s.expect_exactly("load through A's MAP_SHARED mapping after B's pwrite() returned",
                   load_page(st.shared, kIndex), data);
}

}  // namespace

const Interleaving kWriteVsFault = {
    "linux-mm-2017-write-vs-fault",
    "linux-mm-2017-dax-write-vs-fault",
    VMCOH_UNSAFE_LOOKUP_BEFORE_LOCK,
    true,
    "A read-faults a hole, parks at FAULT_LOOKED_UP; B pwrite()s the page; A goes on; "
    "a load after pwrite() returned must see B's data",
    run,
};

}  // namespace vmcoh::interleave
