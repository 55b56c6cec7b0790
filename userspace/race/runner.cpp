#include "runner.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <map>
#include <memory>
#include <stdexcept>
#include <system_error>
#include <thread>

#include <fmt/format.h>

#include <vmcoh/clock.hpp>
#include <vmcoh/mapping.hpp>
#include <vmcoh/sigbus_probe.hpp>

#include "page_ops.hpp"

namespace vmcoh::race {

namespace {

using Clock = std::chrono::steady_clock;

// How long actors get to open and map the target, and to stop once told to.
constexpr auto kStartTimeout = std::chrono::seconds(30);
constexpr auto kStopGrace = std::chrono::seconds(30);
constexpr auto kPoll = std::chrono::milliseconds(10);

constexpr std::uint64_t hash_name(std::string_view name) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a: stable across builds, unlike std::hash
  for (const char c : name) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
  return h;
}

// The object every scenario starts from: config.pages holes, size published as generation 0.
void prepare_object(const Target& target, const SharedState& shared, const RunConfig& config) {
  if (target.block_size() != kPageSize) {
    throw std::runtime_error(fmt::format("{} has {}-byte blocks; stamps need {}",
                                         target.path().string(), target.block_size(), kPageSize));
  }
  const std::uint64_t size = config.pages * kPageSize;
  if (const auto info = target.info()) {
    if (size > info->max_object_size || size > info->max_size) {
      throw std::runtime_error(fmt::format(
          "--pages {} needs {} bytes; the device allows objects of {} and allocates at most {}",
          config.pages, size, info->max_object_size, info->max_size));
    }
  }
  target.set_size(size);
  // Every scenario's readers map the object MAP_SHARED: a target that refuses it (FUSE's
  // direct_io without FUSE_DIRECT_IO_ALLOW_MMAP) cannot run one.
  static_cast<void>(Mapping::map(kPageSize, PROT_READ, MAP_SHARED, target.fd()));
  probe_write_methods(target, shared, config);
  if (shared.method_supported(OpMethod::punch)) {
    target.punch_hole(0, size);
  } else {  // holes by truncation, where the target cannot punch them (9p)
    target.set_size(0);
    target.set_size(size);
  }
  shared.begin_resize(0, size);
  shared.end_resize(0);
}

// What the actors of one run reference.  If a thread actor must be abandoned, this is kept alive
// (never unmapped) until the program leaves through std::_Exit.
struct RaceResources {
  RaceResources(const RunConfig& config, std::vector<ActorSpec> actor_specs)
      : specs(std::move(actor_specs)),
        shared(config.pages, specs.size(),
               static_cast<std::size_t>(std::count_if(
                   specs.begin(), specs.end(), [](const ActorSpec& s) { return s.writes; }))) {}
  std::vector<ActorSpec> specs;
  SharedState shared;
};

void keep_alive_forever(std::unique_ptr<RaceResources> resources) {
  static std::vector<std::unique_ptr<RaceResources>> abandoned;
  abandoned.push_back(std::move(resources));
}

// Starts every actor of `resources.specs`.  Each builds its ActorEnv, runs its body and
// publishes its counters; a writing actor also says when it is done.
void spawn_actors(ActorGroup& group, const Scenario& scenario, const RunConfig& config,
                  const RaceResources& resources) {
  const SharedState& shared = resources.shared;
  const std::size_t writing = shared.hot_slots();
  const std::uint64_t total_ops = config.iterations.value_or(0);
  std::map<std::string, std::size_t> per_role;
  std::size_t next_hot_slot = 0;
  for (std::size_t i = 0; i < resources.specs.size(); ++i) {
    const ActorSpec& spec = resources.specs[i];
    const std::size_t role_index = per_role[spec.role]++;
    const std::size_t hot_slot = spec.writes ? next_hot_slot++ : 0;
    // --iterations is shared among the writing actors; a duration run has no quota.
    std::uint64_t quota = std::numeric_limits<std::uint64_t>::max();
    if (config.iterations && spec.writes) {
      quota = total_ops / writing + (hot_slot < total_ops % writing ? 1 : 0);
    }
    group.spawn(fmt::format("{}-{}", spec.role, role_index),
                [&config, &shared, &spec, &scenario, i, role_index, hot_slot, quota] {
                  install_sigbus_probe();
                  ActorEnv env(config, shared, scenario.name(), i, role_index, hot_slot, quota);
                  const auto leave = [&] {
                    env.publish_counters();
                    if (spec.writes) atomic(shared.control().writers_running).fetch_sub(1);
                  };
                  try {
                    spec.body(env);
                  } catch (...) {
                    leave();
                    throw;
                  }
                  leave();
                });
  }
}

vmcoh_stats stats_delta(const vmcoh_stats& before, const vmcoh_stats& after) {
  vmcoh_stats d = after;
  d.faults -= before.faults;
  d.mkwrite_faults -= before.mkwrite_faults;
  d.zero_page_maps -= before.zero_page_maps;
  d.zero_page_upgrades -= before.zero_page_upgrades;
  d.sigbus -= before.sigbus;
  d.entry_lock_waits -= before.entry_lock_waits;
  d.invalidations -= before.invalidations;
  d.ranged_unmaps -= before.ranged_unmaps;
  d.entries_removed -= before.entries_removed;
  d.blocks_allocated -= before.blocks_allocated;
  d.blocks_freed -= before.blocks_freed;
  d.holds_parked -= before.holds_parked;
  d.hold_timeouts -= before.hold_timeouts;
  return d;  // blocks_live stays a level
}

}  // namespace

