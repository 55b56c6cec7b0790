#include "sampler.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

#include <vmcoh/error.hpp>
#include <vmcoh/pagemap.hpp>
#include <vmcoh/sigbus_probe.hpp>

namespace vmcoh::race {

namespace {

constexpr std::uint64_t kPublishEvery = 1024;
constexpr std::size_t kPmdSize = std::size_t{2} << 20;

const volatile std::uint64_t* words_at(const Mapping& map, std::uint64_t offset) {
  return reinterpret_cast<const volatile std::uint64_t*>(map.data() + offset);
}

Look look_from(const PageImage& image, bool refused, std::uint64_t offset, std::uint64_t run_id) {
  Look look{};
  look.taken = 1;
  look.refused = refused ? 1 : 0;
  if (!refused) {
    const Observation obs = classify(image, offset, run_id);
    look.content = obs.content;
    look.header = obs.header;
  }
  return look;
}

}  // namespace

Sampler::Sampler(ActorEnv& env, const Target& target, bool with_private, SharedMap shared_map)
    : env_(env), target_(target) {
  const std::size_t length = env.shared().pages() * kPageSize;
  if (shared_map == SharedMap::pmd_aligned) {
    const std::size_t whole = (length + kPmdSize - 1) / kPmdSize * kPmdSize;
    shared_map_ = Mapping::map_aligned(whole, kPmdSize, PROT_READ, MAP_SHARED, target.fd());
  } else {
    shared_map_ = Mapping::map(length, PROT_READ, MAP_SHARED, target.fd());
  }
  if (with_private) {
    private_map_ = Mapping::map(length, PROT_READ | PROT_WRITE, MAP_PRIVATE, target.fd());
    copies_.resize(env.shared().pages());
  }
}

std::size_t Sampler::pick_page(std::size_t first, std::size_t end) {
  Rng& rng = env_.rng();
  const SharedState& shared = env_.shared();
  const std::uint64_t roll = rng.below(4);
  if (shared.hot_slots() > 0 && roll < 2) {
    const std::size_t slot = rng.below(shared.hot_slots());
    const std::size_t hot = roll == 0 ? shared.hot(slot) : shared.previous_hot(slot);
    if (hot >= first && hot < end) return hot;
  }
  return first + rng.below(end - first);
}

template <class Access>
Sampler::Reading Sampler::read(std::size_t page, Access&& access) {
  const SharedState& shared = env_.shared();
  PageSlot& slot = shared.page(page);
  Control& control = shared.control();
  Reading r{};
  r.page = page;
  r.offset = page * kPageSize;
  r.size_done = atomic(control.size_done).load(std::memory_order_acquire);
  r.cuts_done = atomic(slot.cuts_done).load(std::memory_order_acquire);
  r.done = atomic(slot.done).load(std::memory_order_acquire);
  r.refused = access();
  // Everything the access saw happened before the counters below are read: any operation whose
  // effect it saw had published begun, so the window [done, begun] covers it.
  std::atomic_thread_fence(std::memory_order_acquire);
  r.begun = atomic(slot.begun).load(std::memory_order_acquire);
  r.cuts_begun = atomic(slot.cuts_begun).load(std::memory_order_acquire);
  r.size_begun = atomic(control.size_begun).load(std::memory_order_acquire);
  return r;
}

void Sampler::shared_load(std::size_t page) {
  const Reading r = read(page, [&] {
    return probe_load(image_.words.data(), words_at(shared_map_, page * kPageSize), kWordsPerPage)
        .has_value();
  });
  judge(ReadPath::shared_load, oracle::Access::mmap_load, r);
}

void Sampler::pread(std::size_t page) {
  ssize_t n = 0;
  int err = 0;
  const Reading r = read(page, [&] {
    n = ::pread(target_.fd(), image_.bytes(), kPageSize, static_cast<off_t>(page * kPageSize));
    err = errno;
    return n == 0;
  });
  if (n < 0) throw_errno(fmt::format("pread page {}", page), err);
  if (n != 0 && static_cast<std::size_t>(n) != kPageSize) {
    throw std::runtime_error(fmt::format("pread of page {} returned {} bytes", page, n));
  }
  ++env_.counters().preads;
  judge(ReadPath::pread, oracle::Access::pread, r);
}

void Sampler::private_access(std::size_t page) {
  if (!copies_[page].present && env_.rng().chance(1, 2)) return private_store(page);
  const Reading r = read(page, [&] {
    return probe_load(image_.words.data(), words_at(private_map_, page * kPageSize), kWordsPerPage)
        .has_value();
  });
  judge(ReadPath::private_load, oracle::Access::mmap_load, r);
}

void Sampler::drop_shared(std::size_t page) {
  check_syscall(::madvise(shared_map_.data() + page * kPageSize, kPageSize, MADV_DONTNEED),
                "madvise(MADV_DONTNEED) of the shared mapping");
}

void Sampler::remap_shared(std::size_t first, std::size_t count) {
  if ((first + count) * kPageSize > shared_map_.size()) {
    throw std::logic_error(
        fmt::format("remap_shared: pages {}-{} beyond the mapping", first, first + count - 1));
  }
  shared_map_.remap(first * kPageSize, count * kPageSize, PROT_READ, MAP_SHARED, target_.fd(),
                    static_cast<off_t>(first * kPageSize));
}

Sampler::Glance Sampler::glance(std::size_t page) {
  const SharedState& shared = env_.shared();
  PageSlot& slot = shared.page(page);
  Control& control = shared.control();
  std::array<std::uint64_t, 3> header{};  // magic, offset, generation
  Glance g{};
  g.size_done = atomic(control.size_done).load(std::memory_order_acquire);
  g.done = atomic(slot.done).load(std::memory_order_acquire);
  const bool refused =
      probe_load(header.data(), words_at(shared_map_, page * kPageSize), header.size()).has_value();
  std::atomic_thread_fence(std::memory_order_acquire);
  g.begun = atomic(slot.begun).load(std::memory_order_acquire);
  g.size_begun = atomic(control.size_begun).load(std::memory_order_acquire);
  ++env_.counters().glances;

  const std::optional<oracle::SizeWindow> sizes = shared.size_window(g.size_done, g.size_begun);
  const std::optional<oracle::Window> window = shared.window(page, g.done, g.begun);
  if (!sizes || !window) return g;
  const std::uint64_t offset = page * kPageSize;
  if (refused || offset >= sizes->max_size) {
    g.suspicious = refused != (offset >= sizes->min_size);
  } else if (header[0] == 0) {
    g.suspicious = !window->admits_zero();
  } else if (header[0] != kStampMagic || header[1] != offset) {
    g.suspicious = true;
  } else {
    g.suspicious = header[2] < window->done || header[2] > window->begun;
  }
  return g;
}

void Sampler::refault(std::size_t page, std::size_t faults, std::size_t linger) {
  for (std::size_t i = 0; i < faults && !env_.stopping(); ++i) {
    drop_shared(page);
    const Glance first = glance(page);
    bool suspicious = first.suspicious;
    for (std::size_t j = 0; j < kSettleGlances && !suspicious; ++j) {
      if (first.settled_by(first)) break;  // nothing raced the fault
      const Glance again = glance(page);
      suspicious = again.suspicious;
      if (first.settled_by(again)) break;
    }
    if (suspicious) break;
  }
  for (std::size_t i = 0; i <= linger && !env_.stopping(); ++i) shared_load(page);
}

void Sampler::private_store(std::size_t page) {
  const std::uint64_t offset = page * kPageSize;
  const std::uint64_t generation = ++private_generation_;
  const PageImage stamp = make_stamp(
      {env_.run_id(), offset, generation, kStampPrivate, static_cast<std::uint32_t>(env_.actor())});
  std::byte* const start = private_map_.data() + offset;
  auto* dst = reinterpret_cast<volatile std::uint64_t*>(start);
  std::optional<SigbusFault> fault;
  const Reading r = read(page, [&] {
    fault = probe_store(dst, stamp.words.data(), kWordsPerPage);
    return fault.has_value();
  });
  ++env_.counters().private_stores;

  oracle::PrivateCopy& copy = copies_[page];
  copy.generation = generation;
  copy.cut_seq = r.cuts_begun;
  // Exact only if no truncation of the page was in flight or began during the store (cuts_done
  // before it equals cuts_begun after it); otherwise the copy may mix private and object bytes.
  copy.exact = !fault && r.cuts_done == r.cuts_begun;
  // A fault on the first word stored nothing, so there is no copy.
  copy.present = !fault || fault->address != start;
  judge(ReadPath::private_store, oracle::Access::mmap_store, r);
}

void Sampler::tally_sample() {
  ActorCounters& counters = env_.counters();
  if (++counters.samples % kPublishEvery == 0) env_.publish_counters();
}

void Sampler::judge(ReadPath path, oracle::Access access, const Reading& r) {
  ActorCounters& counters = env_.counters();
  tally_sample();
  const SharedState& shared = env_.shared();
  const std::optional<oracle::SizeWindow> sizes = shared.size_window(r.size_done, r.size_begun);
  const std::optional<oracle::Window> window = shared.window(r.page, r.done, r.begun);
  if (!sizes || !window) {
    ++counters.undecided;
    return;
  }
  if (window->width() == 1 && sizes->done == sizes->begun) ++counters.decisive;

  const oracle::Judgement extent = oracle::judge_extent(access, r.refused, r.offset, *sizes);
  if (!extent.legal) return report(path, r, {&extent, &*window, &*sizes, nullptr});
  const oracle::CutWindow cuts{r.cuts_done, r.cuts_begun};
  const bool through_private = path == ReadPath::private_load;
  if (r.refused) {
    ++counters.refused;
    if (through_private) {
      const std::optional<oracle::Judgement> lost =
          oracle::judge_private_refusal(copies_[r.page], cuts);
      copies_[r.page] = {};
      if (lost) report(path, r, {&*lost, &*window, &*sizes, nullptr});
    }
    return;
  }
  if (path == ReadPath::private_store) return;  // what it wrote is checked by later loads

  const oracle::PageContext ctx{env_.run_id(), r.offset};
  const Observation obs = classify(image_, r.offset, env_.run_id());
  if (through_private) {
    const oracle::PrivateView view = oracle::judge_private(
        image_, obs, copies_[r.page], cuts, *window, ctx, static_cast<std::uint32_t>(env_.actor()));
    if (view.source == oracle::PrivateSource::object) copies_[r.page] = {};
    if (view.judgement) {
      if (!view.judgement->legal) report(path, r, {&*view.judgement, &*window, &*sizes, &obs});
      return;
    }
  }
  const oracle::Judgement content = oracle::judge_content(image_, obs, *window, ctx);
  if (!content.legal) return report(path, r, {&content, &*window, &*sizes, &obs});
  if (content.finding == oracle::Finding::torn_in_flight) ++counters.torn;
}

void Sampler::report(ReadPath path, const Reading& r, const Verdict& v) {
  ViolationRecord rec{};
  rec.path = path;
  rec.finding = v.judgement->finding;
  rec.page = r.page;
  rec.offset = r.offset;
  rec.window_done = v.window->done;
  rec.window_begun = v.window->begun;
  std::copy(v.window->kinds.begin(), v.window->kinds.end(), rec.window_kinds);
  rec.size_done = v.sizes->done;
  rec.size_begun = v.sizes->begun;
  rec.size_min = v.sizes->min_size;
  rec.size_max = v.sizes->max_size;
  if (v.observation != nullptr) {
    rec.observed = 1;
    rec.content = v.observation->content;
    rec.header = v.observation->header;
    if (v.observation->content != Content::zero) {
      const std::string layout =
          oracle::describe_layout(image_, {env_.run_id(), r.offset}, *v.window);
      fmt::format_to_n(rec.layout, sizeof rec.layout - 1, "{}", layout);
    }
  }
  const auto log = env_.shared().op_log(r.page);
  std::copy(log.begin(), log.end(), rec.log);
  fmt::format_to_n(rec.reason, sizeof rec.reason - 1, "{}", v.judgement->reason);
  if (path == ReadPath::shared_load || path == ReadPath::private_load) {
    rec.after = aftermath(path == ReadPath::shared_load ? shared_map_ : private_map_, r.offset);
  }
  env_.report(rec);
}

Aftermath Sampler::aftermath(const Mapping& map, std::uint64_t offset) {
  Aftermath after{};
  const PagemapEntry entry = pagemap_entry(map.data() + offset);
  after.pagemap = entry.raw;
  if (const std::optional<PageFlags> flags = page_flags(entry.pfn())) {
    after.kpageflags = flags->raw;
  }
  PageImage image;
  const bool faulted =
      probe_load(image.words.data(), words_at(map, offset), kWordsPerPage).has_value();
  after.reload = look_from(image, faulted, offset, env_.run_id());
  const ssize_t n = ::pread(target_.fd(), image.bytes(), kPageSize, static_cast<off_t>(offset));
  if (n == 0 || static_cast<std::size_t>(n) == kPageSize) {
    after.pread = look_from(image, n == 0, offset, env_.run_id());
  }
  return after;
}

void read_object_until_stopped(ActorEnv& env) {
  const Target target = env.open_target();
  Sampler sampler(env, target, false);
  const std::size_t pages = env.shared().pages();
  env.start();
  while (!env.stopping()) {
    const std::size_t page = sampler.pick_page(0, pages);
    if (env.rng().chance(1, kPreadOneIn)) {
      sampler.pread(page);
    } else {
      sampler.shared_load(page);
    }
  }
}

}  // namespace vmcoh::race
