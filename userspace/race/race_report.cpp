#include "race_report.hpp"

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include <vmcoh/pagemap.hpp>

namespace vmcoh::race {

namespace {

constexpr std::uint64_t kKindMask = 0xff;

double seconds_since(std::uint64_t start_ns, std::uint64_t t_ns) {
  return (static_cast<double>(t_ns) - static_cast<double>(start_ns)) / 1e9;
}

// The op log of a page in state order (oldest first), skipping unused slots.
std::vector<OpRecord> ops_in_order(const ViolationRecord& v) {
  std::vector<OpRecord> ops;
  for (const OpRecord& op : v.log) {
    if (op.tag != 0) ops.push_back(op);
  }
  std::sort(ops.begin(), ops.end(),
            [](const OpRecord& a, const OpRecord& b) { return a.tag < b.tag; });
  return ops;
}

std::string describe_op(const OpRecord& op, std::uint64_t start_ns) {
  const auto kind = static_cast<StateKind>(op.tag & kKindMask);
  std::string out = fmt::format("s={} {} {}", op.tag >> 8, oracle::to_string(kind),
                                to_string(static_cast<OpMethod>(op.method)));
  if (op.range_pages > 1) {
    out += fmt::format(" pages {}-{}", op.range_first, op.range_first + op.range_pages - 1);
  }
  out += fmt::format(" {:+.6f}s", seconds_since(start_ns, op.start_ns));
  out += op.end_ns == 0 ? std::string("..(in flight)")
                        : fmt::format("..{:+.6f}s", seconds_since(start_ns, op.end_ns));
  if (op.pinned != 0) {
    out += fmt::format(" [a {} pin of an older state in flight]",
                       to_string(static_cast<OpMethod>(op.pinned)));
  }
  return out;
}

// The pinned write (pin-vs-punch) in flight across the page's last operations, if any.
OpMethod pinned_method(const ViolationRecord& v) {
  for (const OpRecord& op : v.log) {
    if (op.tag != 0 && op.pinned != 0) return static_cast<OpMethod>(op.pinned);
  }
  return OpMethod::none;
}

// What stale data after a pinned write (pin-vs-punch) most likely is, on each kind of target.
std::string pinned_note(OpMethod method, TargetKind kind, std::optional<PageFlags> flags) {
  const std::string what =
      fmt::format("note: a {} pin taken before the punch wrote the page after the rewrite returned",
                  to_string(method));
  if (kind == TargetKind::device) {
    return what + ": the device put the rewritten block where the pinned write still lands";
  }
  constexpr std::string_view known =
      "a punch that cannot split a large folio (the pin holds it) keeps the pinned page in the "
      "file, so the late write lands in the file: the known GUP vs file-backed memory problem";
  if (!flags) {
    return fmt::format("{}; if the page is part of a large folio, {} (kpageflags unreadable)", what,
                       known);
  }
  if (flags->large_folio())
    return fmt::format("{}; the page is {}: {}", what, describe(*flags), known);
  return fmt::format(
      "{}; the page is a small page, which the punch takes out of the file: not the known "
      "large-folio case",
      what);
}

// "SIGBUS", "zero", "gen 35", "torn (header gen 35)", ...
std::string describe_look(const Look& look, std::string_view refusal) {
  if (look.taken == 0) return "not taken";
  if (look.refused != 0) return std::string(refusal);
  switch (look.content) {
    case Content::zero:
      return "zero";
    case Content::valid:
      return fmt::format("gen {}", look.header.generation);
    default:
      return fmt::format("{} (header gen {})", to_string(look.content), look.header.generation);
  }
}

nlohmann::json look_json(const Look& look) {
  if (look.taken == 0) return nullptr;
  if (look.refused != 0) return {{"refused", true}};
  return {{"refused", false},
          {"content", to_string(look.content)},
          {"generation", look.header.generation}};
}

oracle::Window window_of(const ViolationRecord& v) {
  oracle::Window w;
  w.done = v.window_done;
  w.begun = v.window_begun;
  std::copy(std::begin(v.window_kinds), std::end(v.window_kinds), w.kinds.begin());
  return w;
}

std::string actor_name(const ScenarioRun& run, std::uint32_t actor) {
  return actor < run.actors.size() ? run.actors[actor].name : fmt::format("actor {}", actor);
}

std::optional<PageFlags> flags_of(const ViolationRecord& v) {
  if (v.after.kpageflags == 0) return std::nullopt;
  return PageFlags{v.after.kpageflags};
}

std::vector<std::string> describe_violation(const ScenarioRun& run, const ViolationRecord& v,
                                            std::size_t number) {
  std::vector<std::string> lines;
  lines.push_back(fmt::format("violation {} of {} at {:.6f}s: {}: {}", number, run.violations,
                              static_cast<double>(v.t_ns) / 1e9, oracle::to_string(v.finding),
                              v.reason));
  lines.push_back(fmt::format("  where: {} via {}, page {} (offset {:#x})",
                              actor_name(run, v.actor), to_string(v.path), v.page, v.offset));
  if (v.observed != 0) {
    lines.push_back(fmt::format("  observed: {}", to_string(v.content)));
    if (v.content != Content::zero)
      lines.push_back(fmt::format("  header: {}", describe(v.header)));
    if (v.layout[0] != '\0') lines.push_back(fmt::format("  layout: {}", v.layout));
  } else {
    lines.push_back("  observed: no bytes (the access faulted or read EOF)");
  }
  if (v.after.reload.taken != 0) {
    const std::optional<PageFlags> flags = flags_of(v);
    lines.push_back(fmt::format(
        "  when judged: {}{}; loaded again: {}; pread: {}", describe(PagemapEntry{v.after.pagemap}),
        flags ? ", " + describe(*flags) : std::string(), describe_look(v.after.reload, "SIGBUS"),
        describe_look(v.after.pread, "EOF")));
  }
  lines.push_back(fmt::format("  legal window: {}", oracle::describe(window_of(v))));
  lines.push_back(fmt::format("  sizes: generations [{},{}], {:#x}..{:#x} bytes", v.size_done,
                              v.size_begun, v.size_min, v.size_max));
  lines.push_back("  last ops on the page (times from the start of the race):");
  for (const OpRecord& op : ops_in_order(v))
    lines.push_back("    " + describe_op(op, run.start_ns));
  if (const OpMethod pinned = pinned_method(v);
      pinned != OpMethod::none && v.finding == oracle::Finding::stale_data) {
    lines.push_back("  " + pinned_note(pinned, run.target_kind, flags_of(v)));
  }
  return lines;
}

nlohmann::json violation_json(const ScenarioRun& run, const ViolationRecord& v) {
  const oracle::Window w = window_of(v);
  nlohmann::json kinds = nlohmann::json::object();
  for (std::uint64_t s = w.done; s <= w.begun && s - w.done < oracle::kMaxWindow; ++s) {
    kinds[std::to_string(s)] = oracle::to_string(w.kind(s));
  }
  nlohmann::json ops = nlohmann::json::array();
  for (const OpRecord& op : ops_in_order(v)) {
    ops.push_back(
        {{"state", op.tag >> 8},
         {"kind", oracle::to_string(static_cast<StateKind>(op.tag & kKindMask))},
         {"method", to_string(static_cast<OpMethod>(op.method))},
         {"pinned", op.pinned == 0 ? nlohmann::json(nullptr)
                                   : nlohmann::json(to_string(static_cast<OpMethod>(op.pinned)))},
         {"range_first", op.range_first},
         {"range_pages", op.range_pages},
         {"start_s", seconds_since(run.start_ns, op.start_ns)},
         {"end_s", op.end_ns == 0 ? nlohmann::json(nullptr)
                                  : nlohmann::json(seconds_since(run.start_ns, op.end_ns))}});
  }
  nlohmann::json observed = nullptr;
  if (v.observed != 0) {
    const StampHeader& h = v.header;
    observed = {{"content", to_string(v.content)},
                {"header",
                 {{"magic", h.magic},
                  {"offset", h.offset},
                  {"generation", h.generation},
                  {"run_id", h.run_id},
                  {"flags", h.flags},
                  {"actor", h.actor},
                  {"checksum", h.checksum}}},
                {"layout", v.layout}};
  }
  return {
      {"t_s", static_cast<double>(v.t_ns) / 1e9},
      {"finding", oracle::to_string(v.finding)},
      {"reason", v.reason},
      {"actor", actor_name(run, v.actor)},
      {"path", to_string(v.path)},
      {"page", v.page},
      {"offset", v.offset},
      {"observed", observed},
      {"after",
       v.after.reload.taken == 0
           ? nlohmann::json(nullptr)
           : nlohmann::json{{"pagemap", describe(PagemapEntry{v.after.pagemap})},
                            {"pagemap_raw", v.after.pagemap},
                            {"kpageflags",
                             flags_of(v) ? nlohmann::json(describe(PageFlags{v.after.kpageflags}))
                                         : nlohmann::json(nullptr)},
                            {"reload", look_json(v.after.reload)},
                            {"pread", look_json(v.after.pread)}}},
      {"note", pinned_method(v) == OpMethod::none || v.finding != oracle::Finding::stale_data
                   ? nlohmann::json(nullptr)
                   : nlohmann::json(pinned_note(pinned_method(v), run.target_kind, flags_of(v)))},
      {"window", {{"done", w.done}, {"begun", w.begun}, {"kinds", kinds}}},
      {"sizes",
       {{"done", v.size_done}, {"begun", v.size_begun}, {"min", v.size_min}, {"max", v.size_max}}},
      {"ops", ops}};
}

nlohmann::json counters_json(const ActorCounters& c) {
  return {{"ops", c.ops},
          {"samples", c.samples},
          {"decisive", c.decisive},
          {"undecided", c.undecided},
          {"violations", c.violations},
          {"refused", c.refused},
          {"torn", c.torn},
          {"private_stores", c.private_stores},
          {"preads", c.preads},
          {"glances", c.glances},
          {"pinned", {{"pvm", c.pinned_pvm}, {"dio", c.pinned_dio}, {"uring", c.pinned_uring}}},
          {"pin_waits", c.pin_waits}};
}

std::string pinned_counters(const ActorCounters& c) {
  if (c.pinned_pvm + c.pinned_dio + c.pinned_uring == 0) return {};
  return fmt::format(" pinned=pvm:{},dio:{},uring:{} pin-waits={}", c.pinned_pvm, c.pinned_dio,
                     c.pinned_uring, c.pin_waits);
}

// "zero-range (fallocate...: Operation not supported), splice (...)"; empty if none was refused.
std::string refused_methods(const ScenarioRun& run) {
  std::string out;
  for (const SharedState::MethodReport& m : run.methods) {
    if (m.supported) continue;
    if (!out.empty()) out += "; ";
    out += fmt::format("{} ({})", to_string(m.method), m.reason);
  }
  return out;
}

nlohmann::json methods_json(const ScenarioRun& run) {
  nlohmann::json out = nlohmann::json::object();
  for (const SharedState::MethodReport& m : run.methods) {
    out[std::string(to_string(m.method))] = {
        {"supported", m.supported},
        {"reason", m.supported ? nlohmann::json(nullptr) : nlohmann::json(m.reason)}};
  }
  return out;
}

std::string counters_line(const ActorCounters& c) {
  const double decisive =
      c.samples == 0 ? 0.0
                     : 100.0 * static_cast<double>(c.decisive) / static_cast<double>(c.samples);
  return fmt::format(
      "ops={} samples={} decisive={:.1f}% undecided={} torn={} refused={} "
      "preads={} private-stores={}{}{} violations={}",
      c.ops, c.samples, decisive, c.undecided, c.torn, c.refused, c.preads, c.private_stores,
      c.glances == 0 ? std::string() : fmt::format(" glances={}", c.glances), pinned_counters(c),
      c.violations);
}

nlohmann::json device_stats_json(const std::optional<vmcoh_stats>& s) {
  if (!s) return nullptr;
  return {{"faults", s->faults},
          {"mkwrite_faults", s->mkwrite_faults},
          {"zero_page_maps", s->zero_page_maps},
          {"zero_page_upgrades", s->zero_page_upgrades},
          {"sigbus", s->sigbus},
          {"entry_lock_waits", s->entry_lock_waits},
          {"invalidations", s->invalidations},
          {"ranged_unmaps", s->ranged_unmaps},
          {"entries_removed", s->entries_removed},
          {"blocks_allocated", s->blocks_allocated},
          {"blocks_freed", s->blocks_freed},
          {"blocks_live", s->blocks_live}};
}

std::string device_stats_line(const vmcoh_stats& s) {
  return fmt::format(
      "device: faults={} mkwrite={} zero-maps={} zero-upgrades={} sigbus={} entry-lock-waits={} "
      "invalidations={} unmaps={} entries-removed={} blocks-allocated={} blocks-freed={}",
      s.faults, s.mkwrite_faults, s.zero_page_maps, s.zero_page_upgrades, s.sigbus,
      s.entry_lock_waits, s.invalidations, s.ranged_unmaps, s.entries_removed, s.blocks_allocated,
      s.blocks_freed);
}

}  // namespace

CaseReport make_case_report(const ScenarioRun& run, const RunConfig& config) {
  CaseReport report;
  report.name = fmt::format("{}/{}", run.scenario, to_string(run.mode));
  report.status = run.status;
  ActorCounters totals = run.totals;
  totals.violations = run.violations;
  report.summary = counters_line(totals);
  if (run.first_violation_s)
    report.summary += fmt::format(" first-violation={:.3f}s", *run.first_violation_s);
  report.summary += fmt::format(" in {:.1f}s", run.seconds);
  if (run.stopped_by_timeout) report.summary += " (stopped by --timeout)";
  if (run.stopped_on_violation) report.summary += " (stopped at the first violation)";

  const bool failed = run.status != CaseReport::Status::passed;
  for (const std::string& problem : run.problems) report.diagnostics.push_back(problem);
  if (const std::string refused = refused_methods(run); !refused.empty()) {
    report.diagnostics.push_back("methods the target refused (not used): " + refused);
  }
  std::size_t number = 0;
  for (const ViolationRecord& v : run.records) {
    for (std::string& line : describe_violation(run, v, ++number)) {
      report.diagnostics.push_back(std::move(line));
    }
  }
  if (run.violations > run.records.size()) {
    report.diagnostics.push_back(fmt::format("({} more violations were counted, not recorded)",
                                             run.violations - run.records.size()));
  }
  if (config.verbose) {
    for (std::size_t i = 0; i < run.per_actor.size() && i < run.actors.size(); ++i) {
      report.diagnostics.push_back(
          fmt::format("{}: {}", run.actors[i].name, counters_line(run.per_actor[i])));
    }
    if (run.device_stats) report.diagnostics.push_back(device_stats_line(*run.device_stats));
  }
  const std::string replay = config.replay_command(run.scenario);
  if (failed) report.diagnostics.push_back("replay: " + replay);

  nlohmann::json violations = nlohmann::json::array();
  for (const ViolationRecord& v : run.records) violations.push_back(violation_json(run, v));
  nlohmann::json actors = nlohmann::json::array();
  for (std::size_t i = 0; i < run.actors.size(); ++i) {
    nlohmann::json actor = {{"name", run.actors[i].name},
                            {"status", to_string(run.actors[i].status)},
                            {"detail", run.actors[i].detail}};
    if (i < run.per_actor.size()) actor["counters"] = counters_json(run.per_actor[i]);
    actors.push_back(std::move(actor));
  }
  report.details = {
      {"scenario", run.scenario},
      {"mode", to_string(run.mode)},
      {"run_id", run.run_id},
      {"seconds", run.seconds},
      {"stopped_by_timeout", run.stopped_by_timeout},
      {"stopped_on_violation", run.stopped_on_violation},
      {"first_violation_s",
       run.first_violation_s ? nlohmann::json(*run.first_violation_s) : nlohmann::json(nullptr)},
      {"counters", counters_json(totals)},
      {"violations", run.violations},
      {"violation_records", violations},
      {"problems", run.problems},
      {"actors", actors},
      {"methods", methods_json(run)},
      {"device_stats", device_stats_json(run.device_stats)},
      {"replay", replay}};
  return report;
}

}  // namespace vmcoh::race
