#include <algorithm>
#include <vector>

#include <fmt/format.h>

#include <vmcoh/oracle.hpp>

namespace vmcoh::oracle {

namespace {

Judgement legal(Finding finding) { return {true, finding, {}}; }
Judgement violation(Finding finding, std::string reason) {
  return {false, finding, std::move(reason)};
}

// A page image each state of `window` (and the generations just before it, for diagnostics) would
// show, labelled with its generation (0 for zero bytes).
struct Candidate {
  std::uint64_t generation;
  PageImage image;
};

std::vector<Candidate> candidates(const PageContext& ctx, std::uint64_t first, std::uint64_t last,
                                  const Window* only_legal_in) {
  std::vector<Candidate> out;
  if (only_legal_in == nullptr || only_legal_in->admits_zero()) out.push_back({0, PageImage{}});
  for (std::uint64_t g = std::max<std::uint64_t>(first, 1); g <= last; ++g) {
    if (only_legal_in != nullptr && only_legal_in->kind(g) != StateKind::data) continue;
    out.push_back({g, make_stamp({ctx.run_id, ctx.offset, g, 0, 0})});
  }
  return out;
}

// True if every byte of `page` equals the same byte of some candidate (a byte-granular mixture:
// the kernel's copy routines give no word atomicity).
bool is_mixture_of(const PageImage& page, const std::vector<Candidate>& from) {
  const std::byte* bytes = page.bytes();
  for (std::size_t w = 0; w < kWordsPerPage; ++w) {
    const bool whole_word = std::any_of(from.begin(), from.end(), [&](const Candidate& c) {
      return c.image.words[w] == page.words[w];
    });
    if (whole_word) continue;
    for (std::size_t b = w * 8; b < w * 8 + 8; ++b) {
      const bool matched = std::any_of(from.begin(), from.end(), [&](const Candidate& c) {
        return c.image.bytes()[b] == bytes[b];
      });
      if (!matched) return false;
    }
  }
  return true;
}

Judgement copy_lost(const PrivateCopy& copy, std::string_view shown) {
  return violation(Finding::private_copy_lost,
                   fmt::format("the private copy (gen {}) is gone although no truncation of the "
                               "page began since the store; the mapping shows {}",
                               copy.generation, shown));
}

}  // namespace

std::string_view to_string(StateKind kind) noexcept {
  switch (kind) {
    case StateKind::hole:
      return "hole";
    case StateKind::data:
      return "data";
    case StateKind::truncated:
      return "truncated";
  }
  return "?";
}

Window Window::of(std::uint64_t done, std::initializer_list<StateKind> kinds) {
  Window window;
  window.done = done;
  window.begun = done + kinds.size() - 1;
  std::copy(kinds.begin(), kinds.end(), window.kinds.begin());
  return window;
}

bool Window::admits_zero() const noexcept {
  for (std::uint64_t s = done; s <= begun; ++s) {
    if (kind(s) != StateKind::data) return true;
  }
  return false;
}

std::string describe(const Window& window) {
  std::string out = fmt::format("[{},{}]", window.done, window.begun);
  for (std::uint64_t s = window.done; s <= window.begun; ++s) {
    out += fmt::format(" {}:{}", s, to_string(window.kind(s)));
  }
  return out;
}

std::string_view to_string(Finding finding) noexcept {
  switch (finding) {
    case Finding::zero:
      return "zero";
    case Finding::valid:
      return "valid";
    case Finding::torn_in_flight:
      return "torn-in-flight";
    case Finding::private_copy:
      return "private-copy";
    case Finding::within_eof:
      return "within-eof";
    case Finding::beyond_eof:
      return "beyond-eof";
    case Finding::stale_zero:
      return "stale-zero";
    case Finding::stale_data:
      return "stale-data";
    case Finding::future_data:
      return "future-data";
    case Finding::data_in_hole_state:
      return "data-in-hole-state";
    case Finding::torn_at_rest:
      return "torn-at-rest";
    case Finding::torn_outside_window:
      return "torn-outside-window";
    case Finding::misplaced:
      return "misplaced";
    case Finding::foreign:
      return "foreign";
    case Finding::private_leak:
      return "private-leak";
    case Finding::fault_within_eof:
      return "fault-within-eof";
    case Finding::access_beyond_eof:
      return "access-beyond-eof";
    case Finding::private_copy_survived_truncation:
      return "private-copy-survived-truncation";
    case Finding::private_copy_lost:
      return "private-copy-lost";
    case Finding::private_copy_corrupt:
      return "private-copy-corrupt";
    case Finding::private_copy_resurrected:
      return "private-copy-resurrected";
  }
  return "?";
}

Judgement judge_content(const PageImage& page, const Observation& obs, const Window& window,
                        const PageContext& ctx) {
  const StampHeader& h = obs.header;
  switch (obs.content) {
    case Content::zero:
      if (window.admits_zero()) return legal(Finding::zero);
      return violation(Finding::stale_zero,
                       fmt::format("page reads zero, but every state of the window {} is data",
                                   describe(window)));
    case Content::valid:
      if ((h.flags & kStampPrivate) != 0) {
        return violation(Finding::private_leak,
                         fmt::format("a MAP_PRIVATE store of actor {} (private gen {}) is visible "
                                     "through the object",
                                     h.actor, h.generation));
      }
      if (h.generation < window.done) {
        return violation(Finding::stale_data,
                         fmt::format("gen {} is older than state {}, whose operation had completed",
                                     h.generation, window.done));
      }
      if (h.generation > window.begun) {
        return violation(Finding::future_data,
                         fmt::format("gen {} is newer than state {}, the last begun", h.generation,
                                     window.begun));
      }
      if (window.kind(h.generation) != StateKind::data) {
        return violation(Finding::data_in_hole_state,
                         fmt::format("gen {} was a {} state, not data", h.generation,
                                     to_string(window.kind(h.generation))));
      }
      return legal(Finding::valid);
    case Content::torn:
      if (!window.in_flight()) {
        return violation(
            Finding::torn_at_rest,
            fmt::format("torn page while no operation was in flight (state {})", window.done));
      }
      if (!is_mixture_of(page, candidates(ctx, window.done, window.begun, &window))) {
        return violation(
            Finding::torn_outside_window,
            fmt::format("torn page with bytes from no state of the window {}", describe(window)));
      }
      return legal(Finding::torn_in_flight);
    case Content::misplaced:
      return violation(Finding::misplaced,
                       fmt::format("page at offset {:#x} carries the stamp of offset {:#x} gen {}",
                                   ctx.offset, h.offset, h.generation));
    case Content::foreign:
      return violation(Finding::foreign, "page holds bytes that are no stamp of this run");
  }
  return violation(Finding::foreign, "unclassified content");
}

std::string describe_layout(const PageImage& page, const PageContext& ctx, const Window& window) {
  // First the stamp the page's own header names (so words every stamp shares, such as the magic,
  // go to it and an intact page reads as one run), then zero and the recent generations of this
  // page, so that stale bytes are named by the generation that wrote them.
  std::vector<std::pair<std::string, PageImage>> named;
  if (const StampHeader h = header_of(page); h.magic == kStampMagic) {
    std::string label = fmt::format("gen {}", h.generation);
    if ((h.flags & kStampPrivate) != 0)
      label = fmt::format("private {} of actor {}", label, h.actor);
    if (h.offset != ctx.offset) label += fmt::format(" of offset {:#x}", h.offset);
    if (h.run_id != ctx.run_id) label += fmt::format(" of run {:#x}", h.run_id);
    named.emplace_back(label, make_stamp({h.run_id, h.offset, h.generation, h.flags, h.actor}));
  }
  constexpr std::uint64_t kLookBack = 8;
  const std::uint64_t first = window.done > kLookBack ? window.done - kLookBack : 1;
  for (Candidate& c : candidates(ctx, first, window.begun, nullptr)) {
    named.emplace_back(c.generation == 0 ? "zero" : fmt::format("gen {}", c.generation), c.image);
  }
  const auto label = [&](std::size_t w) -> std::string_view {
    for (const auto& [name, image] : named) {
      if (image.words[w] == page.words[w]) return name;
    }
    return "unknown";
  };
  std::string out;
  std::size_t start = 0;
  for (std::size_t w = 1; w <= kWordsPerPage; ++w) {
    if (w < kWordsPerPage && label(w) == label(start)) continue;
    if (!out.empty()) out += "; ";
    out += fmt::format("words {}-{}: {}", start, w - 1, label(start));
    start = w;
  }
  return out;
}

std::string_view to_string(Access access) noexcept {
  switch (access) {
    case Access::mmap_load:
      return "mmap load";
    case Access::mmap_store:
      return "mmap store";
    case Access::pread:
      return "pread";
  }
  return "?";
}

Judgement judge_extent(Access access, bool refused, std::uint64_t offset, const SizeWindow& sizes) {
  const std::string_view refusal = access == Access::pread ? "read EOF" : "raised SIGBUS";
  if (refused) {
    if (offset >= sizes.min_size) return legal(Finding::beyond_eof);
    return violation(
        Finding::fault_within_eof,
        fmt::format("{} at offset {:#x} {}, but the size was at least {:#x} "
                    "throughout (size generations [{},{}])",
                    to_string(access), offset, refusal, sizes.min_size, sizes.done, sizes.begun));
  }
  if (offset < sizes.max_size) return legal(Finding::within_eof);
  return violation(
      Finding::access_beyond_eof,
      fmt::format("{} at offset {:#x} succeeded, but the size was at most {:#x} "
                  "throughout (size generations [{},{}]): it must have {}",
                  to_string(access), offset, sizes.max_size, sizes.done, sizes.begun, refusal));
}

PrivateView judge_private(const PageImage& page, const Observation& obs, const PrivateCopy& copy,
                          const CutWindow& cuts, const Window& window, const PageContext& ctx,
                          std::uint32_t actor) {
  const StampHeader& h = obs.header;
  const bool private_stamp = obs.content == Content::valid && (h.flags & kStampPrivate) != 0;
  if (private_stamp && h.actor != actor) {
    return {PrivateSource::object,
            violation(Finding::private_leak,
                      fmt::format("the private store of actor {} is visible in actor {}'s mapping",
                                  h.actor, actor))};
  }
  if (private_stamp) {
    if (!copy.present) {
      return {PrivateSource::private_copy,
              violation(Finding::private_copy_resurrected,
                        fmt::format("private gen {} is visible again after its copy was seen gone",
                                    h.generation))};
    }
    if (cuts.done_before > copy.cut_seq) {
      return {PrivateSource::private_copy,
              violation(Finding::private_copy_survived_truncation,
                        fmt::format("private gen {} survived truncation {} of the page (the copy "
                                    "was made before truncation {} began)",
                                    h.generation, cuts.done_before, copy.cut_seq + 1))};
    }
    if (copy.exact && h.generation != copy.generation) {
      return {PrivateSource::private_copy,
              violation(Finding::private_copy_corrupt,
                        fmt::format("private copy shows gen {}, the store wrote gen {}",
                                    h.generation, copy.generation))};
    }
    return {PrivateSource::private_copy, legal(Finding::private_copy)};
  }
  if (!copy.present) return {PrivateSource::object, std::nullopt};

  // A truncation that began after the store discards the copy: before the load (then the load
  // sees the object only) or during it (then the load may see private bytes, then object bytes).
  const bool discarded_before = cuts.done_before > copy.cut_seq;
  const bool discarded_during = !discarded_before && cuts.begun_after > copy.cut_seq;
  if (obs.content == Content::torn) {
    // A store that raced a truncation may have left a copy mixing private and object bytes.
    if (!copy.exact) return {PrivateSource::private_copy, legal(Finding::private_copy)};
    if (discarded_during) {
      std::vector<Candidate> from = candidates(ctx, window.done, window.begun, &window);
      from.push_back(
          {0, make_stamp({ctx.run_id, ctx.offset, copy.generation, kStampPrivate, actor})});
      if (is_mixture_of(page, from)) return {PrivateSource::object, legal(Finding::private_copy)};
      return {PrivateSource::object,
              violation(Finding::torn_outside_window,
                        fmt::format("torn page with bytes from neither the private copy (gen {}) "
                                    "nor a state of the window {}",
                                    copy.generation, describe(window)))};
    }
    if (!discarded_before) {
      return {PrivateSource::private_copy,
              violation(Finding::private_copy_corrupt,
                        fmt::format("the private copy (gen {}) reads torn although no truncation "
                                    "of the page began since the store",
                                    copy.generation))};
    }
    return {PrivateSource::object, std::nullopt};
  }
  if (copy.exact && cuts.begun_after == copy.cut_seq) {
    return {PrivateSource::private_copy, copy_lost(copy, to_string(obs.content))};
  }
  return {PrivateSource::object, std::nullopt};
}

std::optional<Judgement> judge_private_refusal(const PrivateCopy& copy, const CutWindow& cuts) {
  if (copy.present && copy.exact && cuts.begun_after == copy.cut_seq) {
    return copy_lost(copy, "SIGBUS");
  }
  return std::nullopt;
}

}  // namespace vmcoh::oracle
