// truncate-vs-fault: shrinking and regrowing the object races with faults through shared and
// private mappings.
//
// Reproduces lkml 2006, "smp race fix between invalidate_inode_pages* and do_no_page" (Hugh
// Dickins): a fault that looked the page up before the truncation must not install it after;
// and "even COWed areas must SIGBUS": private copies of pages beyond the new size go too.
//
// Setup: the object is config.pages pages; the head [0, pages/2) is never cut, the tail
// [pages/2, pages) is written once (state 1).
// Writers: overwrite head pages (page p belongs to writer p % W), so data writes keep racing too.
// Resizer: owns the tail.  It shrinks the object to a random size in [head, pages] (each cut page
// moves to a TRUNCATED state, its cut counters and the size generation published around the
// call), grows it back, and writes tail pages below the current size, so a shrink usually cuts
// data and a regrown page that is not zero is stale.
// Readers: each maps the object MAP_SHARED and MAP_PRIVATE itself.  Mostly tail pages (half of
// them at the current EOF), through the shared mapping, through the private one (a store of a
// private stamp makes a copy-on-write copy; later loads judge it) and now and then with pread.
// Oracle: judge_extent (after a shrink to S returned, any access at or beyond S raises SIGBUS,
// COWed or not), judge_private (a truncation that cut the page discards the copy, nothing else
// does) and judge_content (below S: zero or a legal stamp; regrown pages read zero).
#include "page_ops.hpp"
#include "sampler.hpp"
#include "scenario.hpp"

namespace vmcoh::race {

namespace {

constexpr std::size_t kMinTailPages = 4;
// Out of 3 resizer operations, one changes the size and two write tail pages.
constexpr std::uint64_t kResizeOneIn = 3;
// Readers: one access in 4 through the private mapping; one in 4 anywhere in the object rather
// than in the tail.
constexpr std::uint64_t kPrivateOneIn = 4;
constexpr std::uint64_t kAnywhereOneIn = 4;

std::size_t head_pages(std::size_t pages) { return pages / 2; }

void overwrite_head(ActorEnv& env) {
  const Target target = env.open_target();
  PageWriter writer(env, target);
  const std::vector<std::size_t> owned =
      owned_chunks(0, head_pages(env.shared().pages()), env.config().writers, env.role_index(), 1);
  env.start();
  while (env.keep_writing()) {
    writer.write(owned[env.rng().below(owned.size())], writer.random_write_method());
  }
}

// Shrinks to a random size in [head, pages] and grows back, and writes tail pages below the
// current size in between, so a shrink usually cuts data and a regrown page that is not zero is
// stale.
void resize(ActorEnv& env) {
  const Target target = env.open_target();
  PageWriter writer(env, target);
  Resizer resizer(env, target, writer);
  Rng& rng = env.rng();
  const std::size_t pages = env.shared().pages();
  const std::size_t head = head_pages(pages);
  env.start();
  while (env.keep_writing()) {
    const std::size_t size = resizer.size_pages();
    if (size == head || rng.chance(1, kResizeOneIn)) {
      std::size_t pages_to = rng.between(head, pages);
      if (pages_to == size) pages_to = size == pages ? head : pages;
      pages_to < size ? resizer.shrink(pages_to) : resizer.grow(pages_to);
    } else {
      writer.write(rng.between(head, size - 1), writer.random_write_method());
    }
  }
}

void read_around_eof(ActorEnv& env) {
  const Target target = env.open_target();
  Sampler sampler(env, target, true);
  const std::size_t pages = env.shared().pages();
  Rng& rng = env.rng();
  env.start();
  while (!env.stopping()) {
    const std::size_t page = rng.chance(1, kAnywhereOneIn)
                                 ? rng.below(pages)
                                 : sampler.pick_page(head_pages(pages), pages);
    if (rng.chance(1, kPreadOneIn)) {
      sampler.pread(page);
    } else if (rng.chance(1, kPrivateOneIn)) {
      sampler.private_access(page);
    } else {
      sampler.shared_load(page);
    }
  }
}

class TruncateVsFault final : public Scenario {
 public:
  std::string_view name() const noexcept override { return "truncate-vs-fault"; }
  std::string_view summary() const noexcept override {
    return "shrink/regrow vs faults through MAP_SHARED and COWed MAP_PRIVATE pages: SIGBUS "
           "beyond EOF, zeros when regrown";
  }
  std::string_view reproduces() const noexcept override {
    return "lkml-2006-invalidate-vs-do_no_page";
  }
  void setup(const Target& target, const SharedState& shared,
             const RunConfig& config) const override {
    require_pages(config, std::max(2 * config.writers, 2 * kMinTailPages), name());
    write_initial_pages(target, shared, config.run_id(name()), head_pages(config.pages),
                        config.pages);
  }
  std::vector<ActorSpec> actors(const RunConfig& config) const override {
    std::vector<ActorSpec> actors;
    for (std::size_t i = 0; i < config.writers; ++i) {
      actors.push_back({"writer", true, overwrite_head});
    }
    actors.push_back({"resizer", true, resize});
    for (std::size_t i = 0; i < config.readers; ++i) {
      actors.push_back({"reader", false, read_around_eof});
    }
    return actors;
  }
};

}  // namespace

const Scenario& truncate_vs_fault() {
  static const TruncateVsFault scenario;
  return scenario;
}

}  // namespace vmcoh::race
