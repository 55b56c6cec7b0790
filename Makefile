# vmcoh: build the module and the userspace, run the race harness in a VM,
# run the tests.  `make help` lists the targets.

KDIR	?= $(shell ls -d /usr/src/linux-headers-6.1.*-amd64 2>/dev/null | sort -V | tail -n 1)
BUILD	?= build
PYTHON	?= /usr/bin/python3
VMRUN	?= tools/vmrun
JOBS	?= $(shell nproc)
# Arguments for the race harness in `make run`, e.g. RACE_ARGS='--duration 30'.
RACE_ARGS ?=
# Arguments for pytest in `make check`, e.g. PYTEST_ARGS='-k gtest'.
PYTEST_ARGS ?=
# Arguments for tools/bench in `make bench`, e.g. BENCH_ARGS='--rounds 5 --workloads read-fault'.
BENCH_ARGS ?=
# Arguments for tools/fsmatrix in `make fsmatrix`, e.g. FSMATRIX_ARGS='--kernels 6.1 --fs tmpfs-huge'.
FSMATRIX_ARGS ?=
# The kernels `make check` tests on: Debian's stock 6.1 and 6.12, and the
# project's debug kernels (tools/build-kernel: debug = lockdep + KASAN +
# kmemleak + KUnit, kcsan = lockdep + KCSAN + KUnit).  E.g. KERNELS=6.1.
KERNELS ?= 6.1 6.12 debug kcsan
DEBUG_KERNELS := $(filter-out 6.1 6.12,$(KERNELS))

CHECKPATCH_DIR := $(HOME)/.cache/vmcoh/checkpatch
KSRC_TARBALL   := $(lastword $(sort $(wildcard /usr/src/linux-source-6.1.tar.xz)))

