// The table of scenarios: one entry per race, each defined in its own file.
#include <algorithm>
#include <array>
#include <stdexcept>

#include <fmt/format.h>

#include "scenario.hpp"

namespace vmcoh::race {

const Scenario& write_vs_fault();
const Scenario& punch_vs_fault();
const Scenario& truncate_vs_fault();
const Scenario& write_vs_refault();
const Scenario& truncate_vs_refault();
const Scenario& store_vs_fault();
const Scenario& pin_vs_punch();
const Scenario& eof_vs_fault();

std::span<const Scenario* const> all_scenarios() {
  static const std::array<const Scenario*, 8> table = {
      &write_vs_fault(),      &punch_vs_fault(), &truncate_vs_fault(), &write_vs_refault(),
      &truncate_vs_refault(), &store_vs_fault(), &pin_vs_punch(),      &eof_vs_fault(),
  };
  return table;
}

const Scenario* find_scenario(std::string_view name) {
  const auto all = all_scenarios();
  const auto it =
      std::find_if(all.begin(), all.end(), [&](const Scenario* s) { return s->name() == name; });
  return it == all.end() ? nullptr : *it;
}

void require_pages(const RunConfig& config, std::size_t minimum, std::string_view scenario) {
  if (config.pages < minimum) {
    throw std::runtime_error(fmt::format("{} needs --pages >= {} with {} writer(s), got {}",
                                         scenario, minimum, config.writers, config.pages));
  }
}

void require_hot_pages(const RunConfig& config, std::size_t minimum, std::string_view scenario) {
  if (config.hot_pages < minimum || config.hot_pages > config.pages) {
    throw std::runtime_error(
        fmt::format("{} needs {} <= --hot-pages <= --pages ({}) with {} writer(s), got {}",
                    scenario, minimum, config.pages, config.writers, config.hot_pages));
  }
}

}  // namespace vmcoh::race