std::uint64_t RunConfig::run_id(std::string_view scenario) const noexcept {
  return mix_keys(seed, mix_keys(hash_name(scenario), static_cast<std::uint64_t>(mode))) | 1;
}

std::filesystem::path RunConfig::scratch_dir() const {
  if (!scratch.empty()) return scratch;
  std::error_code ec;
  if (std::filesystem::is_character_file(target, ec)) return "/tmp";
  return target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
}

std::filesystem::path RunConfig::copy_source_dir() const {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(target, ec)) return scratch_dir();
  return target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
}

std::string RunConfig::replay_command(std::string_view scenario) const {
  const std::string length = duration_s ? fmt::format("--duration {:g}", *duration_s)
                                        : fmt::format("--iterations {}", iterations.value_or(0));
  std::string command = fmt::format(
      "vmcoh-race --target {} --seed {} --scenario {} --mode {} --pages {} --readers {} "
      "--writers {} {}",
      target.string(), seed, scenario, to_string(mode), pages, readers, writers, length);
  if (hot_pages != kDefaultHotPages) command += fmt::format(" --hot-pages {}", hot_pages);
  if (!scratch.empty()) command += fmt::format(" --scratch {}", scratch.string());
  if (stop_on_violation) command += " --stop-on-violation";
  return command;
}

ActorEnv::ActorEnv(const RunConfig& config, const SharedState& shared, std::string_view scenario,
                   std::size_t actor, std::size_t role_index, std::size_t hot_slot,
                   std::uint64_t quota)
    : config_(config),
      shared_(shared),
      run_id_(config.run_id(scenario)),
      actor_(actor),
      role_index_(role_index),
      hot_slot_(hot_slot),
      quota_(quota),
      rng_(mix_keys(config.run_id(scenario), actor)) {}

Target ActorEnv::open_target() const { return Target::open(config_.target); }

