// vmcoh-race: proves that page faults racing with write(2), hole punches and truncation never
// expose stale data, on /dev/vmcoh or (as a reference) on a regular file.
//
// Exit status: 0 no violation, 1 a violation (or an actor that crashed or hung), 2 a setup error.
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <vmcoh/actors.hpp>
#include <vmcoh/error.hpp>
#include <vmcoh/report.hpp>
#include <vmcoh/rng.hpp>
#include <vmcoh/target.hpp>
#include <vmcoh/test_hooks.hpp>

#include "race_report.hpp"
#include "runner.hpp"
#include "scenario.hpp"

namespace {

using namespace vmcoh;
using namespace vmcoh::race;

constexpr int kExitPassed = 0;
constexpr int kExitViolation = 1;
constexpr int kExitSetup = 2;

constexpr double kDefaultDuration = 10.0;
constexpr double kIterationsTimeout = 600.0;

std::uint64_t seed_from_time() {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  return mix64(static_cast<std::uint64_t>(
                   std::chrono::duration_cast<std::chrono::nanoseconds>(now).count()) ^
               static_cast<std::uint64_t>(::getpid()));
}

// The module parameter unsafe=NAME that vmcoh_info.unsafe reports (uapi/vmcoh.h).
std::string unsafe_name(std::uint64_t variant) {
  return variant < VMCOH_NR_UNSAFE ? std::string(unsafe_variant_name(variant))
                                   : fmt::format("{}", variant);
}

void list_scenarios() {
  for (const Scenario* s : all_scenarios()) {
    fmt::print("{:<20} {}\n{:<20} reproduces: {}\n", s->name(), s->summary(), "", s->reproduces());
  }
}

}  // namespace

