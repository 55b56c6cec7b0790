#include "page_ops.hpp"

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <system_error>

#include <fmt/format.h>

#include <vmcoh/error.hpp>

namespace vmcoh::race {

namespace {

void check_complete(std::string_view what, std::uint64_t offset, std::size_t done,
                    std::size_t length = kPageSize) {
  if (done != length) {
    throw std::runtime_error(
        fmt::format("{} at offset {:#x} wrote {} of {} bytes", what, offset, done, length));
  }
}

}  // namespace

void write_page(int fd, std::uint64_t offset, const PageImage& page, OpMethod method) {
  const auto off = static_cast<off_t>(offset);
  ssize_t written = 0;
  switch (method) {
    case OpMethod::pwrite:
      written = check_syscall(::pwrite(fd, page.bytes(), kPageSize, off), "pwrite");
      break;
    case OpMethod::pwritev: {
      // Two halves: the copy into the page happens in two steps.
      const iovec iov[2] = {{const_cast<std::byte*>(page.bytes()), kPageSize / 2},
                            {const_cast<std::byte*>(page.bytes()) + kPageSize / 2, kPageSize / 2}};
      written = check_syscall(::pwritev(fd, iov, 2, off), "pwritev");
      break;
    }
    case OpMethod::lseek_write:
      check_syscall(::lseek(fd, off, SEEK_SET), "lseek");
      written = check_syscall(::write(fd, page.bytes(), kPageSize), "write");
      break;
    default:
      throw std::logic_error(fmt::format("write_page: {} is no write method", to_string(method)));
  }
  check_complete(to_string(method), offset, static_cast<std::size_t>(written));
}

namespace {

// What a target that lacks an optional method answers.
bool is_refusal(const std::system_error& e) {
  const int err = e.code().value();
  return err == EINVAL || err == EOPNOTSUPP || err == EXDEV || err == ENODEV;
}

// Runs `probe` and publishes whether the target took `method`.
template <class Probe>
void probe_method(const SharedState& shared, OpMethod method, Probe&& probe) {
  try {
    probe();
  } catch (const std::system_error& e) {
    if (!is_refusal(e)) throw;
    shared.set_method(method, MethodState::refused, e.what());
    return;
  }
  shared.set_method(method, MethodState::supported);
}

}  // namespace

void copy_page(int source, int fd, std::uint64_t offset, const PageImage& page) {
  const ssize_t staged = check_syscall(::pwrite(source, page.bytes(), kPageSize, 0), "pwrite");
  check_complete("pwrite of the copy source", 0, static_cast<std::size_t>(staged));
  loff_t in = 0;
  auto out = static_cast<loff_t>(offset);
  std::size_t copied = 0;
  while (copied < kPageSize) {
    const ssize_t n = check_syscall(::copy_file_range(source, &in, fd, &out, kPageSize - copied, 0),
                                    "copy_file_range");
    if (n == 0) break;
    copied += static_cast<std::size_t>(n);
  }
  check_complete("copy_file_range", offset, copied);
}

Pipe Pipe::open() {
  int fds[2];
  check_syscall(::pipe2(fds, O_CLOEXEC), "pipe2");
  return {Fd(fds[0]), Fd(fds[1])};
}

void splice_page(const Pipe& pipe, int fd, std::uint64_t offset, const PageImage& page) {
  // vmsplice takes references to the pages of `page` (no copy); splice copies them into the file
  // before this returns, so nobody changes them in between.
  const iovec iov{const_cast<std::byte*>(page.bytes()), kPageSize};
  const ssize_t queued = check_syscall(::vmsplice(pipe.write.get(), &iov, 1, 0), "vmsplice");
  check_complete("vmsplice", offset, static_cast<std::size_t>(queued));
  auto out = static_cast<loff_t>(offset);
  std::size_t spliced = 0;
  while (spliced < kPageSize) {
    const ssize_t n = ::splice(pipe.read.get(), nullptr, fd, &out, kPageSize - spliced, 0);
    if (n <= 0) {
      // Empty the pipe, so that a later page does not follow these bytes.
      PageImage rest;
      static_cast<void>(::read(pipe.read.get(), rest.bytes(), kPageSize - spliced));
      if (n < 0) throw_errno(fmt::format("splice to offset {:#x}", offset));
      break;
    }
    spliced += static_cast<std::size_t>(n);
  }
  check_complete("splice", offset, spliced);
}

void probe_write_methods(const Target& target, const SharedState& shared, const RunConfig& config) {
  const PageImage page = make_stamp({config.run_id("probe"), 0, 1, 0, 0});
  // Every scenario's writers need write(2): a target without it (hugetlbfs) cannot run one.
  try {
    write_page(target.fd(), 0, page, OpMethod::pwrite);
  } catch (const std::system_error& e) {
    if (!is_refusal(e)) throw;
    throw std::runtime_error(fmt::format("the target has no write(2): {}", e.what()));
  }
  probe_method(shared, OpMethod::punch, [&] { target.punch_hole(0, kPageSize); });
  probe_method(shared, OpMethod::zero_range, [&] { target.zero_range(0, kPageSize); });
  probe_method(shared, OpMethod::copy_file_range, [&] {
    const Fd source = Fd::unnamed(config.copy_source_dir());
    copy_page(source.get(), target.fd(), 0, page);
  });
  probe_method(shared, OpMethod::splice, [&] { splice_page(Pipe::open(), target.fd(), 0, page); });
}

std::vector<std::size_t> owned_chunks(std::size_t first, std::size_t end, std::size_t writers,
                                      std::size_t index, std::size_t chunk) {
  std::vector<std::size_t> owned;
  for (std::size_t c = 0; first + (c + 1) * chunk <= end; ++c) {
    if (c % writers == index) owned.push_back(first + c * chunk);
  }
  return owned;
}

void write_initial_pages(const Target& target, const SharedState& shared, std::uint64_t run_id,
                         std::size_t first, std::size_t end) {
  for (std::size_t p = first; p < end; ++p) {
    const std::uint64_t state = shared.last_state(p) + 1;
    shared.begin_op(p, state, StateKind::data, OpMethod::pwrite, p, 1);
    write_page(target.fd(), p * kPageSize, make_stamp({run_id, p * kPageSize, state, 0, 0}),
               OpMethod::pwrite);
    shared.end_op(p, state);
  }
}

void PageWriter::write(std::size_t page, OpMethod method) {
  const std::uint64_t offset = page * kPageSize;
  const std::uint64_t generation = env_.shared().last_state(page) + 1;
  const PageImage image = make_stamp({env_.run_id(), offset, generation, 0, 0});
  apply(page, 1, StateKind::data, method, [&] { write_image(offset, image, method); });
}

void PageWriter::write_image(std::uint64_t offset, const PageImage& image, OpMethod method) {
  switch (method) {
    case OpMethod::copy_file_range:
      if (!copy_source_) copy_source_ = Fd::unnamed(env_.config().copy_source_dir());
      return copy_page(copy_source_.get(), target_.fd(), offset, image);
    case OpMethod::splice:
      if (!pipe_) pipe_ = Pipe::open();
      return splice_page(*pipe_, target_.fd(), offset, image);
    default:
      return write_page(target_.fd(), offset, image, method);
  }
}

void PageWriter::punch(std::size_t first, std::size_t count, OpMethod pinned) {
  const std::uint64_t offset = first * kPageSize;
  const std::uint64_t length = count * kPageSize;
  if (env_.rng().chance(1, kZeroRangeOneIn) &&
      env_.shared().method_supported(OpMethod::zero_range)) {
    return apply(
        first, count, StateKind::hole, OpMethod::zero_range,
        [&] { target_.zero_range(offset, length); }, pinned);
  }
  if (!env_.shared().method_supported(OpMethod::punch)) {
    // The same hole state for the oracle (the pages read zero once it returned), by write(2).
    const std::vector<std::byte> zeros(length);
    return apply(
        first, count, StateKind::hole, OpMethod::zero_write,
        [&] {
          const ssize_t n = check_syscall(
              ::pwrite(target_.fd(), zeros.data(), length, static_cast<off_t>(offset)),
              "pwrite of zeros");
          check_complete("pwrite of zeros", offset, static_cast<std::size_t>(n), length);
        },
        pinned);
  }
  apply(
      first, count, StateKind::hole, OpMethod::punch, [&] { target_.punch_hole(offset, length); },
      pinned);
}

Resizer::Resizer(ActorEnv& env, const Target& target, PageWriter& writer) noexcept
    : env_(env), target_(target), writer_(writer), size_pages_(env.shared().pages()) {}

void Resizer::shrink(std::size_t pages_to) {
  const SharedState& shared = env_.shared();
  const std::size_t cut = size_pages_ - pages_to;
  shared.begin_resize(++generation_, pages_to * kPageSize);
  for (std::size_t p = pages_to; p < size_pages_; ++p) shared.begin_cut(p);
  writer_.apply(pages_to, cut, StateKind::truncated, OpMethod::shrink,
                [&] { target_.set_size(pages_to * kPageSize); });
  shared.end_resize(generation_);
  for (std::size_t p = pages_to; p < size_pages_; ++p) shared.end_cut(p);
  size_pages_ = pages_to;
}

void Resizer::grow(std::size_t pages_to) {
  const SharedState& shared = env_.shared();
  shared.set_hot(env_.hot_slot(), size_pages_);
  shared.begin_resize(++generation_, pages_to * kPageSize);
  target_.set_size(pages_to * kPageSize);
  shared.end_resize(generation_);
  size_pages_ = pages_to;
  ++env_.counters().ops;
}

OpMethod PageWriter::random_write_method() noexcept {
  // Out of 16: pwrite 10, pwritev 2, lseek+write 2, copy_file_range 1, splice 1.
  const std::uint64_t roll = env_.rng().below(16);
  if (roll < 10) return OpMethod::pwrite;
  if (roll < 12) return OpMethod::pwritev;
  if (roll < 14) return OpMethod::lseek_write;
  const OpMethod optional = roll == 14 ? OpMethod::copy_file_range : OpMethod::splice;
  return env_.shared().method_supported(optional) ? optional : OpMethod::pwrite;
}

}  // namespace vmcoh::race
