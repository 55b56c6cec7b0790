// write-vs-refault: write(2) filling holes and punches race with read faults that readers force,
// on a small hot set of pages: the stress form of write-vs-fault and punch-vs-fault.
//
// write-vs-fault samples mostly through resident PTEs, so a read fault happens only after an
// invalidation, and a fault whose window is a few microseconds wide rarely meets a write.  Here
// every reader zaps its own PTE of the page (MADV_DONTNEED) before each sample, so its loads fault
// again and again on the few pages the writers are changing, and several readers fault the same
// page at once (they queue on its entry lock, which widens the windows of the races that come
// before it).  After each fault the reader keeps loading the page through the PTE that fault
// installed: once the operation it raced has returned, those samples are decisive.  They catch
//  - a zero page mapped over data write(2) had already returned (linux-mm 2017: the block map read
//    before the entry lock, or a write that does not invalidate);
//  - a PTE to a punched block installed after the punch's unmap (mm/truncate.c, cd656375f946:
//    page tables unmapped before the entries are removed): the punched data shows after the punch
//    returned;
//  - a block freed (and poisoned) before it was unmapped: its poison shows through a resident PTE
//    while the punch is in flight.
//
// Setup: config.pages holes; the race is on the hot set [0, --hot-pages).
// Writers: hot page p belongs to writer p % W.  Each operation picks one of the writer's pages: a
// hole is filled (pwrite, pwritev or lseek+write), a data page is overwritten, and after one to
// three overwrites punched again.
// Readers: pick a hot page (half the time one a writer is changing or has just changed), fault it
// in afresh, then load it kLingerLoads more times; a pread now and then.
// Oracle: judge_content, as in write-vs-fault and punch-vs-fault.
#include <unistd.h>

#include "page_ops.hpp"
#include "sampler.hpp"
#include "scenario.hpp"

namespace vmcoh::race {

namespace {

// Overwrites between a fill and the next punch: few, so that punches (and the refill after them)
// come often, but at least one, so that a stale zero page has decisive samples to be seen by.
constexpr std::uint64_t kMinOverwrites = 1;
constexpr std::uint64_t kMaxOverwrites = 3;
// Loads through the PTE a reader's fault installed, after the faulting load.
constexpr std::size_t kLingerLoads = 2;
// Faults per Sampler::refault.
constexpr std::size_t kRefaults = 16;
// How much less CPU a reader asks for than the writers (nice(2)): the writers' operations are the
// other half of every race, so they should run whenever they can.
constexpr int kReaderNice = 10;

void fill_overwrite_punch(ActorEnv& env) {
  const Target target = env.open_target();
  PageWriter writer(env, target);
  const SharedState& shared = env.shared();
  const std::vector<std::size_t> owned =
      owned_chunks(0, env.config().hot_pages, env.config().writers, env.role_index(), 1);
  std::vector<std::uint64_t> overwrites_left(env.config().hot_pages, 0);
  Rng& rng = env.rng();
  env.start();
  while (env.keep_writing()) {
    const std::size_t page = owned[rng.below(owned.size())];
    if (shared.last_kind(page) != StateKind::data) {
      writer.write(page, writer.random_write_method());
      overwrites_left[page] = rng.between(kMinOverwrites, kMaxOverwrites);
    } else if (overwrites_left[page] > 0) {
      writer.write(page, writer.random_write_method());
      --overwrites_left[page];
    } else {
      writer.punch(page, 1);
    }
  }
}

void refault_hot_pages(ActorEnv& env) {
  const Target target = env.open_target();
  Sampler sampler(env, target, false);
  const std::size_t hot = env.config().hot_pages;
  (void)!::nice(kReaderNice);
  env.start();
  while (!env.stopping()) {
    const std::size_t page = sampler.pick_page(0, hot);
    if (env.rng().chance(1, kPreadOneIn)) {
      sampler.pread(page);
    } else {
      sampler.refault(page, kRefaults, kLingerLoads);
    }
  }
}

class WriteVsRefault final : public Scenario {
 public:
  std::string_view name() const noexcept override { return "write-vs-refault"; }
  std::string_view summary() const noexcept override {
    return "write(2) filling holes and punches vs forced read faults on a few hot pages: "
           "no zero page over new data, no punched data, no freed block";
  }
  std::string_view reproduces() const noexcept override {
    return "linux-mm-2017-dax-write-vs-fault (stress)";
  }
  void setup(const Target&, const SharedState&, const RunConfig& config) const override {
    require_hot_pages(config, config.writers, name());
  }
  std::vector<ActorSpec> actors(const RunConfig& config) const override {
    std::vector<ActorSpec> actors;
    for (std::size_t i = 0; i < config.writers; ++i) {
      actors.push_back({"writer", true, fill_overwrite_punch});
    }
    for (std::size_t i = 0; i < config.readers; ++i) {
      actors.push_back({"reader", false, refault_hot_pages});
    }
    return actors;
  }
};

}  // namespace

const Scenario& write_vs_refault() {
  static const WriteVsRefault scenario;
  return scenario;
}

}  // namespace vmcoh::race
