// punch-vs-fault: hole punches race with read faults on mapped, faulted pages.
//
// After a punch returns, every mapping must have dropped the old block: loads show zeros (or a
// newer write), never the punched data.  The same invalidation ordering as write-vs-fault
// (entries first, then page tables; see the linux-mm 2017 thread) is what makes this hold.
//
// Setup: every page written once (state 1).
// Writers: pages are dealt in chunks of kChunk pages (chunk c belongs to writer c % W), so a
// range punch never spans two owners.  Each operation picks a chunk and either punches one page,
// punches a range of pages in one call, or writes a page (a hole first, so the chunk stays
// mostly data and most punches remove data that readers have mapped).
// Readers: read_object_until_stopped (MAP_SHARED loads, half aimed at the pages being punched).
// Oracle: judge_content; once a punch returned, loads show zero or newer data.
#include <algorithm>

#include "page_ops.hpp"
#include "sampler.hpp"
#include "scenario.hpp"

namespace vmcoh::race {

namespace {

constexpr std::size_t kChunk = 8;
// Out of 10 operations: single-page punches, range punches, the rest writes.
constexpr std::uint64_t kSinglePunches = 3;
constexpr std::uint64_t kRangePunches = 1;

void punch_and_refill(ActorEnv& env) {
  const Target target = env.open_target();
  PageWriter writer(env, target);
  const SharedState& shared = env.shared();
  const std::vector<std::size_t> chunks =
      owned_chunks(0, shared.pages(), env.config().writers, env.role_index(), kChunk);
  Rng& rng = env.rng();
  env.start();
  while (env.keep_writing()) {
    const std::size_t first = chunks[rng.below(chunks.size())];
    const std::uint64_t roll = rng.below(10);
    if (roll < kSinglePunches) {
      writer.punch(first + rng.below(kChunk), 1);
    } else if (roll < kSinglePunches + kRangePunches) {
      const std::size_t length = rng.between(2, kChunk);
      writer.punch(first + rng.below(kChunk - length + 1), length);
    } else {
      const auto end = first + kChunk;
      std::size_t page = first;
      while (page < end && shared.last_kind(page) == StateKind::data) ++page;
      if (page == end) page = first + rng.below(kChunk);
      writer.write(page, writer.random_write_method());
    }
  }
}

class PunchVsFault final : public Scenario {
 public:
  std::string_view name() const noexcept override { return "punch-vs-fault"; }
  std::string_view summary() const noexcept override {
    return "hole punches (single pages and ranges) vs read faults: punched data never reappears";
  }
  std::string_view reproduces() const noexcept override {
    return "linux-mm-2017-dax-write-vs-fault (invalidation order)";
  }
  void setup(const Target& target, const SharedState& shared,
             const RunConfig& config) const override {
    require_pages(config, config.writers * kChunk, name());
    write_initial_pages(target, shared, config.run_id(name()), 0, config.pages);
  }
  std::vector<ActorSpec> actors(const RunConfig& config) const override {
    std::vector<ActorSpec> actors;
    for (std::size_t i = 0; i < config.writers; ++i) {
      actors.push_back({"writer", true, punch_and_refill});
    }
    for (std::size_t i = 0; i < config.readers; ++i) {
      actors.push_back({"reader", false, read_object_until_stopped});
    }
    return actors;
  }
};

}  // namespace

const Scenario& punch_vs_fault() {
  static const PunchVsFault scenario;
  return scenario;
}

}  // namespace vmcoh::race
