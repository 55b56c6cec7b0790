#include <fmt/format.h>
#include <fmt/ostream.h>

#include <vmcoh/report.hpp>

namespace vmcoh {

std::string_view to_string(CaseReport::Status status) noexcept {
  switch (status) {
    case CaseReport::Status::passed:
      return "passed";
    case CaseReport::Status::failed:
      return "failed";
    case CaseReport::Status::error:
      return "error";
  }
  return "?";
}

Reporter::Reporter(std::ostream& out, ReportFormat format, nlohmann::json run_info,
                   std::string banner)
    : out_(out), format_(format), run_info_(std::move(run_info)), banner_(std::move(banner)) {}

void Reporter::begin(std::size_t planned) {
  switch (format_) {
    case ReportFormat::text:
      fmt::print(out_, "{}\n", banner_);
      break;
    case ReportFormat::tap:
      fmt::print(out_, "TAP version 13\n1..{}\n# {}\n", planned, banner_);
      break;
    case ReportFormat::json:
      break;
  }
  out_.flush();
}

void Reporter::add(CaseReport report) {
  const bool ok = report.status == CaseReport::Status::passed;
  ok ? ++passed_ : ++failed_;
  const std::size_t number = passed_ + failed_;
  switch (format_) {
    case ReportFormat::text: {
      const std::string_view tag = ok                                            ? "ok"
                                   : report.status == CaseReport::Status::failed ? "FAIL"
                                                                                 : "ERROR";
      fmt::print(out_, "{:<5} {:<32} {}\n", tag, report.name, report.summary);
      for (const std::string& line : report.diagnostics) fmt::print(out_, "      {}\n", line);
      break;
    }
    case ReportFormat::tap:
      fmt::print(out_, "{} {} - {}\n", ok ? "ok" : "not ok", number, report.name);
      fmt::print(out_, "# {}\n", report.summary);
      for (const std::string& line : report.diagnostics) fmt::print(out_, "#   {}\n", line);
      break;
    case ReportFormat::json: {
      nlohmann::json result = {
          {"name", report.name}, {"status", to_string(report.status)}, {"summary", report.summary}};
      if (report.details.is_object()) result.update(report.details);
      results_.push_back(std::move(result));
      break;
    }
  }
  out_.flush();
}

void Reporter::finish() {
  if (format_ == ReportFormat::json) {
    nlohmann::json doc = run_info_;
    doc["results"] = results_;
    doc["passed"] = passed_;
    doc["failed"] = failed_;
    out_ << doc.dump(2) << '\n';
  } else {
    // In TAP, anything but a result, a plan or a directive is a diagnostic line.
    fmt::print(out_, "{}{} passed, {} failed\n", format_ == ReportFormat::tap ? "# " : "", passed_,
               failed_);
  }
  out_.flush();
}

}  // namespace vmcoh
