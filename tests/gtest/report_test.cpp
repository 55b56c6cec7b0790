// Reports: the closing line CI parsers count, TAP and JSON structure, and what a violation's
// report carries.
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <vmcoh/pagemap.hpp>
#include <vmcoh/report.hpp>

#include "race_report.hpp"

namespace vmcoh {
namespace {

std::string render(ReportFormat format) {
  std::ostringstream out;
  Reporter reporter(out, format, {{"tool", "test"}, {"seed", 5}}, "banner line");
  reporter.begin(2);
  reporter.add({"a/threads", CaseReport::Status::passed, "ops=1", {}, {{"ops", 1}}});
  reporter.add({"b/processes", CaseReport::Status::failed, "ops=2", {"why it failed"}, {}});
  reporter.finish();
  return out.str();
}

std::string last_line(const std::string& text) {
  const std::string trimmed = text.substr(0, text.find_last_not_of('\n') + 1);
  return trimmed.substr(trimmed.find_last_of('\n') + 1);
}

TEST(Reporter, TextEndsWithThePassedFailedLine) {
  const std::string text = render(ReportFormat::text);
  EXPECT_EQ(last_line(text), "1 passed, 1 failed");
  EXPECT_NE(text.find("FAIL  b/processes"), std::string::npos) << text;
  EXPECT_NE(text.find("why it failed"), std::string::npos);
}

TEST(Reporter, TapHasAPlanNumberedResultsAndThePassedFailedLine) {
  const std::string tap = render(ReportFormat::tap);
  EXPECT_EQ(tap.rfind("TAP version 13\n1..2\n", 0), 0U) << tap;
  EXPECT_NE(tap.find("\nok 1 - a/threads\n"), std::string::npos) << tap;
  EXPECT_NE(tap.find("\nnot ok 2 - b/processes\n"), std::string::npos) << tap;
  EXPECT_NE(tap.find("\n#   why it failed\n"), std::string::npos) << tap;
  EXPECT_EQ(last_line(tap), "# 1 passed, 1 failed");
}

TEST(Reporter, JsonIsOneDocumentWithRunInfoResultsAndCounts) {
  const nlohmann::json doc = nlohmann::json::parse(render(ReportFormat::json));
  EXPECT_EQ(doc["tool"], "test");
  EXPECT_EQ(doc["seed"], 5);
  ASSERT_EQ(doc["results"].size(), 2U);
  EXPECT_EQ(doc["results"][0]["status"], "passed");
  EXPECT_EQ(doc["results"][0]["ops"], 1);
  EXPECT_EQ(doc["results"][1]["status"], "failed");
  EXPECT_EQ(doc["passed"], 1);
  EXPECT_EQ(doc["failed"], 1);
}

TEST(RaceReport, AViolationIsReportedWithItsWindowOpsAndReplayCommand) {
  race::RunConfig config;
  config.target = "/dev/shm/x";
  config.seed = 77;
  config.duration_s = 3;
  race::ScenarioRun run;
  run.scenario = "write-vs-fault";
  run.status = CaseReport::Status::failed;
  run.violations = 1;
  run.actors.push_back({"reader-0", ActorOutcome::Status::finished, ""});
  race::ViolationRecord v{};
  v.finding = oracle::Finding::stale_zero;
  v.page = 17;
  v.offset = 17 * kPageSize;
  v.observed = 1;
  v.content = Content::zero;
  v.window_done = v.window_begun = 12;
  v.window_kinds[0] = oracle::StateKind::data;
  v.log[12 % race::kOpLogDepth] = {
      (12ULL << 8) | 1, static_cast<std::uint64_t>(race::OpMethod::pwritev), 17, 1, 10, 20, 0};
  run.records.push_back(v);

  const CaseReport report = race::make_case_report(run, config);
  EXPECT_EQ(report.name, "write-vs-fault/threads");
  std::string all;
  for (const auto& line : report.diagnostics) all += line + "\n";
  EXPECT_NE(all.find("stale-zero"), std::string::npos) << all;
  EXPECT_NE(all.find("page 17 (offset 0x11000)"), std::string::npos) << all;
  EXPECT_NE(all.find("[12,12] 12:data"), std::string::npos) << all;
  EXPECT_NE(all.find("s=12 data pwritev"), std::string::npos) << all;
  EXPECT_NE(all.find("replay: vmcoh-race --target /dev/shm/x --seed 77 --scenario write-vs-fault "
                     "--mode threads"),
            std::string::npos)
      << all;
  EXPECT_EQ(report.details["violation_records"][0]["finding"], "stale-zero");
  EXPECT_EQ(report.details["violation_records"][0]["ops"][0]["method"], "pwritev");
}

// pin-vs-punch: stale data after a pinned write names the method, says which case it most likely
// is, and the methods the target refused are listed.
TEST(RaceReport, AStaleReadAfterAPinnedWriteIsExplainedAndRefusedMethodsAreListed) {
  race::RunConfig config;
  config.target = "/dev/shm/x";
  config.duration_s = 3;
  race::ScenarioRun run;
  run.scenario = "pin-vs-punch";
  run.status = CaseReport::Status::failed;
  run.violations = 1;
  run.target_kind = TargetKind::regular_file;
  run.methods = {{race::OpMethod::pvm, true, ""},
                 {race::OpMethod::dio, false,
                  "/dev/shm is tmpfs: O_DIRECT copies through the "
                  "page cache, pinning nothing"}};
  run.totals.pinned_pvm = 3;
  run.actors.push_back({"reader-0", ActorOutcome::Status::finished, ""});
  race::ViolationRecord v{};
  v.finding = oracle::Finding::stale_data;
  v.page = 4;
  v.offset = 4 * kPageSize;
  v.observed = 1;
  v.content = Content::valid;
  v.window_done = v.window_begun = 3;
  v.window_kinds[0] = oracle::StateKind::data;
  v.after.reload.taken = 1;
  v.after.kpageflags = std::uint64_t{1} << PageFlags::kCompoundTail | std::uint64_t{1}
                                                                          << PageFlags::kThp;
  const auto pvm = static_cast<std::uint64_t>(race::OpMethod::pvm);
  v.log[2] = {
      (2ULL << 8) | 0, static_cast<std::uint64_t>(race::OpMethod::punch), 4, 1, 10, 20, pvm};
  v.log[3] = {
      (3ULL << 8) | 1, static_cast<std::uint64_t>(race::OpMethod::pwrite), 4, 1, 21, 30, pvm};
  run.records.push_back(v);

  const CaseReport report = race::make_case_report(run, config);
  std::string all;
  for (const auto& line : report.diagnostics) all += line + "\n";
  EXPECT_NE(all.find("s=2 hole punch"), std::string::npos) << all;
  EXPECT_NE(all.find("[a pvm pin of an older state in flight]"), std::string::npos) << all;
  EXPECT_NE(all.find("part of a large folio (tail, THP)"), std::string::npos) << all;
  EXPECT_NE(all.find("the known GUP vs file-backed memory problem"), std::string::npos) << all;
  EXPECT_NE(all.find("methods the target refused (not used): dio (/dev/shm is tmpfs"),
            std::string::npos)
      << all;
  EXPECT_NE(report.summary.find("pinned=pvm:3,dio:0,uring:0"), std::string::npos) << report.summary;
  const nlohmann::json& details = report.details;
  EXPECT_EQ(details["methods"]["pvm"]["supported"], true);
  EXPECT_EQ(details["methods"]["dio"]["supported"], false);
  EXPECT_EQ(details["counters"]["pinned"]["pvm"], 3);
  EXPECT_EQ(details["violation_records"][0]["ops"][0]["pinned"], "pvm");
  EXPECT_NE(details["violation_records"][0]["note"].get<std::string>().find("known GUP"),
            std::string::npos);
}

TEST(RaceReport, APinnedWriteThatLandsInASmallPageIsNotCalledTheKnownProblem) {
  race::RunConfig config;
  config.target = "/dev/shm/x";
  config.duration_s = 3;
  race::ScenarioRun run;
  run.scenario = "pin-vs-punch";
  run.violations = 1;
  run.target_kind = TargetKind::regular_file;
  race::ViolationRecord v{};
  v.finding = oracle::Finding::stale_data;
  v.after.reload.taken = 1;
  v.after.kpageflags = std::uint64_t{1} << 5;  // LRU: a page, but no large folio
  v.log[2] = {(2ULL << 8) | 0,
              static_cast<std::uint64_t>(race::OpMethod::punch),
              0,
              1,
              10,
              20,
              static_cast<std::uint64_t>(race::OpMethod::uring)};
  run.records.push_back(v);
  std::string all;
  for (const auto& line : race::make_case_report(run, config).diagnostics) all += line + "\n";
  EXPECT_NE(all.find("small page"), std::string::npos) << all;
  EXPECT_NE(all.find("not the known large-folio case"), std::string::npos) << all;
}

}  // namespace
}  // namespace vmcoh
