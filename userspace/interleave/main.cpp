// vmcoh-interleave: drives each seed diagram as one exact interleaving, with the module's hold
// points, and judges every repetition's outcome.  Against the safe module every repetition of
// every interleaving is legal; against an unsafe variant (insmod vmcoh.ko test_hooks=1
// unsafe=NAME) the interleaving that targets it is a violation on every repetition.
//
// Exit status: 0 no violation, 1 a violation (or a side stuck in the kernel), 2 a setup error or
// a repetition that could not be driven.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>
#include <system_error>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <vmcoh/clock.hpp>
#include <vmcoh/error.hpp>
#include <vmcoh/report.hpp>
#include <vmcoh/rng.hpp>
#include <vmcoh/sigbus_probe.hpp>
#include <vmcoh/target.hpp>
#include <vmcoh/test_hooks.hpp>

#include "interleaving.hpp"
#include "scene.hpp"

namespace {

using namespace vmcoh;
using namespace vmcoh::interleave;

constexpr int kExitPassed = 0;
constexpr int kExitViolation = 1;
constexpr int kExitSetup = 2;

void list_interleavings() {
  for (const Interleaving* i : all_interleavings()) {
    fmt::print("{}\n  catches unsafe={}{}\n  seed: {}\n  {}\n", i->name,
               unsafe_variant_name(i->catches), i->uses_hold_points ? "" : " (no hold point)",
               i->seed, i->diagram);
  }
}

struct Tally {
  std::vector<Repetition> repetitions;
  std::size_t violated = 0;
  std::size_t not_driven = 0;
};

Tally run_interleaving(const Interleaving& interleaving, Context& context,
                       std::uint64_t repetitions) {
  Tally tally;
  for (std::uint64_t r = 0; r < repetitions && !context.hung(); ++r) {
    Repetition& rep = tally.repetitions.emplace_back();
    rep.number = r;
    try {
      Scene scene(context, rep);
      interleaving.run(scene);
    } catch (const NotDriven& e) {
      rep.error = fmt::format("not driven: {}", e.what());
    } catch (const Hung& e) {
      rep.error = fmt::format("hung: {}", e.what());
    } catch (const std::exception& e) {
      rep.error = e.what();
    }
    if (!rep.violations.empty()) {
      ++tally.violated;
    } else if (rep.error) {
      ++tally.not_driven;
    }
  }
  return tally;
}

CaseReport make_report(const Interleaving& interleaving, const Tally& tally,
                       std::uint64_t repetitions, std::uint64_t loaded_variant, bool hung) {
  CaseReport report;
  report.name = std::string(interleaving.name);
  const bool targeted = interleaving.catches == loaded_variant;
  const std::size_t run = tally.repetitions.size();
  report.summary = fmt::format(
      "violations {}/{}{}{}  catches unsafe={}{}", tally.violated, run,
      tally.not_driven ? fmt::format(", not driven {}", tally.not_driven) : std::string(),
      run < repetitions ? fmt::format(" (stopped after {} of {})", run, repetitions)
                        : std::string(),
      unsafe_variant_name(interleaving.catches), targeted ? " (the variant loaded)" : "");
  report.status = tally.violated || hung ? CaseReport::Status::failed
                  : tally.not_driven     ? CaseReport::Status::error
                                         : CaseReport::Status::passed;

  nlohmann::json violations = nlohmann::json::array();
  nlohmann::json errors = nlohmann::json::array();
  for (const Repetition& rep : tally.repetitions) {
    for (const Violation& v : rep.violations) {
      report.diagnostics.push_back(fmt::format(
          "repetition {}, page {}: {}: expected {}, observed {}{}", rep.number, kIndex, v.check,
          v.expected, v.observed, v.context.empty() ? "" : " [" + v.context + "]"));
      violations.push_back({{"repetition", rep.number},
                            {"page", kIndex},
                            {"check", v.check},
                            {"expected", v.expected},
                            {"observed", v.observed},
                            {"context", v.context}});
    }
    if (rep.error) {
      report.diagnostics.push_back(fmt::format("repetition {}: {}", rep.number, *rep.error));
      errors.push_back({{"repetition", rep.number}, {"error", *rep.error}});
    }
  }
  report.details = {{"interleaving", interleaving.name},
                    {"seed", interleaving.seed},
                    {"catches", unsafe_variant_name(interleaving.catches)},
                    {"catches_number", interleaving.catches},
                    {"uses_hold_points", interleaving.uses_hold_points},
                    {"repetitions", tally.repetitions.size()},
                    {"violations", tally.violated},
                    {"not_driven", tally.not_driven},
                    {"legal", tally.repetitions.size() - tally.violated - tally.not_driven},
                    {"violation_records", violations},
                    {"errors", errors}};
  return report;
}

std::uint64_t run_id_from_time() {
  return mix64(monotonic_ns() ^ (static_cast<std::uint64_t>(::getpid()) << 32));
}

}  // namespace