# A copy of the module's sources in $(1), for a build that must not touch the
# top-level one.  Only a file whose contents changed is copied (and a copy
# whose source is gone removed), so that a build with nothing new does not
# write vmcoh.ko again: make kselftest-install, run by a test, must not
# rewrite the module a VM of another test is loading.
copy_kmod = mkdir -p $(1)/kmod/kunit $(1)/uapi && \
	for f in Kbuild kmod/*.[ch] kmod/kunit/*.[ch] uapi/*.h; do \
		cmp -s $$f $(1)/$$f || cp $$f $(1)/$$f || exit 1; done && \
	for f in $(1)/kmod/*.[ch] $(1)/kmod/kunit/*.[ch] $(1)/uapi/*.h; do \
		test -e $${f\#$(1)/} || rm -f $$f; done

.PHONY: all deps module module-% kernels userspace run check matrix bench bench-smoke fsmatrix lint \
	kselftest-install \
	checkpatch sparse format tidy clean help dkms-install dkms-remove

all: module userspace

help:
	@echo "make deps       install every package vmcoh needs (Debian 12)"
	@echo "make            build vmcoh.ko (KDIR=$(KDIR)) and the userspace"
	@echo "make run        build, boot a VM, load the module, run the race harness"
	@echo "make check      lint, then build and run the test suite on every kernel"
	@echo "                of KERNELS=\"$(KERNELS)\" (pytest; gtests, races, KUnit in VMs)"
	@echo "make kernels    build the debug kernels of KERNELS (cached in ~/.cache/vmcoh)"
	@echo "make module-K   vmcoh.ko for kernel K (6.12, debug, kcsan) in build/kmod-K/"
	@echo "make lint       checkpatch --strict, sparse, W=1, clang-format, clang-tidy"
	@echo "make dkms-install  vmcoh.ko through DKMS for every kernel with headers (root);"
	@echo "                then 'modprobe vmcoh'.  make dkms-remove takes it out again"
	@echo "make kselftest-install DESTDIR=DIR  the kselftest collection \"vmcoh\", with the"
	@echo "                module for KSELFTEST_KERNELS=\"$(KSELFTEST_KERNELS)\" (docs/kselftest.md)"
	@echo "make matrix     how fast the stress scenarios catch each unsafe variant (~1 h)"
	@echo "make bench      vmcoh against tmpfs and ext4 -o dax in one VM, into docs/bench.md"
	@echo "make bench-smoke  the same, --quick, without touching docs/bench.md"
	@echo "make fsmatrix   the race harness on tmpfs, ext4, xfs, btrfs, DAX, FUSE, 9p on 6.1"
	@echo "                and 6.12, one VM each (~1 h), into docs/fsmatrix.md"

deps:
	tools/install-deps

# DKMS (dkms.conf): the module's sources go to /usr/src/vmcoh-$(VERSION), and
# dkms builds and installs vmcoh.ko into /lib/modules/K/updates/dkms for each
# kernel K with headers (DKMS_KERNELS), and for kernels installed later.
VERSION      ?= 0.$(shell git rev-list --count HEAD 2>/dev/null || echo 0)
DKMS_SRC     := /usr/src/vmcoh-$(VERSION)
DKMS_KERNELS ?= $(foreach k,$(notdir $(wildcard /lib/modules/*)),$(if $(wildcard /lib/modules/$(k)/build/Makefile),$(k)))

dkms-install:
	@command -v dkms >/dev/null || { echo "no dkms: run 'make deps'" >&2; exit 1; }
	@test -n "$(DKMS_KERNELS)" || { echo "no kernel headers in /lib/modules/*/build" >&2; exit 1; }
	-dkms remove vmcoh/$(VERSION) --all >/dev/null 2>&1
	rm -rf $(DKMS_SRC) && mkdir -p $(DKMS_SRC)/kmod/kunit $(DKMS_SRC)/uapi
	cp Kbuild $(DKMS_SRC)/
	cp kmod/*.[ch] $(DKMS_SRC)/kmod/ && cp kmod/kunit/*.[ch] $(DKMS_SRC)/kmod/kunit/
	cp uapi/vmcoh.h $(DKMS_SRC)/uapi/
	sed 's/@VERSION@/$(VERSION)/' dkms.conf >$(DKMS_SRC)/dkms.conf
	dkms add vmcoh/$(VERSION)
	for k in $(DKMS_KERNELS); do dkms install vmcoh/$(VERSION) -k $$k || exit 1; done
	dkms status vmcoh

# The kselftest collection "vmcoh" under DESTDIR (docs/kselftest.md), with the
# module for each of KSELFTEST_KERNELS: $(DESTDIR)/run_kselftest.sh -c vmcoh.
KSELFTEST_KERNELS ?= 6.1 6.12
kselftest-install: all module $(addprefix module-,$(filter-out 6.1,$(KSELFTEST_KERNELS)))
	@test -n "$(DESTDIR)" || { echo "make kselftest-install DESTDIR=DIR" >&2; exit 1; }
	tools/kselftest/install "$(DESTDIR)" $(foreach k,$(KSELFTEST_KERNELS),$(if $(filter 6.1,$(k)),vmcoh.ko,$(BUILD)/kmod-$(k)/vmcoh.ko))

# Every version of vmcoh out of DKMS, its modules and its sources.
dkms-remove:
	@command -v dkms >/dev/null || { echo "no dkms: run 'make deps'" >&2; exit 1; }
	for v in $$(dkms status vmcoh | sed -n 's|^vmcoh/\([^,]*\),.*|\1|p' | sort -u); do \
		dkms remove vmcoh/$$v --all || exit 1; done
	rm -rf /usr/src/vmcoh-*

module:
	@test -n "$(KDIR)" || { echo "no kernel headers: run 'make deps' or set KDIR" >&2; exit 1; }
	$(MAKE) -C $(KDIR) M=$(CURDIR) W=1 modules

# The module for another kernel, built from a copy of the sources in
# build/kmod-K/ so it never clobbers the default build: `make module-6.12`
# against Debian's 6.12 headers, `make module-debug` against the debug
# kernel's tree (built first if it is not cached).
module-%:
	@case "$*" in \
	[0-9]*)	kdir=$$(ls -d /usr/src/linux-headers-$*.*-amd64 2>/dev/null | sort -V | tail -n 1); \
		test -n "$$kdir" || { echo "no headers for $*: run 'make deps'" >&2; exit 1; } ;; \
	*)	kdir=$$(tools/build-kernel --kdir $*) || exit 1 ;; \
	esac; \
	$(call copy_kmod,$(BUILD)/kmod-$*) && \
	$(MAKE) -C $$kdir M=$(CURDIR)/$(BUILD)/kmod-$* W=1 modules

kernels:
	tools/build-kernel $(DEBUG_KERNELS)

userspace:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j$(JOBS) -- --no-print-directory

run: deps all
	$(VMRUN) -- tools/guest/run-harness $(RACE_ARGS)

# The gtest stress scenarios run STRESS_SECONDS each (10 s on their own); the deterministic
# scenarios are what must catch each broken protocol, and `make matrix` what measures the harness.
STRESS_SECONDS ?= 3
# The race harness's scenarios run RACE_SECONDS per mode on the stock kernels, half that on the
# debug kernels (4 and 2 on their own): in CI they show the safe protocol clean, while the
# interleaving matrix proves each window deterministically and `make matrix` measures catches.
RACE_SECONDS ?= 2
# Tests run side by side in TEST_JOBS pytest-xdist workers: a TCG guest keeps about one host
# core busy on average, so one worker per core.  Tests that share one run stay on one worker
# (xdist_group).  TEST_JOBS=0 runs them one at a time.
TEST_JOBS ?= $(shell nproc)
check: deps lint all $(addprefix module-,$(filter-out 6.1,$(KERNELS)))
	VMCOH_KERNELS="$(KERNELS)" VMCOH_STRESS_SECONDS=$(STRESS_SECONDS) \
		VMCOH_RACE_SECONDS=$(RACE_SECONDS) \
		$(PYTHON) -m pytest tests -n $(TEST_JOBS) --dist loadgroup --durations=25 $(PYTEST_ARGS)

# How fast the race harness catches each unsafe variant (about an hour; not in CI):
# build/stress-matrix.md, spliced into docs/matrix.md.  E.g. MATRIX_ARGS='--seeds 1..3 --cap 30'.
matrix: all
	$(PYTHON) tools/stress-matrix --readme docs/matrix.md $(MATRIX_ARGS)

# vmcoh-bench on /dev/vmcoh, tmpfs and ext4 -o dax in one VM: build/bench/bench.json,
# bench.md (spliced into docs/bench.md) and bench.png.  bench-smoke: a --quick run, docs untouched.
# One boot per kernel; docs/bench.md gets a table for each (BENCH_KERNELS=6.1 for one).
BENCH_KERNELS ?= 6.1,6.12
bench: all module-6.12
	$(PYTHON) tools/bench --kernel $(BENCH_KERNELS) --readme docs/bench.md $(BENCH_ARGS)

bench-smoke: all
	$(PYTHON) tools/bench --quick $(BENCH_ARGS)

# vmcoh-race on the kernel's file systems (tools/fsmatrix), one VM per kernel: build/fsmatrix/
# fsmatrix.json and fsmatrix.md, spliced into docs/fsmatrix.md.  make check runs a smoke of it.
fsmatrix: all module-6.12
	$(PYTHON) tools/fsmatrix --readme docs/fsmatrix.md $(FSMATRIX_ARGS)

lint: checkpatch sparse format tidy

$(CHECKPATCH_DIR)/checkpatch.pl:
	@test -n "$(KSRC_TARBALL)" || { echo "linux-source-6.1 missing: run 'make deps'" >&2; exit 1; }
	mkdir -p $(CHECKPATCH_DIR)
	tar -xJf $(KSRC_TARBALL) -C $(CHECKPATCH_DIR) --strip-components=2 --wildcards \
		'*/scripts/checkpatch.pl' '*/scripts/spelling.txt' '*/scripts/const_structs.checkpatch'

