// vmcoh-bench: the cost of the entry-lock protocol next to tmpfs and ext4-DAX, measured in one
// boot, round after round with the targets interleaved, reported as medians with their spread.
//
// Exit status: 0 done, 2 bad arguments or a target that cannot be used, 1 a workload failed.
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <vmcoh/error.hpp>

#include "bench.hpp"

namespace {

using namespace vmcoh;
using namespace vmcoh::bench;

constexpr int kExitFailed = 1;
constexpr int kExitSetup = 2;

// "NAME=PATH" or "NAME=PATH,huge".
struct TargetSpec {
  std::string name;
  std::string path;
  bool huge = false;
  std::filesystem::path memcg;    // a cgroup v2 directory to run its cells in, if any
  std::vector<std::string> only;  // the workloads it runs, if not all
};

TargetSpec parse_target(const std::string& spec) {
  const auto eq = spec.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size()) {
    throw CLI::ValidationError("--target", "expected NAME=PATH[,huge][,memcg=DIR]: " + spec);
  }
  TargetSpec t{spec.substr(0, eq), spec.substr(eq + 1), false, {}, {}};
  // PATH[,OPTION]...: paths with commas are not supported.
  std::vector<std::string> options;
  for (std::size_t comma; (comma = t.path.rfind(',')) != std::string::npos;) {
    options.push_back(t.path.substr(comma + 1));
    t.path.resize(comma);
  }
  for (const std::string& option : options) {
    if (option == "huge") {
      t.huge = true;
    } else if (option.starts_with("memcg=")) {
      t.memcg = option.substr(6);
    } else if (option.starts_with("only=")) {
      for (std::size_t start = 5, plus; start <= option.size(); start = plus + 1) {
        plus = std::min(option.find('+', start), option.size());
        t.only.push_back(option.substr(start, plus - start));
      }
    } else {
      throw CLI::ValidationError("--target", fmt::format("unknown option {}: {}", option, spec));
    }
  }
  return t;
}

// The cgroup v2 directory this process is in (/proc/self/cgroup's "0::" line).
std::filesystem::path own_cgroup() {
  std::ifstream in("/proc/self/cgroup");
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("0::")) return std::filesystem::path("/sys/fs/cgroup") / line.substr(4);
  }
  throw std::runtime_error("/proc/self/cgroup has no cgroup v2 line");
}

// Moves this process into `dir` for its lifetime, and back where it was.  Memory it charges
// meanwhile - the page cache its reads bring in - is charged to `dir`, and bounded by its
// memory.max; what it charged before stays where it was.
class CgroupVisit {
 public:
  explicit CgroupVisit(const std::filesystem::path& dir) {
    if (dir.empty()) return;
    home_ = own_cgroup();
    enter(dir);
  }
  CgroupVisit(const CgroupVisit&) = delete;
  CgroupVisit& operator=(const CgroupVisit&) = delete;
  ~CgroupVisit() {
    if (home_.empty()) return;
    try {
      enter(home_);
    } catch (const std::exception& e) {
      fmt::print(stderr, "vmcoh-bench: {}\n", e.what());
    }
  }

 private:
  static void enter(const std::filesystem::path& dir) {
    std::ofstream procs(dir / "cgroup.procs");
    procs << ::getpid() << std::flush;
    if (!procs) throw std::runtime_error("cannot join cgroup " + dir.string());
  }
  std::filesystem::path home_;
};

// Every round's measurement of one cell, for one target.
struct Cell {
  std::vector<Measurement> rounds;
};
using Results =
    std::map<std::string, std::map<CellKey, std::map<std::string, Cell>>>;  // workload, key, target

std::vector<double> values_of(const Cell& cell) {
  std::vector<double> v;
  for (const Measurement& m : cell.rounds) v.push_back(m.value);
  return v;
}

std::string kernel_release() {
  utsname u{};
  return ::uname(&u) == 0 ? u.release : "?";
}

