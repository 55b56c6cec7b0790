// The coherence oracle: given what a read showed and what the writers had published around it,
// is the read legal?  Pure functions, so the gtest suite can feed them synthetic histories.
//
// The history of a page is a sequence of states s = 0, 1, 2, ...: state 0 is the initial hole and
// every later state is made by one operation, which leaves the page either DATA (a stamp of
// generation s), a HOLE (punched) or TRUNCATED (cut off by a shrink; reads zero once regrown).
// Writers publish two counters per page: begun (set before the operation) and done (after it).
// A reader loads done (acquire), reads the page, then loads begun (after an acquire fence); the
// page may then show any state of the window [done, begun] and nothing else:
//  - zero is legal iff some state of the window is a hole (or truncated, or the initial state);
//  - valid(g) is legal iff g is a DATA state of the window (g < done is stale data);
//  - a torn page is legal only while an operation is in flight (begun > done), and only if every
//    byte of it comes from some state of the window;
//  - misplaced and foreign pages are never legal.
// Two more judges cover what truncation adds: whether an access may raise SIGBUS (or pread may
// see EOF) given the sizes published around it, and what a MAP_PRIVATE copy may show.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

#include <vmcoh/stamp.hpp>

namespace vmcoh::oracle {

enum class StateKind : std::uint8_t { hole = 0, data = 1, truncated = 2 };
[[nodiscard]] std::string_view to_string(StateKind kind) noexcept;

// The widest window the oracle judges; wider samples are counted as undecided.
inline constexpr std::size_t kMaxWindow = 16;

struct Window {
  std::uint64_t done = 0;   // the last state whose operation had completed before the read
  std::uint64_t begun = 0;  // the last state whose operation had begun by the end of the read
  std::array<StateKind, kMaxWindow> kinds{};  // kinds[i] is the kind of state done + i

  // Builds the window [done, begun] asking kind_of(s) for each state s > 0 (state 0 is the
  // initial hole).  nullopt if the window is wider than kMaxWindow or kind_of does not know.
  template <class KindOf>
  static std::optional<Window> build(std::uint64_t done, std::uint64_t begun, KindOf&& kind_of);
  // For tests: the window starting at `done` whose states have these kinds.
  static Window of(std::uint64_t done, std::initializer_list<StateKind> kinds);

