#include <array>

#include "interleaving.hpp"

namespace vmcoh::interleave {

namespace {

// In the order of the README's table: write, punch, truncate, then the three single-step bugs,
// then a store fault that fills a hole racing write(2) (issue 14), through ->fault and
// ->page_mkwrite, then a store mapped in one trap racing a punch (issue 16).
constexpr std::array<const Interleaving*, 9> kAll = {
    &kWriteVsFault,
    &kUnmapBeforeRemove,
    &kTruncateVsNopage,
    &kTruncateEvenCows,
    &kFreeBeforeUnmap,
    &kWriteNoInvalidate,
    &kZeroUnmapAfterPublishFault,
    &kZeroUnmapAfterPublishMkwrite,
    &kStoreHandoff,
};

}  // namespace

std::span<const Interleaving* const> all_interleavings() noexcept { return kAll; }

const Interleaving* find_interleaving(std::string_view name) noexcept {
  for (const Interleaving* interleaving : kAll) {
    if (interleaving->name == name) return interleaving;
  }
  return nullptr;
}

}  // namespace vmcoh::interleave
