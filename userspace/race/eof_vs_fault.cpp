// eof-vs-fault: an EOF inside the last 2 MiB of the object, where large folios and PMD mappings
// meet it, races with faults just below and just beyond it.
//
// fstests generic/749's pattern, and Linux commit 74207de2ba10 ("mm/memory: do not populate page
// table entries beyond i_size"): huge-page tmpfs gives a file a 2 MiB folio for its last, partial
// 2 MiB, and the faults that map a large folio did not all look at i_size: fault-around
// (filemap_map_pages()) mapped the folio's pages beyond EOF, and finish_fault() the whole folio
// by one PMD, so loads beyond EOF succeeded where they must raise SIGBUS (tests/repro has the
// standalone reproducer).  On /dev/vmcoh the same accesses reach the size checks of the fault
// path: under the entry lock (unsafe=no_size_recheck skips it: a fault that checked the size
// before a shrink maps the page after it), in fault-around, and for a PMD (with a window).  A
// shrink unmaps beyond the new EOF whatever the entries say, so a PMD that a downgrade left
// mapped (unsafe=pmd_downgrade_no_unmap) is reached by punches, not shrinks: the resizer also
// punches pages of the last region while it is whole, and readers make PTE faults into it
// through their private mappings, which downgrade a PMD-mapped region.
//
// Sizes are whole pages: the device takes only block-aligned sizes, and a page cut inside would
// need the oracle to judge a stamp prefix followed by zeros (the stamp's checksum covers the
// whole page), and writes of the EOF page to stop at the EOF byte.
//
// Setup: the object is config.pages pages (best a multiple of 512, so that its last 2 MiB region
// is whole and may be mapped by a PMD); that region, or the whole object if it is smaller, is
// written once (state 1) and is where the EOF moves.
// Resizer (the only writing actor; --writers does not apply): from the whole size, shrinks to a
// size inside the region that is not 2 MiB aligned (and, while whole, punches and rewrites a
// page of the region now and then).  Once shrunk, it either grows back to the whole size and
// writes every regrown page; or empties the region (a shrink to its start), grows to another size
// inside it and writes the pages just below the new EOF, so that huge-page tmpfs allocates a
// 2 MiB folio reaching past EOF again (its first write does); or moves the EOF within the region.
// After each change of size it writes the page below the EOF a few times, so the readers get to
// look at each EOF.
// Readers: each maps the object at a 2 MiB-aligned address (so the region may be mapped by a
// PMD) and, now and then, maps the region afresh (a PMD needs an empty page table).  Mostly, it
// faults the page just below the EOF in again and again (Sampler::refault: fault-around from
// there crosses the EOF) and then loads a page just beyond it; else a page anywhere beyond the
// EOF in the region, a private access in the region (a PTE fault: a PMD downgrade), a page the
// resizer is changing, or a pread.
// Oracle: judge_extent (after a shrink to S returned, a load at or beyond S raises SIGBUS, and a
// pread there reads EOF), judge_private and judge_content (below S: zero or a legal stamp).
#include <unistd.h>

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

#include "page_ops.hpp"
#include "sampler.hpp"
#include "scenario.hpp"

namespace vmcoh::race {

namespace {

constexpr std::size_t kRegionPages = 512;  // 2 MiB
// The region must leave room for sizes that cut it.
constexpr std::size_t kMinRegionPages = 4;
// Writes of the page below the EOF after each change of size; pages written below the EOF after
// the region was emptied (the first allocates the folio).
constexpr std::size_t kDwellWrites = 2;
constexpr std::size_t kBelowEofWrites = 16;
// While whole: one cycle in kPunchOneIn also punches and rewrites a page of the region.
constexpr std::uint64_t kPunchOneIn = 2;
// Readers: faults per refault, full samples after them, how far beyond the EOF "just beyond"
// reaches (a fault-around window of 16 pages), and at what niceness they run.
constexpr std::size_t kRefaults = 8;
constexpr std::size_t kLingerLoads = 1;
constexpr std::size_t kJustBeyond = 16;
constexpr int kReaderNice = 10;

// The last 2 MiB region of an object of `pages` pages: [first, pages).
std::size_t region_first(std::size_t pages) { return (pages - 1) / kRegionPages * kRegionPages; }

class EofMover {
 public:
  explicit EofMover(ActorEnv& env)
      : env_(env),
        target_(env.open_target()),
        writer_(env, target_),
        resizer_(env, target_, writer_),
        pages_(env.shared().pages()),
        first_(region_first(pages_)) {}

  void run() {
    Rng& rng = env_.rng();
    env_.start();
    while (env_.keep_writing()) {
      const std::size_t size = resizer_.size_pages();
      if (size == pages_) {
        if (rng.chance(1, kPunchOneIn)) punch_and_rewrite();
        shrink_to(inside());
      } else {
        switch (rng.below(3)) {
          case 0:
            grow_and_fill(pages_, size);
            break;
          case 1:
            refold();
            break;
          default:
            move_within(size);
            break;
        }
      }
      for (std::size_t i = 0; i < kDwellWrites && resizer_.size_pages() > 0; ++i) {
        if (!env_.keep_writing()) return;
        writer_.write(resizer_.size_pages() - 1, writer_.random_write_method());
      }
    }
  }

