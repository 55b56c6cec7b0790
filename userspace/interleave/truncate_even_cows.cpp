// lkml 2006 (seeds/lkml-2006-invalidate-vs-do_no_page.txt): "even COWed areas must SIGBUS";
// truncate_pagecache() unmaps with even_cows.
//
// A private copy is an anonymous page that outlives the object's entry: only a shrink's unmap
// with even_cows takes it out of the page tables.  No hold point is needed - the bug is in what
// one shrink does, not in an interleaving - so the steps run one after the other: store to the
// page through a MAP_PRIVATE mapping (a private copy), shrink below it, and load it again, which
// must SIGBUS, twice.
#include <sys/mman.h>

#include <vmcoh/sigbus_probe.hpp>

#include "interleaving.hpp"

namespace vmcoh::interleave {

namespace {

void run(Scene& s) {
  s.pwrite(s.stamp("D, the object's data"));
  std::byte* priv = s.map(PROT_READ | PROT_WRITE, MAP_PRIVATE);
  const Image& copy = s.stamp("the private copy", kStampPrivate);
  auto* dst = reinterpret_cast<volatile std::uint64_t*>(priv + kIndex * kPageSize);
  if (probe_store(dst, copy.page.words.data(), kWordsPerPage)) {
    throw NotDriven("the store through the MAP_PRIVATE mapping raised SIGBUS");
  }
  s.require_exactly("the private copy before the shrink", load_page(priv, kIndex), copy);

  s.resize(kIndex);

  s.expect_sigbus("load through the MAP_PRIVATE mapping after the shrink returned",
                  load_page(priv, kIndex));
  s.expect_sigbus("a second load through the MAP_PRIVATE mapping", load_page(priv, kIndex));
}

}  // namespace

const Interleaving kTruncateEvenCows = {
    "lkml-2006-truncate-even-cows",
    "lkml-2006-invalidate-vs-do_no_page (even COWed areas must SIGBUS)",
    VMCOH_UNSAFE_NO_EVEN_COWS,
    false,
    "store to page i through MAP_PRIVATE (a private copy); shrink below i; loads of i through "
    "that mapping must SIGBUS",
    run,
};

}  // namespace vmcoh::interleave
