// Scenarios end to end, briefly, against a tmpfs file: the kernel's page cache is coherent, so
// each must pass, and each must have exercised what it is about.
#include <gtest/gtest.h>

#include "runner.hpp"
#include "scenario.hpp"
#include "test_object.hpp"

namespace vmcoh::race {
namespace {

constexpr std::uint64_t kOperations = 400;
// pin-vs-punch's operations each hold a pin across a punch and wait for the pin's store: a
// hundred of them take longer than the others' 400 (8 s on 6.1 in a VM beside another, 24 s on
// the debug kernel, at 400).
constexpr std::uint64_t kPinOperations = 100;
// What a probe or a counter needs: the methods are probed before the first operation, and every
// pin-vs-punch operation holds a pin across a punch.
constexpr std::uint64_t kFewOperations = 40;
constexpr double kTimeout = 60;

class ScenarioOnTmpfs : public testing::TestWithParam<std::string_view> {
 protected:
  void SetUp() override {
    object_ = test::ScratchObject::tmpfs_file();
    if (!object_) GTEST_SKIP() << "no tmpfs directory";
    config_.target = object_->target().path();
    config_.seed = 1;
    config_.iterations = operations();
    config_.timeout_s = kTimeout;
  }

  [[nodiscard]] ScenarioRun run(ActorMode mode) {
    config_.mode = mode;
    const Scenario* scenario = find_scenario(GetParam());
    EXPECT_NE(scenario, nullptr);
    return run_scenario(*scenario, config_);
  }

  [[nodiscard]] static std::uint64_t operations() {
    return GetParam() == "pin-vs-punch" ? kPinOperations : kOperations;
  }

  std::unique_ptr<test::ScratchObject> object_;
  RunConfig config_;
};

TEST_P(ScenarioOnTmpfs, PassesWithThreadsAndWithProcesses) {
  for (const ActorMode mode : {ActorMode::threads, ActorMode::processes}) {
    const ScenarioRun r = run(mode);
    for (const std::string& problem : r.problems) ADD_FAILURE() << problem;
    EXPECT_EQ(r.status, CaseReport::Status::passed) << to_string(mode);
    EXPECT_EQ(r.violations, 0U) << to_string(mode);
    EXPECT_GE(r.totals.ops, operations()) << to_string(mode);
    EXPECT_GT(r.totals.samples, 0U) << to_string(mode);
  }
}

TEST_P(ScenarioOnTmpfs, ReportsTheOptionalMethodsItProbed) {
  config_.iterations = kFewOperations;
  const ScenarioRun r = run(ActorMode::threads);
  ASSERT_GE(r.methods.size(), 2U);
  EXPECT_EQ(r.methods[0].method, OpMethod::punch);
  EXPECT_TRUE(r.methods[0].supported) << "tmpfs punches holes";
  EXPECT_EQ(r.methods[1].method, OpMethod::zero_range);
  EXPECT_FALSE(r.methods[1].supported) << "tmpfs has no FALLOC_FL_ZERO_RANGE";
}

INSTANTIATE_TEST_SUITE_P(NewScenarios, ScenarioOnTmpfs,
                         testing::Values("store-vs-fault", "pin-vs-punch", "eof-vs-fault"),
                         [](const testing::TestParamInfo<std::string_view>& info) {
                           std::string name(info.param);
                           std::erase(name, '-');
                           return name;
                         });

TEST(PinVsPunch, CarriesPinnedWritesAcrossPunchesOnTmpfs) {
  const auto object = test::ScratchObject::tmpfs_file();
  if (!object) GTEST_SKIP() << "no tmpfs directory";
  RunConfig config;
  config.target = object->target().path();
  config.seed = 2;
  config.iterations = kFewOperations;
  config.timeout_s = kTimeout;
  const ScenarioRun r = run_scenario(*find_scenario("pin-vs-punch"), config);
  if (!r.problems.empty() && r.problems[0].find("userfaultfd") != std::string::npos) {
    GTEST_SKIP() << r.problems[0];
  }
  EXPECT_EQ(r.status, CaseReport::Status::passed);
  EXPECT_GT(r.totals.pinned_pvm, 0U) << "process_vm_writev never held a pin across a punch";
  bool dio_refused = false;
  for (const auto& m : r.methods) dio_refused |= m.method == OpMethod::dio && !m.supported;
  EXPECT_TRUE(dio_refused) << "tmpfs takes O_DIRECT but pins nothing: dio must be skipped";
  EXPECT_EQ(r.totals.pinned_dio, 0U);
}

}  // namespace
}  // namespace vmcoh::race