nlohmann::json to_json(const Results& results, const std::vector<BenchTarget>& targets,
                       const Settings& settings, std::size_t rounds) {
  nlohmann::json doc = {{"tool", "vmcoh-bench"},
                        {"kernel", kernel_release()},
                        {"cpus", std::thread::hardware_concurrency()},
                        {"size_mb", settings.size >> 20},
                        {"rounds", rounds},
                        {"seconds", settings.seconds}};
  for (const BenchTarget& t : targets) {
    doc["targets"].push_back({{"name", t.name},
                              {"path", t.path.string()},
                              {"kind", to_string(t.target.kind())},
                              {"dax", t.dax},
                              {"huge", t.huge}});
  }
  doc["results"] = nlohmann::json::array();
  for (const Workload& w : all_workloads()) {
    const auto wit = results.find(std::string(w.name));
    if (wit == results.end()) continue;
    for (const auto& [key, per_target] : wit->second) {
      for (const auto& [target, cell] : per_target) {
        const std::vector<double> v = values_of(cell);
        std::map<std::string, double> extra;
        for (const Measurement& m : cell.rounds) {
          for (const auto& [k, x] : m.extra) extra[k] += x / static_cast<double>(v.size());
        }
        doc["results"].push_back({{"workload", w.name},
                                  {"variant", key.variant},
                                  {"target", target},
                                  {"mode", to_string(key.mode)},
                                  {"workers", key.workers},
                                  {"metric", w.metric},
                                  {"unit", w.unit},
                                  {"higher_is_better", w.higher_is_better},
                                  {"rounds", v},
                                  {"median", median(v)},
                                  {"min", *std::min_element(v.begin(), v.end())},
                                  {"max", *std::max_element(v.begin(), v.end())},
                                  {"extra", extra}});
      }
    }
  }
  return doc;
}

void print_text(const Results& results, const std::vector<BenchTarget>& targets) {
  for (const Workload& w : all_workloads()) {
    const auto wit = results.find(std::string(w.name));
    if (wit == results.end()) continue;
    fmt::print("\n{} ({}, median over rounds)\n{:<28}", w.name, w.unit, "variant/mode/workers");
    for (const BenchTarget& t : targets) fmt::print(" {:>14}", t.name);
    fmt::print("\n");
    for (const auto& [key, per_target] : wit->second) {
      fmt::print("{:<28}", fmt::format("{}{}{}/{}", key.variant, key.variant.empty() ? "" : "/",
                                       to_string(key.mode), key.workers));
      for (const BenchTarget& t : targets) {
        const auto c = per_target.find(t.name);
        if (c == per_target.end()) {
          fmt::print(" {:>14}", "-");
        } else {
          fmt::print(" {:>14.6g}", median(values_of(c->second)));
        }
      }
      fmt::print("\n");
    }
  }
}

}  // namespace

