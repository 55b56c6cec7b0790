// The coordination region of a race: everything the actors of a scenario share, in memory mapped
// MAP_SHARED before any actor starts, so threads and forked processes use it alike.
//
// Per page, the owner (the one writer allowed to change the page) publishes its history:
//   log[s % kOpLogDepth] = {s, kind, method, ...}   what state s is (relaxed)
//   begun = s                                      (release) before the operation
//   done  = s                                      (release) after it returns
// A reader loads done (acquire), reads the page, issues an acquire fence, loads begun, and then
// reads the kinds of the states in [done, begun] from the log; a log slot already reused for a
// newer state makes the sample undecided rather than wrong.  The object's size is published the
// same way (size_begun / size_done, sizes[]), and so are the truncations that cut each page
// (cuts_begun / cuts_done), which decide what a MAP_PRIVATE copy may still show.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <vmcoh/oracle.hpp>
#include <vmcoh/shared_array.hpp>
#include <vmcoh/stamp.hpp>

namespace vmcoh::race {

using oracle::StateKind;

inline constexpr std::size_t kOpLogDepth = oracle::kMaxWindow;
inline constexpr std::size_t kMaxRecordedViolations = 16;

enum class OpMethod : std::uint8_t {
  none,
  pwrite,
  pwritev,
  lseek_write,
  punch,
  shrink,
  mmap_store,       // a copy of the stamp through the writer's own MAP_SHARED mapping
  store_pwrite,     // that, and a pwrite of the same stamp from another thread at the same time
  zero_range,       // fallocate(FALLOC_FL_ZERO_RANGE): a hole state, as a punch
  copy_file_range,  // from a scratch file holding the stamp
  splice,           // from a pipe the stamp was vmspliced into
  // The pinned writes of pin-vs-punch, logged with the operations they were in flight across.
  pvm,    // process_vm_writev()
  dio,    // an O_DIRECT preadv()
  uring,  // io_uring IORING_OP_READ_FIXED into a registered buffer
  // A hole state made by writing zeros, where the target cannot punch (9p has no fallocate).
  zero_write,
};
inline constexpr std::size_t kOpMethodCount = static_cast<std::size_t>(OpMethod::zero_write) + 1;
[[nodiscard]] std::string_view to_string(OpMethod method) noexcept;

// Whether the target takes an optional method (a write path, a pinned write), as a probe in
// setup found: unprobed methods are not used.
enum class MethodState : std::uint64_t { unprobed, supported, refused };
struct MethodProbe {
  MethodState state;
  char reason[320];  // why it was refused
};

// One operation on one page, as its owner logged it.
struct OpRecord {
  std::uint64_t tag;          // state << 8 | StateKind; published before begun
  std::uint64_t method;       // OpMethod
  std::uint64_t range_first;  // the operation covered pages [range_first, range_first+range_pages)
  std::uint64_t range_pages;
  std::uint64_t start_ns;  // monotonic_ns() before the call
  std::uint64_t end_ns;    // after it returned; 0 while in flight
  std::uint64_t pinned;    // OpMethod of a pinned write of an older state in flight across it
};

struct PageSlot {
  std::uint64_t begun;
  std::uint64_t done;
  std::uint64_t cuts_begun;
  std::uint64_t cuts_done;
  OpRecord log[kOpLogDepth];
};

struct SizeRecord {
  std::uint64_t generation;
  std::uint64_t size;
};

struct Control {
  std::uint64_t ready;  // actors that have opened and mapped the target
  std::uint64_t go;     // set by the parent once all are ready
  std::uint64_t stop;   // set by the parent when the run ends
  std::uint64_t start_ns;
  std::uint64_t writers_running;
  std::uint64_t size_begun;
  std::uint64_t size_done;
  SizeRecord sizes[kOpLogDepth];
  std::uint64_t violations;          // all of them, recorded or not
  std::uint64_t first_violation_ns;  // monotonic_ns() of the earliest violation reported; 0: none
  MethodProbe methods[kOpMethodCount];  // written in setup, before any actor starts
};

// What each actor counts (published from the actor's local copy now and then).
struct ActorCounters {
  std::uint64_t ops;        // writer operations
  std::uint64_t samples;    // reads judged or undecided
  std::uint64_t decisive;   // samples whose window held exactly one state and one size
  std::uint64_t undecided;  // samples whose window the logs could no longer describe
  std::uint64_t violations;
  std::uint64_t refused;         // loads that raised SIGBUS / preads that hit EOF, legally
  std::uint64_t torn;            // torn pages seen, legally, while an operation was in flight
  std::uint64_t private_stores;  // copy-on-write stores into MAP_PRIVATE mappings
  std::uint64_t preads;
  std::uint64_t glances;  // cheap unjudged looks at a page (Sampler::glance), each one a fault
  // pin-vs-punch: pinned writes carried across a punch and a rewrite, per method, and rewrites
  // still in write(2) when the pinned write was let go (the target waited for the pin).
  std::uint64_t pinned_pvm;
  std::uint64_t pinned_dio;
  std::uint64_t pinned_uring;
  std::uint64_t pin_waits;
};

enum class ReadPath : std::uint8_t { shared_load, private_load, private_store, pread };
[[nodiscard]] std::string_view to_string(ReadPath path) noexcept;

// One look at a page after a violation: what the access returned.
struct Look {
  std::uint32_t taken;    // 1 if the look was taken
  std::uint32_t refused;  // SIGBUS, or EOF for pread
  Content content;
  StampHeader header;
};

// What the reader saw of a page once it had judged a violation through one of its mappings: its
// /proc/self/pagemap entry (is a PTE present, and to which frame), the page loaded again through
// the same mapping, and the page read with pread.  Writers keep running meanwhile (the op log
// says what ran since), but a stale PTE that stays shows the same bytes again, and stale data
// that pread shows too is in the object itself, not in page tables.
struct Aftermath {
  std::uint64_t pagemap;     // the raw entry; 0 if it could not be read
  std::uint64_t kpageflags;  // of the entry's frame (is it part of a large folio?); 0: unknown
  Look reload;
  Look pread;
};

// Everything known about one violation, fixed-size so an actor process can hand it to the parent.
struct ViolationRecord {
  std::uint64_t complete;  // set last (release): the record may be read
  std::uint64_t t_ns;      // since the start of the run
  std::uint32_t actor;
  ReadPath path;
  oracle::Finding finding;
  Content content;
  std::uint64_t page;
  std::uint64_t offset;
  std::uint64_t observed;  // the access returned bytes: content and header describe them
  std::uint64_t window_done;
  std::uint64_t window_begun;
  StateKind window_kinds[kOpLogDepth];
  std::uint64_t size_done;
  std::uint64_t size_begun;
  std::uint64_t size_min;
  std::uint64_t size_max;
  StampHeader header;
  OpRecord log[kOpLogDepth];
  char reason[320];
  char layout[320];
  Aftermath after;
};

class SharedState {
 public:
  SharedState(std::size_t pages, std::size_t actors, std::size_t hot_slots);

