// What a race scenario is: a setup that brings the target into a known state, a set of actors
// (writers that change pages and publish their history, readers that sample pages and judge each
// read with the oracle), and a report.  Each scenario lives in its own file and is registered in
// the table of scenarios.cpp; runner.cpp runs any of them the same way, with threads or processes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <vmcoh/actors.hpp>
#include <vmcoh/rng.hpp>
#include <vmcoh/target.hpp>

#include "shared_state.hpp"

namespace vmcoh::race {

// The refault scenarios race on this many pages unless --hot-pages says otherwise.
inline constexpr std::size_t kDefaultHotPages = 2;

struct RunConfig {
  std::filesystem::path target = VMCOH_DEVICE_PATH;
  ActorMode mode = ActorMode::threads;
  std::uint64_t seed = 0;
  std::size_t pages = 256;
  std::size_t readers = 2;
  std::size_t writers = 1;
  std::size_t hot_pages = kDefaultHotPages;  // the pages the refault scenarios race on
  std::optional<double> duration_s;          // run for this long, or
  std::optional<std::uint64_t> iterations;   // until the writers made this many operations
  double timeout_s = 0;                      // wall-clock bound of one scenario run
  bool stop_on_violation = false;            // end a run at its first violation
  bool verbose = false;
  std::filesystem::path scratch;  // --scratch: where scratch files go; empty for the default

  // Where scratch files go (pin-vs-punch's O_DIRECT and io_uring sources): --scratch, else the
  // directory of a regular-file target, else /tmp.
  [[nodiscard]] std::filesystem::path scratch_dir() const;
  // Where copy_file_range's source goes: beside a regular-file target, since copies between
  // filesystems may be refused (EXDEV); else scratch_dir().
  [[nodiscard]] std::filesystem::path copy_source_dir() const;

  // Distinct per scenario and mode, so stamps left by another run are foreign.
  [[nodiscard]] std::uint64_t run_id(std::string_view scenario) const noexcept;
  // The command line that runs this scenario again with the same schedule.
  [[nodiscard]] std::string replay_command(std::string_view scenario) const;
};

// What an actor's body works with.  Built inside the actor (after the fork, for a process).
class ActorEnv {
 public:
  ActorEnv(const RunConfig& config, const SharedState& shared, std::string_view scenario,
           std::size_t actor, std::size_t role_index, std::size_t hot_slot, std::uint64_t quota);

  [[nodiscard]] const RunConfig& config() const noexcept { return config_; }
  [[nodiscard]] const SharedState& shared() const noexcept { return shared_; }
  [[nodiscard]] std::uint64_t run_id() const noexcept { return run_id_; }
  [[nodiscard]] std::size_t actor() const noexcept { return actor_; }
  // The actor's index among those of its role (writer 0, writer 1, ...).
  [[nodiscard]] std::size_t role_index() const noexcept { return role_index_; }
  // A writing actor's slot in SharedState's hot pages.
  [[nodiscard]] std::size_t hot_slot() const noexcept { return hot_slot_; }
  [[nodiscard]] Rng& rng() noexcept { return rng_; }

  // Each actor opens the target itself: its own descriptor, its own mappings.
  [[nodiscard]] Target open_target() const;
  // Declares the actor ready and waits until every actor is.
  void start() const;
  [[nodiscard]] bool stopping() const noexcept;
  // Writers: true while the run goes on and the writer's share of --iterations is not used up.
  [[nodiscard]] bool keep_writing() const noexcept;

  [[nodiscard]] ActorCounters& counters() noexcept { return counters_; }
  // Copies the local counters to the shared slot (every so often, and at the end).
  void publish_counters() const noexcept;
  // Completes `record` (time, actor), stores it for the parent and counts it.
  void report(ViolationRecord& record);

 private:
  const RunConfig& config_;
  const SharedState& shared_;
  std::uint64_t run_id_;
  std::size_t actor_;
  std::size_t role_index_;
  std::size_t hot_slot_;
  std::uint64_t quota_;
  Rng rng_;
  ActorCounters counters_{};
};

struct ActorSpec {
  std::string role;  // "writer", "reader", "resizer"
  bool writes;       // takes a share of --iterations; the run ends when all such actors are done
  std::function<void(ActorEnv&)> body;
};

class Scenario {
 public:
  virtual ~Scenario() = default;
  [[nodiscard]] virtual std::string_view name() const noexcept = 0;
  [[nodiscard]] virtual std::string_view summary() const noexcept = 0;
  // The seed thread this scenario reproduces.
  [[nodiscard]] virtual std::string_view reproduces() const noexcept = 0;
  // Called in the parent, before any actor, on an object of config.pages holes whose size is
  // published as generation 0.  Brings the target into the scenario's initial state.
  virtual void setup(const Target& target, const SharedState& shared,
                     const RunConfig& config) const = 0;
  // The actors, in spawn order.  The number of hot slots in SharedState is the number of
  // writing actors; writing actor i uses slot i.
  [[nodiscard]] virtual std::vector<ActorSpec> actors(const RunConfig& config) const = 0;
};

// Throws (a setup error) unless config.pages >= minimum.
void require_pages(const RunConfig& config, std::size_t minimum, std::string_view scenario);
// Throws (a setup error) unless minimum <= config.hot_pages <= config.pages.
void require_hot_pages(const RunConfig& config, std::size_t minimum, std::string_view scenario);

[[nodiscard]] std::span<const Scenario* const> all_scenarios();
[[nodiscard]] const Scenario* find_scenario(std::string_view name);

}  // namespace vmcoh::race
