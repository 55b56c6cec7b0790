#include "scene.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

#include <fmt/format.h>

#include <vmcoh/sigbus_probe.hpp>

namespace vmcoh::interleave {

namespace {

using std::chrono::steady_clock;

constexpr std::chrono::microseconds kPollInterval{200};

off_t page_offset(std::uint64_t index) { return static_cast<off_t>(index * kPageSize); }

// Polls `done` until it holds or `bound` passes; allocation-free.
template <class Done>
bool poll_until(Done done, std::chrono::milliseconds bound) {
  const auto deadline = steady_clock::now() + bound;
  for (;;) {
    if (done()) return true;
    if (steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(kPollInterval);
  }
}

Image filled(std::string label, std::uint8_t byte) {
  Image image{std::move(label), {}};
  std::memset(image.page.bytes(), byte, kPageSize);
  return image;
}

std::string ms(std::chrono::milliseconds d) { return fmt::format("{} ms", d.count()); }

}  // namespace

Load load_page(const std::byte* base, std::uint64_t index) noexcept {
  Load load;
  const auto* src = reinterpret_cast<const volatile std::uint64_t*>(base + index * kPageSize);
  load.sigbus = probe_load(load.page.words.data(), src, kWordsPerPage).has_value();
  return load;
}

int pwrite_page(int fd, std::uint64_t index, const PageImage& page) noexcept {
  const ssize_t n = ::pwrite(fd, page.bytes(), kPageSize, page_offset(index));
  if (n < 0) return errno;
  return n == static_cast<ssize_t>(kPageSize) ? 0 : EIO;
}

int store_page(std::byte* base, std::uint64_t index, const PageImage& page) noexcept {
  auto* dst = reinterpret_cast<volatile std::uint64_t*>(base + index * kPageSize);
  return probe_store(dst, page.words.data(), kWordsPerPage).has_value() ? EFAULT : 0;
}

int punch_page(int fd, std::uint64_t index) noexcept {
  vmcoh_range range{};
  range.offset = index * kPageSize;
  range.length = kPageSize;
  return ::ioctl(fd, VMCOH_IOC_PUNCH_HOLE, &range) == 0 ? 0 : errno;
}

int set_size_pages(int fd, std::uint64_t pages) noexcept {
  vmcoh_set_size arg{};
  arg.size = pages * kPageSize;
  return ::ioctl(fd, VMCOH_IOC_SET_SIZE, &arg) == 0 ? 0 : errno;
}

Context::Context(Target target, std::uint64_t run_id)
    : target_(std::move(target)),
      run_id_(run_id),
      zero_(filled("the zero page", 0)),
      poison_(filled(fmt::format("poison (every byte {:#x}, a freed block)", VMCOH_POISON_BYTE),
                     VMCOH_POISON_BYTE)) {}

void Context::abandon(Mapping mapping) { abandoned_.push_back(std::move(mapping)); }

void Context::abandon(std::shared_ptr<void> state) { abandoned_state_.push_back(std::move(state)); }

Scene::Scene(Context& context, Repetition& out) : context_(context), out_(out) {
  check_op(interleave::set_size_pages(fd(), kPages), "SET_SIZE to the scene's size");
  vmcoh_range all{};
  all.length = kPages * kPageSize;
  check_op(::ioctl(fd(), VMCOH_IOC_PUNCH_HOLE, &all) == 0 ? 0 : errno, "PUNCH_HOLE of the object");
}

Scene::~Scene() {
  hold_.reset();
  for (Worker* side : {&a(), &b()}) {
    if (!context_.hung() && !side->wait(kJoinBound)) context_.set_hung();
  }
  if (context_.hung()) {
    for (Mapping& mapping : mappings_) context_.abandon(std::move(mapping));
    for (std::shared_ptr<void>& state : kept_) context_.abandon(std::move(state));
  }
}

std::byte* Scene::map(int prot, int flags) {
  mappings_.push_back(Mapping::map(kPages * kPageSize, prot, flags, fd()));
  return mappings_.back().data();
}

const Image& Scene::stamp(std::string label, std::uint32_t flags) {
  const auto actor = static_cast<std::uint32_t>(stamps_.size());
  const PageImage page =
      make_stamp({context_.run_id(), kIndex * kPageSize, out_.number + 1, flags, actor});
  const StampHeader h = header_of(page);
  stamps_.push_back(
      {fmt::format("{} (stamp gen {} actor {})", label, h.generation, h.actor), page});
  return stamps_.back();
}

void Scene::pwrite(const Image& image) {
  check_op(pwrite_page(fd(), kIndex, image.page), fmt::format("pwrite() of {}", image.label));
}

void Scene::resize(std::uint64_t pages) {
  check_op(interleave::set_size_pages(fd(), pages), fmt::format("SET_SIZE to {} pages", pages));
}

void Scene::arm(std::uint64_t point, std::uint64_t ops) {
  try {
    hold_.emplace(fd(), point, kIndex, ops, kParkTimeout);
  } catch (const std::system_error& e) {
    throw NotDriven(e.what());
  }
}

void Scene::wait_parked() {
  if (!hold_->wait_parked(kStepBound)) {
    throw NotDriven(fmt::format("no task parked at {} within {}", hold_point_name(hold_->point()),
                                ms(kStepBound)));
  }
}

void Scene::release() {
  const std::uint64_t point = hold_->point();
  if (!hold_->release()) {
    throw NotDriven(fmt::format("no task was parked at {} any more at release (park timed out)",
                                hold_point_name(point)));
  }
}

std::uint64_t Scene::entry_lock_waits() const { return device::get_stats(fd()).entry_lock_waits; }

Scene::Progress Scene::wait_returned_or_blocked(Worker& side, std::uint64_t waits_before,
                                                std::string_view who) {
  Progress progress = Progress::returned;
  const bool reached = poll_until(
      [&] {
        if (!side.busy()) {
          progress = Progress::returned;
          return true;
        }
        if (entry_lock_waits() > waits_before) {
          progress = Progress::blocked;
          return true;
        }
        return false;
      },
      kStepBound);
  if (!reached) {
    throw NotDriven(fmt::format("{} neither returned nor slept on a locked entry within {}", who,
                                ms(kStepBound)));
  }
  return progress;
}

void Scene::wait_returned(Worker& side, std::string_view who) {
  if (!side.wait(kStepBound)) {
    throw NotDriven(fmt::format("{} did not return within {}", who, ms(kStepBound)));
  }
}

void Scene::join(Worker& side, std::string_view who) {
  if (!side.wait(kJoinBound)) {
    context_.set_hung();
    throw Hung(
        fmt::format("{} is still inside the kernel {} after it was let go", who, ms(kJoinBound)));
  }
  if (const auto failure = side.failure()) throw NotDriven(fmt::format("{}: {}", who, *failure));
}

void Scene::note(std::string what) { notes_.push_back(std::move(what)); }

void Scene::check_op(int err, std::string_view what) {
  if (err != 0) {
    throw NotDriven(fmt::format("{} failed: {}", what, std::generic_category().message(err)));
  }
}

void Scene::expect_exactly(std::string check, const Load& seen, const Image& legal) {
  if (!seen.sigbus && seen.page == legal.page) return;
  violation(std::move(check), legal.label, seen);
}

void Scene::expect_words_from(std::string check, const Load& seen,
                              std::initializer_list<const Image*> legal) {
  bool ok = !seen.sigbus;
  for (std::size_t w = 0; ok && w < kWordsPerPage; ++w) {
    ok = false;
    for (const Image* image : legal) ok = ok || seen.page.words[w] == image->page.words[w];
  }
  if (ok) return;
  std::string expected;
  for (const Image* image : legal) {
    expected += expected.empty() ? "" : " or ";
    expected += image->label;
  }
  violation(std::move(check), expected + ", word by word", seen);
}

void Scene::expect_sigbus(std::string check, const Load& seen) {
  if (!seen.sigbus) violation(std::move(check), "SIGBUS", seen);
}

void Scene::require_exactly(std::string_view what, const Load& seen, const Image& image) const {
  if (!seen.sigbus && seen.page == image.page) return;
  throw NotDriven(fmt::format("{}: expected {}, observed {}", what, image.label, describe(seen)));
}

std::string Scene::describe(const Load& seen) const {
  if (seen.sigbus) return "SIGBUS";
  std::vector<const Image*> known = {&zero(), &poison()};
  for (const Image& image : stamps_) known.push_back(&image);
  for (const Image* image : known) {
    if (seen.page == image->page) return image->label;
  }
  // A mixture: count the words each known image explains (the first that does).
  std::vector<std::size_t> counts(known.size(), 0);
  std::size_t unexplained = 0;
  for (std::size_t w = 0; w < kWordsPerPage; ++w) {
    std::size_t k = 0;
    while (k < known.size() && seen.page.words[w] != known[k]->page.words[w]) ++k;
    k < known.size() ? ++counts[k] : ++unexplained;
  }
  std::string parts;
  for (std::size_t k = 0; k < known.size(); ++k) {
    if (counts[k] == 0) continue;
    parts += fmt::format("{}{} word{} of {}", parts.empty() ? "" : ", ", counts[k],
                         counts[k] == 1 ? "" : "s", known[k]->label);
  }
  if (unexplained == 0) return "a mixture: " + parts;
  const Observation obs = classify(seen.page, kIndex * kPageSize, context_.run_id());
  return fmt::format("{} unrecognised word{}{}{} (page classified {}: {})", unexplained,
                     unexplained == 1 ? "" : "s", parts.empty() ? "" : ", ", parts,
                     to_string(obs.content), vmcoh::describe(obs.header));
}

void Scene::violation(std::string check, std::string expected, const Load& seen) {
  std::string context;
  for (const std::string& n : notes_) context += (context.empty() ? "" : "; ") + n;
  out_.violations.push_back({std::move(check), std::move(expected), describe(seen), context});
}

}  // namespace vmcoh::interleave