static int run_main(int argc, char** argv) {
  RunConfig config;
  std::string target = VMCOH_DEVICE_PATH;
  std::vector<std::string> scenario_names;
  std::string mode = "both";
  std::string format = "text";
  double duration = kDefaultDuration;
  std::uint64_t iterations = 0;
  std::optional<std::uint64_t> seed;
  double timeout = 0;
  bool list = false;

  std::vector<std::string> known;
  for (const Scenario* s : all_scenarios()) known.emplace_back(s->name());

  CLI::App app{
      "vmcoh-race: races page faults against write(2), hole punches and truncation, "
      "and proves that no load ever sees stale data."};
  app.add_option("--target", target,
                 "the object: /dev/vmcoh, or a regular file (created if "
                 "missing) as the reference")
      ->capture_default_str();
  app.add_option("--scenario", scenario_names, "a scenario to run (repeatable; default: all)")
      ->check(CLI::IsMember(known));
  app.add_option("--mode", mode, "run actors as threads, as processes, or both")
      ->check(CLI::IsMember({"threads", "processes", "both"}))
      ->capture_default_str();
  CLI::Option* duration_opt =
      app.add_option("--duration", duration, "seconds per scenario per mode")
          ->check(CLI::PositiveNumber)
          ->capture_default_str();
  CLI::Option* iterations_opt =
      app.add_option("--iterations", iterations,
                     "writer operations per scenario per mode (all writing actors together), "
                     "instead of a duration")
          ->check(CLI::PositiveNumber);
  duration_opt->excludes(iterations_opt);
  app.add_option("--seed", seed, "seed of every random choice (default: from the clock; printed)");
  app.add_option(
         "--pages", config.pages,
         "pages in the object (eof-vs-fault: best a multiple of 512, so that the last 2 MiB "
         "region is whole)")
      ->check(CLI::Range(std::size_t{16}, std::size_t{1} << 20))
      ->capture_default_str();
  app.add_option("--readers", config.readers, "reading actors")
      ->check(CLI::Range(std::size_t{1}, std::size_t{64}))
      ->capture_default_str();
  app.add_option("--writers", config.writers, "writing actors (truncate-vs-fault adds a resizer)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{64}))
      ->capture_default_str();
  app.add_option("--hot-pages", config.hot_pages,
                 "pages the refault scenarios race on (the hot set; at most --pages)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 20))
      ->capture_default_str();
  app.add_flag("--stop-on-violation", config.stop_on_violation,
               "end each scenario run at its first violation (first-violation= gives the time)");
  app.add_option("--timeout", timeout,
                 "wall-clock bound of one scenario run in seconds (default: twice the duration "
                 "plus 30, or 600 with --iterations)")
      ->check(CLI::PositiveNumber);
  app.add_option("--scratch", config.scratch,
                 "directory for scratch files: pin-vs-punch's O_DIRECT file (its filesystem must "
                 "pin O_DIRECT buffers: not tmpfs) and io_uring source (default: the target's "
                 "directory, or /tmp for the device)")
      ->check(CLI::ExistingDirectory);
  app.add_option("--format", format, "report format")
      ->check(CLI::IsMember({"text", "tap", "json"}))
      ->capture_default_str();
  app.add_flag("--list", list, "list the scenarios and exit");
  app.add_flag("-v,--verbose", config.verbose, "per-actor counters for every scenario run");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? kExitPassed : kExitSetup;
  }
  if (list) {
    list_scenarios();
    return kExitPassed;
  }

  config.target = target;
  config.seed = seed.value_or(seed_from_time());
  if (*iterations_opt) {
    config.iterations = iterations;
  } else {
    config.duration_s = duration;
  }
  config.timeout_s = timeout > 0         ? timeout
                     : config.duration_s ? 2 * *config.duration_s + 30
                                         : kIterationsTimeout;

  std::vector<const Scenario*> scenarios;
  if (scenario_names.empty()) {
    const auto all = all_scenarios();
    scenarios.assign(all.begin(), all.end());
  } else {
    for (const std::string& name : scenario_names) scenarios.push_back(find_scenario(name));
  }
  std::vector<ActorMode> modes;
  if (mode != "processes") modes.push_back(ActorMode::threads);
  if (mode != "threads") modes.push_back(ActorMode::processes);

  // The target must exist (or be creatable) before anything runs: a missing device is a setup
  // error, reported once.
  std::optional<std::uint64_t> device_size;
  std::optional<vmcoh_info> device_info;
  bool created = false;
  std::string kind;
  try {
    const Target target_check =
        Target::open(config.target, Target::create_policy_for(config.target));
    created = target_check.created();
    kind = to_string(target_check.kind());
    if (target_check.is_device()) {
      device_size = target_check.size();
      device_info = target_check.info();
    }
  } catch (const std::system_error& e) {
    fmt::print(stderr, "vmcoh-race: {}{}\n", e.what(),
               e.code() == std::errc::no_such_file_or_directory &&
                       Target::create_policy_for(config.target) == Target::Create::never
                   ? " (is the vmcoh module loaded?)"
                   : "");
    return kExitSetup;
  }

  // A module loaded with unsafe=NAME runs a deliberately broken protocol: say so up front.
  const std::string unsafe =
      device_info && device_info->unsafe != VMCOH_UNSAFE_NONE
          ? fmt::format(", UNSAFE variant {}", unsafe_name(device_info->unsafe))
          : std::string();
  const std::string banner = fmt::format(
      "vmcoh-race: target {} ({}{}), seed {}, {} pages, {} reader(s), {} writer(s), {} per "
      "scenario per mode",
      config.target.string(), kind, unsafe, config.seed, config.pages, config.readers,
      config.writers,
      config.duration_s ? fmt::format("{:g}s", *config.duration_s)
                        : fmt::format("{} writer ops", *config.iterations));
  const nlohmann::json run_info = {
      {"tool", "vmcoh-race"},
      {"target", config.target.string()},
      {"target_kind", kind},
      {"seed", config.seed},
      {"pages", config.pages},
      {"readers", config.readers},
      {"writers", config.writers},
      {"hot_pages", config.hot_pages},
      {"scratch",
       config.scratch.empty() ? nlohmann::json(nullptr) : nlohmann::json(config.scratch.string())},
      {"stop_on_violation", config.stop_on_violation},
      {"unsafe", device_info ? nlohmann::json(unsafe_name(device_info->unsafe)) : nlohmann::json()},
      {"duration_s", config.duration_s ? nlohmann::json(*config.duration_s) : nlohmann::json()},
      {"iterations", config.iterations ? nlohmann::json(*config.iterations) : nlohmann::json()}};
  const std::map<std::string, ReportFormat> formats = {
      {"text", ReportFormat::text}, {"tap", ReportFormat::tap}, {"json", ReportFormat::json}};
  Reporter reporter(std::cout, formats.at(format), run_info, banner);
  reporter.begin(scenarios.size() * modes.size());

  bool any_failed = false;
  bool any_error = false;
  for (const Scenario* scenario : scenarios) {
    for (const ActorMode m : modes) {
      config.mode = m;
      if (ActorGroup::threads_abandoned()) {
        // A hung thread of an earlier run may still be inside the target: run nothing more.
        reporter.add({fmt::format("{}/{}", scenario->name(), to_string(m)),
                      CaseReport::Status::failed,
                      "not run",
                      {"not run: a thread of an earlier run hung"},
                      {}});
        any_failed = true;
        continue;
      }
      const ScenarioRun run = run_scenario(*scenario, config);
      any_failed = any_failed || run.status == CaseReport::Status::failed;
      any_error = any_error || run.status == CaseReport::Status::error;
      reporter.add(make_case_report(run, config));
    }
  }
  reporter.finish();

  // Leave the device at the size it had (its contents are the test's), and remove a file only if
  // it was ours.  Not after an abandoned thread, which may still be inside the target.
  const int status = any_failed ? kExitViolation : any_error ? kExitSetup : kExitPassed;
  if (ActorGroup::threads_abandoned()) {
    std::cout.flush();
    static_cast<void>(std::fflush(nullptr));
    std::_Exit(kExitViolation);
  }
  try {
    if (device_size) Target::open(config.target).set_size(*device_size);
    if (created) std::filesystem::remove(config.target);
  } catch (const std::exception& e) {
    fmt::print(stderr, "vmcoh-race: cleanup: {}\n", e.what());
  }
  return status;
}

int main(int argc, char** argv) {
  return vmcoh::main_guard("vmcoh-race", run_main, argc, argv, kExitSetup);
}