static int run_main(int argc, char** argv) {
  std::vector<std::string> names;
  std::uint64_t repetitions = 20;
  std::string format = "text";
  std::string device_path = VMCOH_DEVICE_PATH;
  bool list = false;

  std::vector<std::string> known;
  for (const Interleaving* i : all_interleavings()) known.emplace_back(i->name);

  CLI::App app{
      "vmcoh-interleave: drives each seed race as one exact interleaving with the module's hold "
      "points (test_hooks=1), and checks that its outcome is legal."};
  app.add_option("--interleaving", names, "an interleaving to run (repeatable; default: all)")
      ->check(CLI::IsMember(known));
  app.add_option("--repeat", repetitions, "repetitions of each interleaving")
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{100000}))
      ->capture_default_str();
  app.add_option("--format", format, "report format")
      ->check(CLI::IsMember({"text", "tap", "json"}))
      ->capture_default_str();
  app.add_option("--device", device_path, "the vmcoh device node")->capture_default_str();
  bool targeted = false;
  app.add_flag("--targeted", targeted,
               "only the interleavings that target the loaded module's unsafe variant (with the "
               "safe module: all of them)");
  app.add_flag("--list", list, "list the interleavings and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? kExitPassed : kExitSetup;
  }
  if (list) {
    list_interleavings();
    return kExitPassed;
  }

  std::vector<const Interleaving*> selected;
  if (names.empty()) {
    const auto all = all_interleavings();
    selected.assign(all.begin(), all.end());
  } else {
    for (const std::string& name : names) selected.push_back(find_interleaving(name));
  }

  std::optional<Target> target;
  vmcoh_info info{};
  try {
    target.emplace(Target::open(device_path));
    if (!target->is_device()) {
      fmt::print(stderr, "vmcoh-interleave: {} is not a vmcoh device\n", device_path);
      return kExitSetup;
    }
    info = *target->info();
  } catch (const std::system_error& e) {
    fmt::print(
        stderr, "vmcoh-interleave: {}{}\n", e.what(),
        e.code() == std::errc::no_such_file_or_directory ? " (is the vmcoh module loaded?)" : "");
    return kExitSetup;
  }
  if (info.block_size != kPageSize) {
    fmt::print(stderr, "vmcoh-interleave: block size {} differs from the page size {}\n",
               info.block_size, kPageSize);
    return kExitSetup;
  }
  if (targeted && info.unsafe != 0) {
    std::erase_if(selected, [&](const Interleaving* i) { return i->catches != info.unsafe; });
    if (selected.empty()) {
      fmt::print(stderr, "vmcoh-interleave: no interleaving targets unsafe={}\n",
                 unsafe_variant_name(info.unsafe));
      return kExitSetup;
    }
  }
  const bool hooks = (info.features & VMCOH_FEATURE_TEST_HOOKS) != 0;
  std::vector<std::string> need_hooks;
  for (const Interleaving* i : selected) {
    if (i->uses_hold_points) need_hooks.emplace_back(i->name);
  }
  if (!hooks && !need_hooks.empty()) {
    fmt::print(stderr,
               "vmcoh-interleave: {} has no hold points (GET_INFO.features lacks "
               "VMCOH_FEATURE_TEST_HOOKS): load the module with test_hooks=1, e.g. `insmod "
               "vmcoh.ko test_hooks=1`; {} need(s) them\n",
               device_path, fmt::join(need_hooks, ", "));
    return kExitSetup;
  }
  install_sigbus_probe();

  const std::uint64_t original_size = info.size;
  const std::uint64_t run_id = run_id_from_time();
  const std::string variant(unsafe_variant_name(info.unsafe));
  const std::string banner = fmt::format(
      "vmcoh-interleave: {} (module unsafe={}, test hooks {}), {} repetition(s) per "
      "interleaving, page {} of {}",
      device_path, variant, hooks ? "on" : "off", repetitions, kIndex, kPages);
  const nlohmann::json run_info = {{"tool", "vmcoh-interleave"},
                                   {"device", device_path},
                                   {"module_unsafe", variant},
                                   {"module_unsafe_number", info.unsafe},
                                   {"test_hooks", hooks},
                                   {"repetitions", repetitions},
                                   {"page", kIndex},
                                   {"pages", kPages},
                                   {"run_id", run_id}};
  const std::map<std::string, ReportFormat> formats = {
      {"text", ReportFormat::text}, {"tap", ReportFormat::tap}, {"json", ReportFormat::json}};

  // The context (and its two side threads) is never destroyed if a side hung: see std::_Exit.
  const auto context = std::make_unique<Context>(std::move(*target), run_id);
  Reporter reporter(std::cout, formats.at(format), run_info, banner);
  reporter.begin(selected.size());
  bool any_violation = false;
  bool any_error = false;
  for (const Interleaving* interleaving : selected) {
    if (context->hung()) {
      reporter.add({std::string(interleaving->name),
                    CaseReport::Status::failed,
                    "not run",
                    {"not run: a side of an earlier interleaving is stuck in the kernel"},
                    {{"interleaving", interleaving->name}, {"not_run", true}}});
      any_violation = true;
      continue;
    }
    const Tally tally = run_interleaving(*interleaving, *context, repetitions);
    const CaseReport report =
        make_report(*interleaving, tally, repetitions, info.unsafe, context->hung());
    any_violation = any_violation || report.status == CaseReport::Status::failed;
    any_error = any_error || report.status == CaseReport::Status::error;
    reporter.add(report);
  }
  reporter.finish();

  const int status = any_violation ? kExitViolation : any_error ? kExitSetup : kExitPassed;
  if (context->hung()) {
    std::cout.flush();
    static_cast<void>(std::fflush(nullptr));
    std::_Exit(status);
  }
  try {
    context->target().set_size(original_size);
  } catch (const std::exception& e) {
    fmt::print(stderr, "vmcoh-interleave: restoring the size: {}\n", e.what());
  }
  return status;
}

int main(int argc, char** argv) {
  return vmcoh::main_guard("vmcoh-interleave", run_main, argc, argv, kExitSetup);
}
