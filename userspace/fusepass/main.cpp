// vmcoh-fusepass: a FUSE passthrough filesystem (libfuse3 low-level API) serving a source
// directory, so that vmcoh-race can run against FUSE like any other filesystem (the filesystem
// matrix), and so that the benchmarks have a FUSE anchor: a file that lives in a tmpfs, served
// through FUSE.  Root runs it in the foreground; SIGTERM, SIGINT or an unmount end it.
//
// Exit status: 0 unmounted (by a signal or umount), 1 the session failed, 2 a setup error.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <vmcoh/error.hpp>
#include <vmcoh/fd.hpp>

#include "passthrough.hpp"

namespace {

using namespace vmcoh;
using namespace vmcoh::fusepass;

constexpr int kExitUnmounted = 0;
constexpr int kExitFailed = 1;
constexpr int kExitSetup = 2;

constexpr unsigned kDefaultThreads = 4;
constexpr unsigned kMaxThreads = 256;

// The arguments fuse_session_new() parses; it replaces them with a copy of its own to free.
class SessionArgs {
 public:
  explicit SessionArgs(bool debug) {
    strings_ = {"vmcoh-fusepass", "-o",
                "default_permissions,fsname=vmcoh-fusepass,subtype=vmcoh-fusepass"};
    if (debug) strings_.emplace_back("-d");
    for (std::string& s : strings_) argv_.push_back(s.data());
    args_.argc = static_cast<int>(argv_.size());
    args_.argv = argv_.data();
  }
  SessionArgs(const SessionArgs&) = delete;
  SessionArgs& operator=(const SessionArgs&) = delete;
  ~SessionArgs() { fuse_opt_free_args(&args_); }

  fuse_args* get() noexcept { return &args_; }

 private:
  std::vector<std::string> strings_;
  std::vector<char*> argv_;
  fuse_args args_{};
};

struct SessionDestroyer {
  void operator()(fuse_session* se) const noexcept { fuse_session_destroy(se); }
};
using Session = std::unique_ptr<fuse_session, SessionDestroyer>;

struct LoopConfigDestroyer {
  void operator()(fuse_loop_config* config) const noexcept { fuse_loop_cfg_destroy(config); }
};

// SIGHUP, SIGINT and SIGTERM end the session loop (and SIGPIPE is ignored) while this lives.
class SignalHandlers {
 public:
  explicit SignalHandlers(fuse_session* se) : se_(se) {
    // libfuse only replaces SIG_DFL, and a shell starts a background job with SIGINT ignored:
    // `kill -INT` must unmount a server a script started too.  (An ignored SIGHUP, nohup's, stays.)
    for (const int sig : {SIGINT, SIGTERM}) {
      if (::signal(sig, SIG_DFL) == SIG_ERR) throw_errno("signal");
    }
    if (fuse_set_signal_handlers(se_) != 0) throw_errno("fuse_set_signal_handlers");
  }
  SignalHandlers(const SignalHandlers&) = delete;
  SignalHandlers& operator=(const SignalHandlers&) = delete;
  ~SignalHandlers() { fuse_remove_signal_handlers(se_); }

 private:
  fuse_session* se_;
};

class Mount {
 public:
  Mount(fuse_session* se, const std::filesystem::path& mountpoint) : se_(se) {
    if (fuse_session_mount(se_, mountpoint.c_str()) != 0) {
      throw std::runtime_error(fmt::format("cannot mount at {}", mountpoint.string()));
    }
  }
  Mount(const Mount&) = delete;
  Mount& operator=(const Mount&) = delete;
  ~Mount() { fuse_session_unmount(se_); }

 private:
  fuse_session* se_;
};

// --ready-file: removed at start (a stale one must not announce this mount), written with the
// pid once the mount is live, removed again after the unmount.  Written under a temporary name
// and renamed, so a reader never sees it empty.
class ReadyFile {
 public:
  explicit ReadyFile(std::filesystem::path path) : path_(std::move(path)) { remove(); }
  ReadyFile(const ReadyFile&) = delete;
  ReadyFile& operator=(const ReadyFile&) = delete;
  ~ReadyFile() { remove(); }