  [[nodiscard]] std::size_t pages() const noexcept { return pages_.size(); }
  [[nodiscard]] Control& control() const noexcept { return control_[0]; }
  [[nodiscard]] PageSlot& page(std::size_t index) const noexcept { return pages_[index]; }

  // --- the page's owner ---
  // The state the page is in (or is being moved to) and its kind, as the owner last published.
  [[nodiscard]] std::uint64_t last_state(std::size_t page) const noexcept;
  [[nodiscard]] StateKind last_kind(std::size_t page) const noexcept;
  // Logs and publishes the start of the operation making `state` of `page`; `pinned` names a
  // pinned write of an older state that is in flight across it.
  void begin_op(std::size_t page, std::uint64_t state, StateKind kind, OpMethod method,
                std::size_t range_first, std::size_t range_pages,
                OpMethod pinned = OpMethod::none) const noexcept;
  void end_op(std::size_t page, std::uint64_t state) const noexcept;

  // --- the resizer ---
  void begin_resize(std::uint64_t generation, std::uint64_t size) const noexcept;
  void end_resize(std::uint64_t generation) const noexcept;
  // Around a truncation that cuts `page` off (before begin_op, after end_op).
  void begin_cut(std::size_t page) const noexcept;
  void end_cut(std::size_t page) const noexcept;

  // --- setup: the optional methods the target takes ---
  void set_method(OpMethod method, MethodState state, std::string_view reason = {}) const noexcept;
  [[nodiscard]] bool method_supported(OpMethod method) const noexcept;
  struct MethodReport {
    OpMethod method;
    bool supported;
    std::string reason;
  };
  // The probed methods, in enum order.
  [[nodiscard]] std::vector<MethodReport> probed_methods() const;

  // --- readers ---
  // The size in force once the last resize begun is done (bytes); the object's full size if the
  // slot is being rewritten.  For aiming at the EOF, not for judging.
  [[nodiscard]] std::uint64_t latest_size() const noexcept;
  [[nodiscard]] std::optional<oracle::Window> window(std::size_t page, std::uint64_t done,
                                                     std::uint64_t begun) const noexcept;
  [[nodiscard]] std::optional<oracle::SizeWindow> size_window(std::uint64_t done,
                                                              std::uint64_t begun) const noexcept;
  [[nodiscard]] std::array<OpRecord, kOpLogDepth> op_log(std::size_t page) const noexcept;

  // Hot pages: each writing actor says which page it is about to change (and so which one it
  // changed last), so readers can aim at the race and at its aftermath.
  void set_hot(std::size_t slot, std::size_t page) const noexcept;
  [[nodiscard]] std::size_t hot(std::size_t slot) const noexcept;
  [[nodiscard]] std::size_t previous_hot(std::size_t slot) const noexcept;
  [[nodiscard]] std::size_t hot_slots() const noexcept { return hot_.size() / 2; }

  // --- reporting ---
  [[nodiscard]] ActorCounters& counters(std::size_t actor) const noexcept {
    return counters_[actor];
  }
  [[nodiscard]] ActorCounters total_counters() const noexcept;
  void record_violation(const ViolationRecord& record) const noexcept;
  [[nodiscard]] std::uint64_t violation_count() const noexcept;
  // monotonic_ns() when the earliest violation was found, or nullopt.
  [[nodiscard]] std::optional<std::uint64_t> first_violation_ns() const noexcept;
  [[nodiscard]] std::vector<ViolationRecord> recorded_violations() const;

 private:
  SharedArray<Control> control_;
  SharedArray<PageSlot> pages_;
  SharedArray<ActorCounters> counters_;
  SharedArray<std::uint64_t> hot_;
  SharedArray<ViolationRecord> violations_;
};

}  // namespace vmcoh::race
