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

CHECKPATCH_DIR := $(HOME)/.cache/vmcoh/checkpatch
KSRC_TARBALL   := $(lastword $(sort $(wildcard /usr/src/linux-source-6.1.tar.xz)))

.PHONY: all deps module module-% userspace run check matrix lint checkpatch sparse format clean help

all: module userspace

help:
	@echo "make deps       install every package vmcoh needs (Debian 12)"
	@echo "make            build vmcoh.ko (KDIR=$(KDIR)) and the userspace"
	@echo "make run        build, boot a VM, load the module, run the race harness"
	@echo "make check      build and run the test suite (pytest, gtests in a VM)"
	@echo "make lint       checkpatch --strict, sparse, W=1, clang-format"

deps:
	tools/install-deps

module:
	@test -n "$(KDIR)" || { echo "no kernel headers: run 'make deps' or set KDIR" >&2; exit 1; }
	$(MAKE) -C $(KDIR) M=$(CURDIR) W=1 modules

# The module for another installed kernel, e.g. `make module-6.12`, built
# from a copy of the sources in build/kmod-6.12/ so it never clobbers the
# default build: build/kmod-6.12/vmcoh.ko.
module-%:
	@kdir=$$(ls -d /usr/src/linux-headers-$*.*-amd64 2>/dev/null | sort -V | tail -n 1); \
	test -n "$$kdir" || { echo "no headers for $*: run 'make deps'" >&2; exit 1; }; \
	mkdir -p $(BUILD)/kmod-$* && cp -r Kbuild kmod uapi $(BUILD)/kmod-$*/ && \
	$(MAKE) -C $$kdir M=$(CURDIR)/$(BUILD)/kmod-$* W=1 modules

userspace:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j$(JOBS) -- --no-print-directory

run: deps all
	$(VMRUN) -- tools/guest/run-harness $(RACE_ARGS)

check: deps all module-6.12
	$(PYTHON) -m pytest tests $(PYTEST_ARGS)

# How fast the race harness catches each unsafe variant (about an hour; not in CI):
# build/stress-matrix.md, spliced into README.md.  E.g. MATRIX_ARGS='--seeds 1..3 --cap 30'.
matrix: all
	$(PYTHON) tools/stress-matrix --readme README.md $(MATRIX_ARGS)

lint: checkpatch sparse format

$(CHECKPATCH_DIR)/checkpatch.pl:
	@test -n "$(KSRC_TARBALL)" || { echo "linux-source-6.1 missing: run 'make deps'" >&2; exit 1; }
	mkdir -p $(CHECKPATCH_DIR)
	tar -xJf $(KSRC_TARBALL) -C $(CHECKPATCH_DIR) --strip-components=2 --wildcards \
		'*/scripts/checkpatch.pl' '*/scripts/spelling.txt' '*/scripts/const_structs.checkpatch'

checkpatch: $(CHECKPATCH_DIR)/checkpatch.pl
	perl $< --strict --no-tree --show-types -q -f kmod/*.c kmod/*.h uapi/vmcoh.h

sparse:
	@mkdir -p $(BUILD)
	$(MAKE) -C $(KDIR) M=$(CURDIR) C=2 W=1 modules 2>&1 | tee $(BUILD)/sparse.log
	@! grep -E 'warning:|error:' $(BUILD)/sparse.log

format:
	clang-format --dry-run --Werror $$(git ls-files '*.cpp' '*.hpp' '*.h' | grep -v '^kmod/\|^uapi/')

clean:
	$(MAKE) -C $(KDIR) M=$(CURDIR) clean
	rm -rf $(BUILD)