static int run_main(int argc, char** argv) {
  std::vector<std::string> target_specs;
  std::vector<std::string> workload_names;
  Settings settings;
  std::uint64_t size_mb = settings.size >> 20;
  std::size_t rounds = 3;
  std::string format = "text";
  bool quick = false;
  settings.max_workers = std::max(1U, std::thread::hardware_concurrency());

  std::vector<std::string> known;
  for (const Workload& w : all_workloads()) known.emplace_back(w.name);

  CLI::App app{
      "vmcoh-bench: fault, invalidation and write(2) costs of /dev/vmcoh next to tmpfs "
      "and ext4-DAX files, measured side by side."};
  app.add_option("--target", target_specs,
                 "NAME=PATH[,huge][,memcg=DIR][,only=W+W...]: an object to measure "
                 "(repeatable; a missing file is created); ',huge' lets the kernel map 2 MiB "
                 "per fault, otherwise mappings are MADV_NOHUGEPAGE; ',memcg=DIR' runs its "
                 "cells in that cgroup v2 directory, whose memory.max then bounds the page "
                 "cache they bring in; ',only=' runs only those workloads on it")
      ->required();
  app.add_option("--workloads", workload_names, "workloads to run (default: all)")
      ->delimiter(',')
      ->check(CLI::IsMember(known));
  app.add_option("--size-mb", size_mb, "MiB in each object")
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{4096}))
      ->capture_default_str();
  app.add_option("--seconds", settings.seconds, "timed seconds per cell per round")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--rounds", rounds, "rounds; targets are interleaved within each")
      ->check(CLI::Range(std::size_t{1}, std::size_t{100}))
      ->capture_default_str();
  app.add_option("--max-workers", settings.max_workers,
                 "workers of the scaling workloads go 1..N (default: online CPUs)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{64}));
  app.add_option("--format", format, "report format")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  app.add_flag("--quick", quick, "a smoke run: 16 MiB, 0.2 s per cell, 1 round");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : kExitSetup;
  }
  if (quick) {
    size_mb = 16;
    settings.seconds = 0.2;
    rounds = 1;
  }
  settings.size = size_mb << 20;

  std::vector<BenchTarget> targets;
  std::vector<std::uint64_t> original_sizes;
  std::map<std::string, std::filesystem::path> memcgs;
  std::map<std::string, std::vector<std::string>> only;
  try {
    for (const std::string& spec : target_specs) {
      const TargetSpec t = parse_target(spec);
      memcgs[t.name] = t.memcg;
      only[t.name] = t.only;
      targets.push_back(open_target(t.name, t.path, t.huge));
      original_sizes.push_back(targets.back().target.size());
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "vmcoh-bench: {}\n", e.what());
    return kExitSetup;
  }

  settings.window = device_window(targets);

  std::vector<const Workload*> workloads;
  for (const Workload& w : all_workloads()) {
    if (workload_names.empty() ||
        std::find(workload_names.begin(), workload_names.end(), w.name) != workload_names.end()) {
      workloads.push_back(&w);
    }
  }

  Results results;
  int status = 0;
  try {
    // Every other round takes the targets in reverse order (A B, B A, ...): a host that
    // speeds up or slows down through a run then favours no target.
    std::vector<BenchTarget*> order;
    order.reserve(targets.size());
    for (BenchTarget& t : targets) order.push_back(&t);
    for (std::size_t round = 0; round < rounds; ++round) {
      for (const Workload* w : workloads) {
        for (BenchTarget* target : order) {
          BenchTarget& t = *target;
          const std::vector<std::string>& its = only[t.name];
          if (!its.empty() && std::find(its.begin(), its.end(), w->name) == its.end()) continue;
          fmt::print(stderr, "vmcoh-bench: round {}/{}: {} on {}\n", round + 1, rounds, w->name,
                     t.name);
          const CgroupVisit visit(memcgs[t.name]);
          for (auto& [key, m] : w->run(t, settings)) {
            results[std::string(w->name)][key][t.name].rounds.push_back(std::move(m));
          }
        }
      }
      std::reverse(order.begin(), order.end());
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "vmcoh-bench: {}\n", e.what());
    status = kExitFailed;
  }
  // Give the memory back: a created file goes, the device returns to its size.
  for (std::size_t i = 0; i < targets.size(); ++i) {
    BenchTarget& t = targets[i];
    t.target.set_size(t.target.is_device() ? original_sizes[i] : 0);
    if (t.target.created()) std::filesystem::remove(t.path);
  }

  if (format == "json") {
    std::cout << to_json(results, targets, settings, rounds).dump(1) << '\n';
  } else {
    for (const BenchTarget& t : targets) {
      fmt::print("target {}: {} ({}{})\n", t.name, t.path.string(), to_string(t.target.kind()),
                 t.dax ? ", DAX" : "");
    }
    print_text(results, targets);
  }
  return status;
}

int main(int argc, char** argv) {
  return vmcoh::main_guard("vmcoh-bench", run_main, argc, argv, kExitSetup);
}