void ActorEnv::start() const {
  Control& control = shared_.control();
  atomic(control.ready).fetch_add(1);
  while (atomic(control.go).load(std::memory_order_acquire) == 0 && !stopping()) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

bool ActorEnv::stopping() const noexcept {
  return atomic(shared_.control().stop).load(std::memory_order_relaxed) != 0;
}

bool ActorEnv::keep_writing() const noexcept { return !stopping() && counters_.ops < quota_; }

void ActorEnv::publish_counters() const noexcept {
  ActorCounters& slot = shared_.counters(actor_);
  constexpr auto relaxed = std::memory_order_relaxed;
  atomic(slot.ops).store(counters_.ops, relaxed);
  atomic(slot.samples).store(counters_.samples, relaxed);
  atomic(slot.decisive).store(counters_.decisive, relaxed);
  atomic(slot.undecided).store(counters_.undecided, relaxed);
  atomic(slot.violations).store(counters_.violations, relaxed);
  atomic(slot.refused).store(counters_.refused, relaxed);
  atomic(slot.torn).store(counters_.torn, relaxed);
  atomic(slot.private_stores).store(counters_.private_stores, relaxed);
  atomic(slot.preads).store(counters_.preads, relaxed);
  atomic(slot.glances).store(counters_.glances, relaxed);
  atomic(slot.pinned_pvm).store(counters_.pinned_pvm, relaxed);
  atomic(slot.pinned_dio).store(counters_.pinned_dio, relaxed);
  atomic(slot.pinned_uring).store(counters_.pinned_uring, relaxed);
  atomic(slot.pin_waits).store(counters_.pin_waits, relaxed);
}

void ActorEnv::report(ViolationRecord& record) {
  record.actor = static_cast<std::uint32_t>(actor_);
  record.t_ns = monotonic_ns() - atomic(shared_.control().start_ns).load();
  shared_.record_violation(record);
  ++counters_.violations;
  publish_counters();
  if (config_.stop_on_violation) atomic(shared_.control().stop).store(1);
}

ScenarioRun run_scenario(const Scenario& scenario, const RunConfig& config) {
  ScenarioRun run;
  run.scenario = scenario.name();
  run.mode = config.mode;
  run.run_id = config.run_id(scenario.name());

  auto resources = std::make_unique<RaceResources>(config, scenario.actors(config));
  const SharedState& shared = resources->shared;
  const std::vector<ActorSpec>& specs = resources->specs;
  std::optional<Target> target;
  std::optional<vmcoh_stats> stats_before;
  try {
    target.emplace(Target::open(config.target));
    run.target_kind = target->kind();
    prepare_object(*target, shared, config);
    scenario.setup(*target, shared, config);
    stats_before = target->stats();
  } catch (const std::exception& e) {
    run.status = CaseReport::Status::error;
    run.problems.push_back(fmt::format("setup: {}", e.what()));
    run.methods = shared.probed_methods();
    return run;
  }
  run.methods = shared.probed_methods();

  Control& control = shared.control();
  atomic(control.writers_running).store(shared.hot_slots());

  ActorGroup group(config.mode, specs.size());
  bool started = true;
  try {
    spawn_actors(group, scenario, config, *resources);
  } catch (const std::exception& e) {
    run.problems.push_back(fmt::format("starting actors: {}", e.what()));
    started = false;
  }
  const auto ready_deadline = Clock::now() + kStartTimeout;
  while (started && atomic(control.ready).load() < specs.size()) {
    if (group.any_failed() || Clock::now() >= ready_deadline) {
      run.problems.push_back("actors did not all start");
      started = false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const auto start = Clock::now();
  if (started) {
    run.start_ns = monotonic_ns();
    atomic(control.start_ns).store(run.start_ns);
    atomic(control.go).store(1, std::memory_order_release);
    const auto end = config.duration_s
                         ? start + std::chrono::duration_cast<Clock::duration>(
                                       std::chrono::duration<double>(*config.duration_s))
                         : Clock::time_point::max();
    const auto hard_end = start + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(config.timeout_s));
    for (;;) {
      const auto now = Clock::now();
      if (now >= end || atomic(control.writers_running).load() == 0 || group.any_failed()) break;
      if (atomic(control.stop).load() != 0) break;  // an actor found a violation (--stop-on-...)
      if (now >= hard_end) {
        run.stopped_by_timeout = true;
        break;
      }
      std::this_thread::sleep_for(kPoll);
    }
  }
  atomic(control.stop).store(1);
  run.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  run.actors = group.join(Clock::now() + kStopGrace);

  if (stats_before && !ActorGroup::threads_abandoned()) {
    try {
      run.device_stats = stats_delta(*stats_before, *target->stats());
    } catch (const std::exception&) {
      // Statistics are a diagnostic: their absence fails nothing.
    }
  }
  run.totals = shared.total_counters();
  for (std::size_t i = 0; i < specs.size(); ++i) run.per_actor.push_back(shared.counters(i));
  run.violations = shared.violation_count();
  if (const auto first = shared.first_violation_ns(); first && run.start_ns != 0) {
    run.first_violation_s = static_cast<double>(*first - run.start_ns) / 1e9;
  }
  run.stopped_on_violation = config.stop_on_violation && run.violations > 0;
  run.records = shared.recorded_violations();
  for (const ActorOutcome& outcome : run.actors) {
    if (outcome.status == ActorOutcome::Status::finished) continue;
    run.problems.push_back(
        fmt::format("{} {}: {}", outcome.name, to_string(outcome.status), outcome.detail));
  }
  if (run.violations > 0 || (started && !run.problems.empty())) {
    run.status = CaseReport::Status::failed;
  } else if (!started) {
    run.status = CaseReport::Status::error;  // e.g. an actor could not open or map the target
  }
  if (ActorGroup::threads_abandoned()) keep_alive_forever(std::move(resources));
  return run;
}

}  // namespace vmcoh::race
