// write-vs-fault: write(2) filling holes races with read faults on the same pages.
//
// Reproduces linux-mm 2017, "DAX: write vs fault" (Jan Kara): a read fault finds a hole,
// write(2) allocates the block and finds nothing to invalidate, then the fault maps the zero
// page, which stays mapped after the write returned: loads show zeros where data was written.
//
// Setup: config.pages holes.
// Writers: page p belongs to writer p % W.  Each operation picks one of the writer's pages: a hole
// is filled (pwrite, pwritev or lseek+write), a data page is overwritten, and after a few
// overwrites punched again.  So every hole is refilled and then stays data for several states: a
// zero page left mapped by the race is caught by every later sample of the page, whose window
// then holds only data states.
// Readers: read_object_until_stopped (MAP_SHARED loads, half aimed at the page being written).
// Oracle: judge_content; once a write of generation g returned, loads show >= g, never zero.
#include "page_ops.hpp"
#include "sampler.hpp"
#include "scenario.hpp"

namespace vmcoh::race {

namespace {

// Overwrites between a fill and the next punch.
constexpr std::uint64_t kMinOverwrites = 2;
constexpr std::uint64_t kMaxOverwrites = 5;

void write_fill_punch(ActorEnv& env) {
  const Target target = env.open_target();
  PageWriter writer(env, target);
  const SharedState& shared = env.shared();
  const std::vector<std::size_t> owned =
      owned_chunks(0, shared.pages(), env.config().writers, env.role_index(), 1);
  std::vector<std::uint64_t> overwrites_left(shared.pages(), 0);
  env.start();
  while (env.keep_writing()) {
    const std::size_t page = owned[env.rng().below(owned.size())];
    if (shared.last_kind(page) != StateKind::data) {
      writer.write(page, writer.random_write_method());
      overwrites_left[page] = env.rng().between(kMinOverwrites, kMaxOverwrites);
    } else if (overwrites_left[page] > 0) {
      writer.write(page, writer.random_write_method());
      --overwrites_left[page];
    } else {
      writer.punch(page, 1);
    }
  }
}

class WriteVsFault final : public Scenario {
 public:
  std::string_view name() const noexcept override { return "write-vs-fault"; }
  std::string_view summary() const noexcept override {
    return "write(2) filling holes vs read faults: no zero page may stay mapped over new data";
  }
  std::string_view reproduces() const noexcept override {
    return "linux-mm-2017-dax-write-vs-fault";
  }
  void setup(const Target&, const SharedState&, const RunConfig& config) const override {
    require_pages(config, config.writers, name());
  }
  std::vector<ActorSpec> actors(const RunConfig& config) const override {
    std::vector<ActorSpec> actors;
    for (std::size_t i = 0; i < config.writers; ++i)
      actors.push_back({"writer", true, write_fill_punch});
    for (std::size_t i = 0; i < config.readers; ++i) {
      actors.push_back({"reader", false, read_object_until_stopped});
    }
    return actors;
  }
};

}  // namespace

const Scenario& write_vs_fault() {
  static const WriteVsFault scenario;
  return scenario;
}

}  // namespace vmcoh::race
