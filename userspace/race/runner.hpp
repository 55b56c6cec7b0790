// Runs one scenario in one mode: prepares the object, sets the scenario up, starts its actors,
// lets them race for the configured duration (or number of operations), stops them, and
// collects what they counted and the violations they found.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <vmcoh.h>
#include <vmcoh/actors.hpp>
#include <vmcoh/report.hpp>
#include <vmcoh/target.hpp>

#include "scenario.hpp"
#include "shared_state.hpp"

namespace vmcoh::race {

struct ScenarioRun {
  std::string scenario;
  ActorMode mode = ActorMode::threads;
  std::uint64_t run_id = 0;
  CaseReport::Status status = CaseReport::Status::passed;
  std::vector<std::string> problems;  // setup errors and actors that did not finish
  ActorCounters totals{};
  std::vector<ActorCounters> per_actor;  // in the order of `actors`
  std::uint64_t violations = 0;
  std::vector<ViolationRecord> records;  // the first kMaxRecordedViolations
  std::vector<ActorOutcome> actors;
  double seconds = 0;
  bool stopped_by_timeout = false;
  std::optional<double> first_violation_s;  // seconds from the start of the race to the first
  bool stopped_on_violation = false;        // --stop-on-violation ended the run
  // The device's event counters over the race (GET_STATS after minus before); nullopt for a file.
  std::optional<vmcoh_stats> device_stats;
  std::uint64_t start_ns = 0;  // monotonic_ns() at the start of the race: op log times are relative
  TargetKind target_kind = TargetKind::device;
  // The optional methods probed in setup, and whether the target took each.
  std::vector<SharedState::MethodReport> methods;
};

[[nodiscard]] ScenarioRun run_scenario(const Scenario& scenario, const RunConfig& config);

}  // namespace vmcoh::race