  void publish() const {
    if (path_.empty()) return;
    std::filesystem::path staged = path_;
    staged += ".tmp";
    const std::string pid = fmt::format("{}\n", ::getpid());
    {
      const Fd fd = Fd::open(staged, O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (check_syscall(::write(fd.get(), pid.data(), pid.size()), "write " + staged.string()) !=
          static_cast<ssize_t>(pid.size())) {
        throw_errno("short write " + staged.string(), EIO);
      }
    }
    std::filesystem::rename(staged, path_);
  }

 private:
  void remove() const noexcept {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove(path_, ignored);
  }

  std::filesystem::path path_;
};

std::string direct_io_help() {
  return fmt::format(
      "open files with FOPEN_DIRECT_IO: the kernel bypasses the page cache, so every read(2) "
      "and write(2) reaches this server.  The kernel refuses MAP_SHARED mappings of such files "
      "(ENODEV) unless the server negotiates FUSE_DIRECT_IO_ALLOW_MMAP (Linux 6.6, libfuse "
      "3.16 or later); this build {}",
      kCanAllowDirectIoMmap ? "requests it when the kernel offers it"
                            : "cannot (libfuse < 3.16): MAP_PRIVATE mappings only");
}

}  // namespace

static int run_main(int argc, char** argv) {
  Options options;
  std::filesystem::path mountpoint;
  std::filesystem::path ready_path;
  unsigned threads = kDefaultThreads;
  bool debug = false;

  CLI::App app{
      "vmcoh-fusepass: serves a source directory at a mountpoint through FUSE (libfuse3 "
      "low-level API), passing every operation through to the backing files.  Runs in the "
      "foreground until SIGTERM, SIGINT or an unmount."};
  app.add_option("mountpoint", mountpoint, "where to mount")
      ->required()
      ->check(CLI::ExistingDirectory);
  app.add_option("--source", options.source, "the directory to serve")
      ->required()
      ->check(CLI::ExistingDirectory);
  app.add_option("--threads", threads,
                 "most requests served at once (threads, started on demand); 1: one thread")
      ->check(CLI::Range(1U, kMaxThreads))
      ->capture_default_str();
  app.add_flag("--writeback-cache", options.writeback_cache,
               "negotiate the writeback cache: writes stay in the page cache until written back, "
               "and the kernel, not this server, owns a file's size and times");
  app.add_flag("--direct-io", options.direct_io, direct_io_help());
  app.add_flag("!--no-auto-inval-data", options.auto_inval_data,
               "do not negotiate FUSE_CAP_AUTO_INVAL_DATA (libfuse's default), with which the "
               "kernel drops a file's page cache whenever a GETATTR shows a new mtime");
  app.add_flag("--keep-cache", options.keep_cache,
               "keep a file's page cache across open(2) (without it, every open drops it)");
  app.add_option("--timeout", options.timeout,
                 "seconds the kernel may trust attributes and names without asking again.  "
                 "Every change goes through this mount (the kernel updates what it caches as it "
                 "goes), so a cached value goes stale only if the source is changed behind it; 0 "
                 "would add a GETATTR or LOOKUP round trip to most system calls")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--ready-file", ready_path,
                 "once the mount is live, write the server's pid to this file (outside the "
                 "mount); removed at exit");
  app.add_flag("-f,--foreground")
      ->description("accepted and ignored: the server always runs in the foreground");
  app.add_flag("--debug", debug, "print every FUSE request and reply (libfuse's -d)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? kExitUnmounted : kExitSetup;
  }

  // The kernel has already applied the caller's umask to every mode it passes.
  ::umask(0);

  Filesystem fs(options);
  const ReadyFile ready(ready_path);
  SessionArgs args(debug);
  const Session session(
      fuse_session_new(args.get(), &Filesystem::operations(), sizeof(fuse_lowlevel_ops), &fs));
  if (!session) {
    fmt::print(stderr, "vmcoh-fusepass: fuse_session_new failed\n");
    return kExitSetup;
  }
  const SignalHandlers handlers(session.get());
  const Mount mount(session.get(), mountpoint);
  ready.publish();

  int rc = 0;
  if (threads == 1) {
    rc = fuse_session_loop(session.get());
  } else {
    const std::unique_ptr<fuse_loop_config, LoopConfigDestroyer> config(fuse_loop_cfg_create());
    if (!config) throw_errno("fuse_loop_cfg_create", ENOMEM);
    fuse_loop_cfg_set_max_threads(config.get(), threads);
    // Idle threads stay, up to all of them: no thread churn between bursts of requests.
    fuse_loop_cfg_set_idle_threads(config.get(), threads);
    rc = fuse_session_loop_mt(session.get(), config.get());
  }
  if (debug) {
    fmt::print(stderr, "vmcoh-fusepass: {} inode(s) still referenced by the kernel at exit\n",
               fs.referenced_inodes());
  }
  // A positive result is the signal that ended the loop: a clean end like an unmount.
  if (rc < 0) {
    fmt::print(stderr, "vmcoh-fusepass: session loop: {}\n", std::generic_category().message(-rc));
    return kExitFailed;
  }
  return kExitUnmounted;
}

int main(int argc, char** argv) {
  return vmcoh::main_guard("vmcoh-fusepass", run_main, argc, argv, kExitSetup);
}
