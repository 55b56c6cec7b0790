// linux-mm 2017 (seeds/linux-mm-2017-dax-write-vs-fault.txt): "everyone expects standard
// read(2) and write(2) to be completely coherent with mmap(2)"; write(2) that allocates blocks
// invalidates so mmap readers see it.
//
// A hole read through a shared mapping maps the zero page; a write(2) that fills the hole must
// take it out of the page tables.  No hold point is needed - the bug is in what one write(2)
// does - so the steps run one after the other: read-fault the hole, pwrite() the page, and load
// it again through the same mapping, which must show the data.
#include <sys/mman.h>

#include "interleaving.hpp"

namespace vmcoh::interleave {

namespace {

void run(Scene& s) {
  const std::byte* shared = s.map(PROT_READ, MAP_SHARED);
  s.require_exactly("the hole through a MAP_SHARED mapping before the pwrite()",
                    load_page(shared, kIndex), s.zero());

  const Image& data = s.stamp("the data written");
  s.pwrite(data);

  s.expect_exactly("load through the same MAP_SHARED mapping after pwrite() returned",
                   load_page(shared, kIndex), data);
}

}  // namespace

const Interleaving kWriteNoInvalidate = {
    "linux-mm-2017-write-no-invalidate",
    "linux-mm-2017-dax-write-vs-fault (write(2) invalidates what it allocates)",
    VMCOH_UNSAFE_WRITE_NO_INVALIDATE,
    false,
    "read-fault a hole through MAP_SHARED (zero page mapped); pwrite() the page; a load through "
    "the same mapping must see the data",
    run,
};

}  // namespace vmcoh::interleave
