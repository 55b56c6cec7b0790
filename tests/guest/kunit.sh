#!/bin/sh
# Inside the VM (a kernel with KUnit): load the module, which runs its KUnit
# suites (kmod/kunit/), save each suite's KTAP results from debugfs, unload.
# $1: directory for the results (SUITE.ktap); $2: the module.
set -eu
out=$1
module=$2

insmod "$module"
found=0
for results in /sys/kernel/debug/kunit/vmcoh_*/results; do
	[ -r "$results" ] || continue
	suite=${results%/results}
	cat "$results" >"$out/${suite##*/}.ktap"
	found=$((found + 1))
done
rmmod vmcoh
echo "kunit: $found suites"
