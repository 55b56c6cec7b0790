// truncate-vs-refault: shrinking and regrowing race with read faults that readers force on the
// last few pages of the object: the stress form of truncate-vs-fault.
//
// Readers zap their own PTE of a page at the EOF (MADV_DONTNEED) and load it again and again, so
// several of them fault the page while a shrink cuts it off; they queue on its entry lock, and a
// fault that checked the size before the shrink and took the lock after it must check the size
// again (lkml 2006, Hugh Dickins: a page mapped beyond EOF after the truncation returned, whose
// loads do not raise SIGBUS).  After each fault the reader looks at the page again through the PTE
// it installed until the shrink has returned.  Readers also keep copy-on-write copies of the
// pages in MAP_PRIVATE mappings, which a shrink must unmap too ("even COWed areas must SIGBUS"),
// and the resizer keeps the tail written, so a shrink frees blocks that readers have mapped: a PTE
// left to one, or a block freed (and poisoned) before it was unmapped, shows through.
//
// Setup: the object is config.pages pages; the tail is its last --hot-pages pages, written once
// (state 1); the head is never touched.
// Resizer (the only writing actor; --writers does not apply): shrinks the object by 1 to
// --hot-pages pages (each cut page moves to a TRUNCATED state, its cut counters and the size
// generation published around the call), grows it back to config.pages, and writes every tail
// page again before the next shrink.
// Readers: pick a tail page (half the time the one the resizer is changing), fault it in afresh
// and look at it until the operation it raced has returned (Sampler::refault); one time in
// kPrivateOneIn a MAP_PRIVATE store or load instead, and now and then a pread.
// Oracle: as in truncate-vs-fault (judge_extent, judge_private, judge_content).
#include <unistd.h>

#include <stdexcept>

#include <fmt/format.h>

#include "page_ops.hpp"
#include "sampler.hpp"
#include "scenario.hpp"

namespace vmcoh::race {

namespace {

// Faults per Sampler::refault, and full samples after them.
constexpr std::size_t kRefaults = 16;
constexpr std::size_t kLingerLoads = 2;
// Readers: one access in kPrivateOneIn through the private mapping.
constexpr std::uint64_t kPrivateOneIn = 4;
// How much less CPU a reader asks for than the resizer (nice(2)): the resizer's operations are the
// other half of every race, so it should run whenever it can.
constexpr int kReaderNice = 10;
// Writes below the new EOF after each shrink, before the object grows back.
constexpr std::size_t kDwellWrites = 2;

std::size_t tail_first(const RunConfig& config) { return config.pages - config.hot_pages; }

// shrink, grow, then refill the tail page by page.
void cut_grow_refill(ActorEnv& env) {
  const Target target = env.open_target();
  PageWriter writer(env, target);
  Resizer resizer(env, target, writer);
  const std::size_t pages = env.shared().pages();
  const std::size_t first = tail_first(env.config());
  Rng& rng = env.rng();
  env.start();
  while (env.keep_writing()) {
    resizer.shrink(pages - rng.between(1, env.config().hot_pages));
    // Stay shrunk for a while: a page mapped beyond the new EOF reads zero, legally so once the
    // object has grown back, so the readers must look at it before.
    for (std::size_t i = 0; i < kDwellWrites && env.keep_writing(); ++i) {
      writer.write(resizer.size_pages() - 1, writer.random_write_method());
    }
    if (!env.keep_writing()) break;
    resizer.grow(pages);
    for (std::size_t p = first; p < pages && env.keep_writing(); ++p) {
      writer.write(p, writer.random_write_method());
    }
  }
}

void refault_at_eof(ActorEnv& env) {
  const Target target = env.open_target();
  Sampler sampler(env, target, true);
  const std::size_t pages = env.shared().pages();
  const std::size_t first = tail_first(env.config());
  Rng& rng = env.rng();
  (void)!::nice(kReaderNice);
  env.start();
  while (!env.stopping()) {
    const std::size_t page = sampler.pick_page(first, pages);
    if (rng.chance(1, kPreadOneIn)) {
      sampler.pread(page);
    } else if (rng.chance(1, kPrivateOneIn)) {
      sampler.private_access(page);
    } else {
      sampler.refault(page, kRefaults, kLingerLoads);
    }
  }
}

class TruncateVsRefault final : public Scenario {
 public:
  std::string_view name() const noexcept override { return "truncate-vs-refault"; }
  std::string_view summary() const noexcept override {
    return "shrink/regrow vs forced faults on the last --hot-pages pages, MAP_SHARED and COWed "
           "MAP_PRIVATE: SIGBUS beyond EOF";
  }
  std::string_view reproduces() const noexcept override {
    return "lkml-2006-invalidate-vs-do_no_page (stress)";
  }
  void setup(const Target& target, const SharedState& shared,
             const RunConfig& config) const override {
    require_hot_pages(config, 1, name());
    if (config.hot_pages == config.pages) {
      throw std::runtime_error(fmt::format("{} needs --hot-pages < --pages", name()));
    }
    write_initial_pages(target, shared, config.run_id(name()), tail_first(config), config.pages);
  }
  std::vector<ActorSpec> actors(const RunConfig& config) const override {
    std::vector<ActorSpec> actors;
    actors.push_back({"resizer", true, cut_grow_refill});
    for (std::size_t i = 0; i < config.readers; ++i) {
      actors.push_back({"reader", false, refault_at_eof});
    }
    return actors;
  }
};

}  // namespace

const Scenario& truncate_vs_refault() {
  static const TruncateVsRefault scenario;
  return scenario;
}

}  // namespace vmcoh::race