 private:
  // A size inside the region, not 2 MiB aligned: (first, pages).
  [[nodiscard]] std::size_t inside() { return env_.rng().between(first_ + 1, pages_ - 1); }

  void shrink_to(std::size_t pages_to) { resizer_.shrink(pages_to); }

  // Grows to `pages_to` and writes every page that came back.
  void grow_and_fill(std::size_t pages_to, std::size_t old_size) {
    resizer_.grow(pages_to);
    for (std::size_t p = old_size; p < pages_to && env_.keep_writing(); ++p) {
      writer_.write(p, writer_.random_write_method());
    }
  }

  // Empties the region, grows to a size inside it and writes the pages just below the new EOF:
  // on huge-page tmpfs the first write allocates a 2 MiB folio that reaches past EOF.
  void refold() {
    if (resizer_.size_pages() > first_) resizer_.shrink(first_);
    const std::size_t size = inside();
    resizer_.grow(size);
    for (std::size_t p = std::max(first_, size - std::min(size, kBelowEofWrites));
         p < size && env_.keep_writing(); ++p) {
      writer_.write(p, writer_.random_write_method());
    }
  }

  // Another size inside the region: a further shrink, or a partial regrowth.
  void move_within(std::size_t size) {
    const std::size_t to = inside();
    if (to < size) return shrink_to(to);
    if (to > size) grow_and_fill(to, size);
  }

  // A punch of a page of the whole region and its rewrite: a PMD that a downgrade left mapped
  // keeps showing the punched data.
  void punch_and_rewrite() {
    const std::size_t page = env_.rng().between(first_, pages_ - 1);
    writer_.punch(page, 1);
    if (env_.keep_writing()) writer_.write(page, writer_.random_write_method());
  }

  ActorEnv& env_;
  const Target target_;
  PageWriter writer_;
  Resizer resizer_;
  std::size_t pages_;
  std::size_t first_;
};

void move_eof(ActorEnv& env) { EofMover(env).run(); }

void read_across_eof(ActorEnv& env) {
  const Target target = env.open_target();
  Sampler sampler(env, target, true, SharedMap::pmd_aligned);
  const SharedState& shared = env.shared();
  const std::size_t pages = shared.pages();
  const std::size_t first = region_first(pages);
  Rng& rng = env.rng();
  (void)!::nice(kReaderNice);
  env.start();
  while (!env.stopping()) {
    const std::size_t eof = std::min<std::size_t>(shared.latest_size() / kPageSize, pages);
    const std::uint64_t roll = rng.below(16);
    if (roll == 0) sampler.remap_shared(first, kRegionPages);  // the whole 2 MiB, mapped
    if (roll < 8) {
      if (eof > 0) sampler.refault(eof - 1, kRefaults, kLingerLoads);
      if (eof < pages) sampler.shared_load(std::min(pages - 1, eof + rng.below(kJustBeyond)));
    } else if (roll < 11) {
      if (eof < pages) sampler.shared_load(rng.between(eof, pages - 1));
    } else if (roll < 13) {
      sampler.private_access(rng.between(first, pages - 1));
    } else if (roll < 15) {
      sampler.shared_load(sampler.pick_page(first, pages));
    } else {
      sampler.pread(std::min(pages - 1, (eof > 0 ? eof - 1 : 0) + rng.below(2)));
    }
  }
}

class EofVsFault final : public Scenario {
 public:
  std::string_view name() const noexcept override { return "eof-vs-fault"; }
  std::string_view summary() const noexcept override {
    return "an EOF moved inside the last 2 MiB (--pages best a multiple of 512) vs faults "
           "around it, through 2 MiB-aligned mappings: SIGBUS beyond EOF, even for large folios";
  }
  std::string_view reproduces() const noexcept override {
    return "fstests generic/749, Linux 74207de2ba10 (huge-page tmpfs beyond EOF)";
  }
  void setup(const Target& target, const SharedState& shared,
             const RunConfig& config) const override {
    const std::size_t first = region_first(config.pages);
    if (config.pages - first < kMinRegionPages) {
      throw std::runtime_error(fmt::format(
          "{} needs the last 2 MiB region to hold at least {} pages; --pages {} leaves {} (use a "
          "multiple of 512)",
          name(), kMinRegionPages, config.pages, config.pages - first));
    }
    write_initial_pages(target, shared, config.run_id(name()), first, config.pages);
  }
  std::vector<ActorSpec> actors(const RunConfig& config) const override {
    std::vector<ActorSpec> actors;
    actors.push_back({"resizer", true, move_eof});
    for (std::size_t i = 0; i < config.readers; ++i) {
      actors.push_back({"reader", false, read_across_eof});
    }
    return actors;
  }
};

}  // namespace

const Scenario& eof_vs_fault() {
  static const EofVsFault scenario;
  return scenario;
}

}  // namespace vmcoh::race
