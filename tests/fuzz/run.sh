#!/usr/bin/env bash
# tests/fuzz/run.sh - run the libFuzzer harnesses for a bounded time.
#
#   run.sh --build DIR --time SECS  [HARNESS...]   each harness fuzzes SECS seconds (make fuzz)
#   run.sh --build DIR --quick SECS [HARNESS...]   each harness replays its checked-in corpus,
#                                                  then fuzzes SECS seconds (make test)
#
# DIR holds the fuzz_* binaries (make fuzz-bins). The checked-in corpus
# (tests/fuzz/corpus/<harness>/) is only read: new inputs go to
# DIR/work/<harness>/, findings to DIR/artifacts/. Any crash, leak, sanitizer
# report, timeout (> 10 s on one input) or RSS over 2 GB fails the run; the
# reproducer's path is printed. Replay one with: DIR/fuzz_x FILE
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build="" secs=60 quick=0
while [ $# -gt 0 ]; do
	case "$1" in
	--build) build=$2; shift 2 ;;
	--time) secs=$2; shift 2 ;;
	--quick) quick=1; secs=$2; shift 2 ;;
	-h|--help) sed -n '2,13p' "$0"; exit 0 ;;
	--*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
	*) break ;;
	esac
done
[ -n "$build" ] || { echo "run.sh: --build DIR is required" >&2; exit 2; }
if [ $# -gt 0 ]; then names=("$@"); else
	# The harnesses of this tree (not whatever binaries an older build left).
	names=(); for c in "$here"/fuzz_*.c; do names+=("$(basename "$c" .c)"); done
fi
[ ${#names[@]} -gt 0 ] || { echo "run.sh: no harness in $build" >&2; exit 2; }

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
mkdir -p "$build/artifacts" "$build/logs"
failed=() total_start=$(date +%s)
printf '%-18s %8s %10s %8s %6s  %s\n' harness seconds execs "exec/s" cov result
for h in "${names[@]}"; do
	bin="$build/$h" seeds="$here/corpus/$h" work="$build/work/$h" log="$build/logs/$h.log"
	[ -x "$bin" ] || { echo "run.sh: $bin missing (make fuzz-bins)" >&2; failed+=("$h"); continue; }
	mkdir -p "$work" "$seeds"
	# Quick mode starts from the seeds alone, so its time does not grow with past runs.
	[ $quick = 1 ] && rm -rf "$work" && mkdir -p "$work"
	start=$(date +%s)
	# -timeout: one input; the outer timeout is a backstop for a hung harness.
	timeout -k 10 $((secs + 120)) "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
		-max_len=65536 -print_final_stats=1 -artifact_prefix="$build/artifacts/$h-" \
		"$work" "$seeds" >"$log" 2>&1
	rc=$?
	took=$(($(date +%s) - start))
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
	if [ $rc = 0 ]; then res=ok; else res="FAILED (exit $rc)"; failed+=("$h"); fi
	printf '%-18s %8s %10s %8s %6s  %s\n' "$h" "$took" "${execs:--}" "${rate:--}" "${cov:--}" "$res"
	if [ $rc != 0 ]; then
		{ grep -E 'ERROR:|SUMMARY:|runtime error|fuzz invariant|Test unit written|BUG at' "$log" ||
			tail -5 "$log"; } | head -20 | sed 's/^/    /'
		echo "    full log: $log"
	fi
done
echo "fuzz: ${#names[@]} harness(es) in $(($(date +%s) - total_start)) s"
if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz: FAILED: ${failed[*]}"
	exit 1
fi
