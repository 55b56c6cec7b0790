// Reporting: one result per case, as text, TAP or JSON.  Text and TAP are streamed as cases
// finish and end with the plain line "N passed, M failed" that CI parsers count; JSON is one
// document written at the end.
#pragma once

#include <cstddef>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace vmcoh {

enum class ReportFormat { text, tap, json };

// clang-tidy 14 sees nlohmann::json's noexcept move constructor call its invariant check, which
// only asserts.
// NOLINTNEXTLINE(bugprone-exception-escape)
struct CaseReport {
  enum class Status { passed, failed, error };
  std::string name;
  Status status = Status::passed;
  std::string summary;                   // one line of counters
  std::vector<std::string> diagnostics;  // printed under the case line
  nlohmann::json details;                // the same, structured, for JSON
};
[[nodiscard]] std::string_view to_string(CaseReport::Status status) noexcept;

class Reporter {
 public:
  // `run_info` describes the run (target, seed, configuration): a banner in text, comments in
  // TAP, top-level members in JSON.  `banner` is its one-line human form.
  Reporter(std::ostream& out, ReportFormat format, nlohmann::json run_info, std::string banner);

  void begin(std::size_t planned);
  void add(CaseReport report);
  void finish();

  [[nodiscard]] std::size_t passed() const noexcept { return passed_; }
  [[nodiscard]] std::size_t failed() const noexcept { return failed_; }

 private:
  std::ostream& out_;
  ReportFormat format_;
  nlohmann::json run_info_;
  std::string banner_;
  nlohmann::json results_ = nlohmann::json::array();
  std::size_t passed_ = 0;
  std::size_t failed_ = 0;
};

}  // namespace vmcoh
