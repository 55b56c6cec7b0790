#include <cstddef>
#include <cstring>

#include <fmt/format.h>

#include <vmcoh/rng.hpp>
#include <vmcoh/stamp.hpp>

namespace vmcoh {

namespace {

constexpr std::size_t kHeaderWords = sizeof(StampHeader) / sizeof(std::uint64_t);
constexpr std::size_t kChecksumWord = offsetof(StampHeader, checksum) / sizeof(std::uint64_t);

std::uint64_t payload_seed(const StampKey& key) noexcept {
  const std::uint64_t who = (std::uint64_t{key.flags} << 32) | key.actor;
  return mix_keys(mix_keys(key.run_id, key.offset), mix_keys(key.generation, who));
}

// True if every byte of `magic` is either zero or the matching byte of kStampMagic: what a header
// shows while a copy of the stamp over a zero page is still under way.
bool magic_partly_written(std::uint64_t magic) noexcept {
  for (int shift = 0; shift < 64; shift += 8) {
    const std::uint64_t byte = (magic >> shift) & 0xff;
    if (byte != 0 && byte != ((kStampMagic >> shift) & 0xff)) return false;
  }
  return true;
}

}  // namespace

bool PageImage::is_zero() const noexcept {
  std::uint64_t any = 0;
  for (const std::uint64_t w : words) any |= w;
  return any == 0;
}

std::uint64_t page_checksum(const PageImage& page) noexcept {
  // Four independent multiply-xorshift lanes (for instruction-level parallelism); each lane is
  // order-sensitive, so swapped or replaced words change the result.
  constexpr std::uint64_t kPrime = 0x9fb21c651e98df25ULL;
  std::uint64_t lane[4] = {0x243f6a8885a308d3ULL, 0x13198a2e03707344ULL, 0xa4093822299f31d0ULL,
                           0x082efa98ec4e6c89ULL};
  for (std::size_t i = 0; i < kWordsPerPage; i += 4) {
    for (std::size_t j = 0; j < 4; ++j) {
      const std::uint64_t w = (i + j == kChecksumWord) ? 0 : page.words[i + j];
      lane[j] = (lane[j] ^ w) * kPrime;
      lane[j] ^= lane[j] >> 29;
    }
  }
  return mix_keys(mix_keys(lane[0], lane[1]), mix_keys(lane[2], lane[3]));
}

PageImage make_stamp(const StampKey& key) {
  PageImage page;
  StampHeader header{};
  header.magic = kStampMagic;
  header.offset = key.offset;
  header.generation = key.generation;
  header.run_id = key.run_id;
  header.flags = key.flags;
  header.actor = key.actor;
  std::memcpy(page.words.data(), &header, sizeof header);
  const std::uint64_t seed = payload_seed(key);
  for (std::size_t i = kHeaderWords; i < kWordsPerPage; ++i) page.words[i] = mix_keys(seed, i);
  page.words[kChecksumWord] = page_checksum(page);
  return page;
}

StampHeader header_of(const PageImage& page) noexcept {
  StampHeader header;
  std::memcpy(&header, page.words.data(), sizeof header);
  return header;
}

Observation classify(const PageImage& page, std::uint64_t expected_offset,
                     std::uint64_t run_id) noexcept {
  Observation obs;
  obs.header = header_of(page);
  const StampHeader& h = obs.header;
  if (page.is_zero()) {
    obs.content = Content::zero;
  } else if (h.magic != kStampMagic) {
    obs.content = magic_partly_written(h.magic) ? Content::torn : Content::foreign;
  } else if (h.checksum != page_checksum(page)) {
    obs.content = Content::torn;
  } else if (h.run_id != run_id) {
    obs.content = Content::foreign;
  } else if (h.offset != expected_offset) {
    obs.content = Content::misplaced;
  } else {
    obs.content = Content::valid;
  }
  return obs;
}

std::string_view to_string(Content content) noexcept {
  switch (content) {
    case Content::zero:
      return "zero";
    case Content::valid:
      return "valid";
    case Content::torn:
      return "torn";
    case Content::misplaced:
      return "misplaced";
    case Content::foreign:
      return "foreign";
  }
  return "?";
}

std::string describe(const StampHeader& h) {
  return fmt::format(
      "magic={:#018x} offset={:#x} gen={} run={:#018x} flags={:#x} actor={} "
      "checksum={:#018x}",
      h.magic, h.offset, h.generation, h.run_id, h.flags, h.actor, h.checksum);
}

}  // namespace vmcoh