# kmod/trace.h is written as include/trace/events/ headers are (TP_* blocks,
# EM()/EMe() lists), whose idiom checkpatch flags there too (fs_dax.h and
# writeback.h: these five types and more): for it alone, those five are off.
TRACE_IDIOM = COMPLEX_MACRO,TRAILING_SEMICOLON,OPEN_ENDED_LINE,PARENTHESIS_ALIGNMENT,CAMELCASE
checkpatch: $(CHECKPATCH_DIR)/checkpatch.pl
	perl $< --strict --no-tree --show-types -q -f $(filter-out kmod/trace.h,$(wildcard kmod/*.h)) \
		kmod/*.c kmod/kunit/*.c kmod/kunit/*.h uapi/vmcoh.h
	perl $< --strict --no-tree --show-types -q --ignore $(TRACE_IDIOM) -f kmod/trace.h

# The KUnit suites too: compiled against the stock headers as if the kernel
# had KUnit (kunit symbols stay unresolved, which modpost only warns about).
sparse:
	@mkdir -p $(BUILD)
	$(MAKE) -C $(KDIR) M=$(CURDIR) C=2 W=1 modules 2>&1 | tee $(BUILD)/sparse.log
	$(call copy_kmod,$(BUILD)/kmod-kunit-check) && \
	$(MAKE) -C $(KDIR) M=$(CURDIR)/$(BUILD)/kmod-kunit-check C=2 W=1 CONFIG_KUNIT=y \
		KBUILD_MODPOST_WARN=1 modules 2>&1 | tee -a $(BUILD)/sparse.log
	@! grep -E 'warning:|error:' $(BUILD)/sparse.log

format:
	clang-format --dry-run --Werror $$(git ls-files '*.cpp' '*.hpp' '*.h' | grep -v '^kmod/\|^uapi/')

# clang-tidy with .clang-tidy's checks, on every userspace source, using the
# compile commands CMake exports; JOBS files at a time.  tools/tidy skips a
# file a run found clean with the same preprocessed text, flags, clang-tidy
# and .clang-tidy (cached in ~/.cache/vmcoh/tidy; VMCOH_TIDY_CACHE=off: none).
tidy: userspace
	$(PYTHON) tools/tidy --build $(BUILD) --jobs $(JOBS)

clean:
	$(MAKE) -C $(KDIR) M=$(CURDIR) clean
	rm -rf $(BUILD)
