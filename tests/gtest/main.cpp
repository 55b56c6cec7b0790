// vmcoh-gtest's main: GoogleTest's, plus --ktap, which replaces GoogleTest's own printer with
// one that writes KTAP (Documentation/dev-tools/ktap.rst): a version line, a plan, one result
// line per test case with its failures as diagnostic lines, skips as "# SKIP".  It is how the
// kselftest collection (tools/kselftest/run_vmcoh.sh) nests the suite's cases in its own KTAP.
#include <cstring>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

namespace {

class KtapPrinter : public testing::EmptyTestEventListener {
 public:
  void OnTestIterationStart(const testing::UnitTest& unit, int /*iteration*/) override {
    std::cout << "KTAP version 1\n1.." << unit.test_to_run_count() << '\n' << std::flush;
  }

  void OnTestPartResult(const testing::TestPartResult& part) override {
    if (!part.failed()) return;
    std::istringstream lines(part.message());
    std::cout << "# " << (part.file_name() != nullptr ? part.file_name() : "?") << ':'
              << part.line_number() << ": failure\n";
    for (std::string line; std::getline(lines, line);) std::cout << "#   " << line << '\n';
  }

  void OnTestEnd(const testing::TestInfo& info) override {
    const testing::TestResult& result = *info.result();
    const std::string name = std::string(info.test_suite_name()) + "." + info.name();
    if (result.Skipped()) {
      std::cout << "ok " << ++number_ << ' ' << name << " # SKIP" << skip_reason(result) << '\n';
    } else {
      std::cout << (result.Passed() ? "ok " : "not ok ") << ++number_ << ' ' << name << '\n';
    }
    std::cout << std::flush;
  }

  void OnTestIterationEnd(const testing::UnitTest& unit, int /*iteration*/) override {
    std::cout << "# " << unit.successful_test_count() << " passed, " << unit.failed_test_count()
              << " failed, " << unit.skipped_test_count() << " skipped\n"
              << std::flush;
  }

 private:
  // The first line of the skip's message, if it has one.
  static std::string skip_reason(const testing::TestResult& result) {
    for (int i = 0; i < result.total_part_count(); ++i) {
      const testing::TestPartResult& part = result.GetTestPartResult(i);
      if (!part.skipped() || part.message() == nullptr || *part.message() == '\0') continue;
      const std::string message = part.message();
      return " " + message.substr(0, message.find('\n'));
    }
    return "";
  }

  int number_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  bool ktap = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--ktap") == 0) {
      ktap = true;
    } else {
      std::cerr << argv[0] << ": unknown argument " << argv[i] << " (GoogleTest's, or --ktap)\n";
      return 2;
    }
  }
  if (ktap) {
    testing::TestEventListeners& listeners = testing::UnitTest::GetInstance()->listeners();
    // Both transfer ownership: Release() gives the default printer back, Append() takes ours.
    std::unique_ptr<testing::TestEventListener> old(
        listeners.Release(listeners.default_result_printer()));
    listeners.Append(std::make_unique<KtapPrinter>().release());
  }
  return RUN_ALL_TESTS();
}
