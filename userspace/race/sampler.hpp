// Readers: one reader's view of the object (its own descriptor and mappings) and the sampling
// procedure shared by every scenario.  A sample is
//   load size_done, cuts_done, done (acquire)  ->  the access  ->  acquire fence  ->
//   load begun, cuts_begun, size_begun
// and is then judged by the oracle: whether the access may fault (judge_extent), what a
// MAP_PRIVATE copy may show (judge_private), and which contents are legal (judge_content).
// Violations are recorded with everything needed to understand and replay them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include <vmcoh/mapping.hpp>
#include <vmcoh/oracle.hpp>
#include <vmcoh/stamp.hpp>
#include <vmcoh/target.hpp>

#include "scenario.hpp"

namespace vmcoh::race {

// How a Sampler maps the object MAP_SHARED: wherever mmap() puts it, or at a 2 MiB-aligned
// address over a length rounded up to 2 MiB, so that every aligned 2 MiB of the object may be
// mapped by one PMD (huge-page tmpfs, the device's window).
enum class SharedMap : std::uint8_t { anywhere, pmd_aligned };

class Sampler {
 public:
  // Maps the whole object (config.pages pages) MAP_SHARED read-only and, `with_private`, also
  // MAP_PRIVATE read-write.
  Sampler(ActorEnv& env, const Target& target, bool with_private,
          SharedMap shared_map = SharedMap::anywhere);

  // A quarter of the time the page some writer is changing right now (the race), a quarter the
  // page it changed last (its aftermath), otherwise any page of [first, end).
  [[nodiscard]] std::size_t pick_page(std::size_t first, std::size_t end);

  void shared_load(std::size_t page);
  void pread(std::size_t page);
  // Without a copy of the page (and on a coin toss) a store of a private stamp, which makes one;
  // otherwise a load through the private mapping.
  void private_access(std::size_t page);

  // Zaps this reader's PTE of `page` in its shared mapping (MADV_DONTNEED), so that its next load
  // faults instead of going through a resident PTE.
  void drop_shared(std::size_t page);
  // Maps pages [first, first + count) of the shared mapping afresh: their PTEs go, and so does a
  // page table that only they used, so that the next fault there may install a PMD (a page table
  // left in place keeps a fault from doing so, and MADV_DONTNEED leaves it).  With
  // SharedMap::pmd_aligned the mapping reaches the end of the object's last 2 MiB.
  void remap_shared(std::size_t first, std::size_t count);
  // A cheap look at `page` through the shared mapping: its header words, bracketed like a sample,
  // then compared with the window and sizes around them.  Not judged (the caller samples the page
  // in full to judge it): `suspicious` if what it showed cannot be right (a zero page or older
  // data where the window admits neither, bytes that are no stamp, a SIGBUS within EOF or a load
  // beyond it).  Cheap enough that a reader alternating drop_shared and glance spends its time
  // faulting.
  struct Glance {
    bool suspicious;
    std::uint64_t done;   // of the page, before the load
    std::uint64_t begun;  // after it
    std::uint64_t size_done;
    std::uint64_t size_begun;
    // True if `later` was taken after every operation that had begun by the end of this one had
    // returned: then a stale PTE this glance's fault may have installed looks wrong to `later`.
    [[nodiscard]] bool settled_by(const Glance& later) const noexcept {
      return later.done >= begun && later.size_done >= size_begun;
    }
  };
  [[nodiscard]] Glance glance(std::size_t page);
  // Faults `page` in afresh up to `faults` times (drop_shared, then glance).  When an operation
  // raced a fault, the PTE that fault installed is glanced at again, without dropping it, until
  // the operation has returned (at most kSettleGlances times), since only then does a stale PTE
  // look wrong.  A suspicious glance ends the faulting; then the page is sampled in full
  // `1 + linger` times through the PTE last installed, which judges it.
  void refault(std::size_t page, std::size_t faults, std::size_t linger);

 private:
  struct Reading {
    std::size_t page;
    std::uint64_t offset;
    std::uint64_t done, begun;
    std::uint64_t cuts_done, cuts_begun;
    std::uint64_t size_done, size_begun;
    bool refused;  // SIGBUS, or EOF for pread
  };
  struct Verdict {
    const oracle::Judgement* judgement;
    const oracle::Window* window;
    const oracle::SizeWindow* sizes;
    const Observation* observation;
  };

  template <class Access>
  Reading read(std::size_t page, Access&& access);
  void judge(ReadPath path, oracle::Access access, const Reading& reading);
  void private_store(std::size_t page);
  void tally_sample();
  void report(ReadPath path, const Reading& reading, const Verdict& verdict);
  // Looks at the page at `offset` again right after a violation through `map`.
  [[nodiscard]] Aftermath aftermath(const Mapping& map, std::uint64_t offset);

  ActorEnv& env_;
  const Target& target_;
  Mapping shared_map_;
  Mapping private_map_;
  std::vector<oracle::PrivateCopy> copies_;  // this reader's copy of each page, if any
  std::uint64_t private_generation_ = 0;
  PageImage image_;
};

// A reader of the whole object through its own MAP_SHARED mapping, until the run stops: whole-page
// loads, half of them aimed at a page some writer is changing, and one sample in kPreadOneIn read
// with pread instead, for a light cross-check of the read(2) path.
inline constexpr std::uint64_t kPreadOneIn = 64;
// How many times Sampler::refault glances again at a PTE whose fault raced an operation.
inline constexpr std::size_t kSettleGlances = 64;
void read_object_until_stopped(ActorEnv& env);

}  // namespace vmcoh::race