  [[nodiscard]] std::size_t width() const noexcept { return begun - done + 1; }
  [[nodiscard]] bool in_flight() const noexcept { return begun != done; }
  [[nodiscard]] bool contains(std::uint64_t state) const noexcept {
    return state >= done && state <= begun;
  }
  [[nodiscard]] StateKind kind(std::uint64_t state) const noexcept { return kinds[state - done]; }
  [[nodiscard]] bool admits_zero() const noexcept;
};
// "[12,13] 12:data 13:hole"
[[nodiscard]] std::string describe(const Window& window);

enum class Finding : std::uint8_t {
  // legal
  zero,
  valid,
  torn_in_flight,
  private_copy,
  within_eof,
  beyond_eof,
  // violations
  stale_zero,   // zero, but every state of the window is DATA (a stale zero-page mapping)
  stale_data,   // valid(g) with g older than the last completed operation
  future_data,  // valid(g) with g newer than any begun operation
  data_in_hole_state,
  torn_at_rest,         // torn with no operation in flight
  torn_outside_window,  // torn, with bytes from no state of the window
  misplaced,
  foreign,
  private_leak,       // a MAP_PRIVATE store visible through the object
  fault_within_eof,   // SIGBUS (or EOF from pread) below the smallest size of the window
  access_beyond_eof,  // an access beyond the largest size of the window succeeded
  private_copy_survived_truncation,
  private_copy_lost,
  private_copy_corrupt,
  private_copy_resurrected,
};
[[nodiscard]] std::string_view to_string(Finding finding) noexcept;

struct Judgement {
  bool legal = true;
  Finding finding = Finding::zero;
  std::string reason;  // why it is a violation; empty when legal
};

struct PageContext {
  std::uint64_t run_id = 0;
  std::uint64_t offset = 0;  // of the page read
};

[[nodiscard]] Judgement judge_content(const PageImage& page, const Observation& obs,
                                      const Window& window, const PageContext& ctx);

// Where each word of `page` comes from, as runs: "words 0-255: gen 12; words 256-511: zero".
[[nodiscard]] std::string describe_layout(const PageImage& page, const PageContext& ctx,
                                          const Window& window);

// --- extent: SIGBUS and EOF -------------------------------------------------------------------

enum class Access : std::uint8_t { mmap_load, mmap_store, pread };
[[nodiscard]] std::string_view to_string(Access access) noexcept;

// The object sizes published around an access: every size from generation `done` (completed
// before the access) to generation `begun` (begun by its end) may have been in force.
struct SizeWindow {
  std::uint64_t done = 0;
  std::uint64_t begun = 0;
  std::uint64_t min_size = 0;
  std::uint64_t max_size = 0;
};

// `refused`: the access raised SIGBUS (mmap) or read nothing (pread).  Refusal is legal iff the
// page lies beyond the smallest size; success is legal iff it lies below the largest.
[[nodiscard]] Judgement judge_extent(Access access, bool refused, std::uint64_t offset,
                                     const SizeWindow& sizes);

// --- MAP_PRIVATE copies -----------------------------------------------------------------------

// What a reader knows of its own copy-on-write copy of one page.
struct PrivateCopy {
  bool present = false;  // a store went into the private mapping and its copy was not seen gone
  bool exact = false;    // the store ran with no truncation of the page in flight: the copy holds
                         // exactly the private stamp `generation`
  std::uint64_t generation = 0;
  std::uint64_t cut_seq = 0;  // truncations of the page begun by the end of the store
};

// Truncations of the page: `done_before` completed before the load, `begun_after` begun by its
// end.  A truncation that completed after the store must have discarded the copy; one that never
// began must have left it alone.
struct CutWindow {
  std::uint64_t done_before = 0;
  std::uint64_t begun_after = 0;
};

enum class PrivateSource : std::uint8_t { private_copy, object };
struct PrivateView {
  // Where the bytes came from; `object` also means the copy is gone (the caller forgets it).
  PrivateSource source = PrivateSource::object;
  // Set when the copy decides the case; otherwise the caller judges the page as object content.
  std::optional<Judgement> judgement;
};

// Judges a load through the private mapping of `actor`.  `window` and `ctx` describe the object
// page, for a load that straddled the truncation discarding the copy (its bytes are then a
// mixture of the private stamp and object states).
[[nodiscard]] PrivateView judge_private(const PageImage& page, const Observation& obs,
                                        const PrivateCopy& copy, const CutWindow& cuts,
                                        const Window& window, const PageContext& ctx,
                                        std::uint32_t actor);
// A load through the private mapping raised SIGBUS, so the copy is gone: a violation if the copy
// was exact and no truncation of the page has begun since the store.
[[nodiscard]] std::optional<Judgement> judge_private_refusal(const PrivateCopy& copy,
                                                             const CutWindow& cuts);

// --- implementation of the template -----------------------------------------------------------

template <class KindOf>
std::optional<Window> Window::build(std::uint64_t done, std::uint64_t begun, KindOf&& kind_of) {
  if (begun < done || begun - done >= kMaxWindow) return std::nullopt;
  Window window;
  window.done = done;
  window.begun = begun;
  for (std::uint64_t s = done; s <= begun; ++s) {
    if (s == 0) {
      window.kinds[0] = StateKind::hole;
      continue;
    }
    const std::optional<StateKind> kind = kind_of(s);
    if (!kind) return std::nullopt;
    window.kinds[s - done] = *kind;
  }
  return window;
}

}  // namespace vmcoh::oracle
