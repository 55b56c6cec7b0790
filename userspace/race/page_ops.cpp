#include "page_ops.hpp"

#include <sys/uio.h>
#include <unistd.h>

#include <stdexcept>

#include <fmt/format.h>

#include <vmcoh/error.hpp>

namespace vmcoh::race {

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
  if (static_cast<std::size_t>(written) != kPageSize) {
    throw std::runtime_error(fmt::format("{} at offset {:#x} wrote {} of {} bytes",
                                         to_string(method), offset, written, kPageSize));
  }
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
  apply(page, 1, StateKind::data, method, [&] { write_page(target_.fd(), offset, image, method); });
}

void PageWriter::punch(std::size_t first, std::size_t count) {
  apply(first, count, StateKind::hole, OpMethod::punch,
        [&] { target_.punch_hole(first * kPageSize, count * kPageSize); });
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
  const std::uint64_t roll = env_.rng().below(8);
  if (roll < 5) return OpMethod::pwrite;
  return roll < 7 ? OpMethod::pwritev : OpMethod::lseek_write;
}

}  // namespace vmcoh::race
