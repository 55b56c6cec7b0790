// How a scenario run is reported: one summary line, and for failures (or with --verbose) the
// violations in full (window, observed page, the page's last operations) and the replay command.
#pragma once

#include <vmcoh/report.hpp>

#include "runner.hpp"
#include "scenario.hpp"

namespace vmcoh::race {

[[nodiscard]] CaseReport make_case_report(const ScenarioRun& run, const RunConfig& config);

}  // namespace vmcoh::race
