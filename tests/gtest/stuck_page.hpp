// StuckPage: a page of memory whose first read blocks until the test says so, to hold a task
// inside a kernel copy from user memory (a REPLY's, a process_vm_writev()'s) at a chosen moment.
// The library's TrapPage (vmcoh/userfault.hpp), where userfaultfd may be used at all.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <system_error>

#include <vmcoh/stamp.hpp>
#include <vmcoh/userfault.hpp>

namespace vmcoh::test {

class StuckPage {
 public:
  StuckPage() {
    try {
      trap_ = std::make_unique<TrapPage>();
    } catch (const std::system_error&) {
      // No userfaultfd here (not root, or no kernel support): usable() says so.
    }
  }
  [[nodiscard]] bool usable() const noexcept { return trap_ != nullptr; }
  [[nodiscard]] std::byte* data() const noexcept { return trap_->data(); }
  // True once something is stuck reading the page (within `timeout`).
  [[nodiscard]] bool wait_stuck(std::chrono::milliseconds timeout) const {
    return trap_->wait_fault(timeout);
  }
  // Fills the page with `page`: whoever was stuck goes on.
  void resolve(const PageImage& page) const { trap_->resolve(page.bytes()); }

 private:
  std::unique_ptr<TrapPage> trap_;
};

}  // namespace vmcoh::test
