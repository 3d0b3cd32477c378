#!/usr/bin/env bash
# Server CPU per delivery of the core's BenchmarkPublishDeflate: 1 KiB
# publishes to 10,000 members, without deflate ("plain") and with
# permessage-deflate negotiated by every member ("deflate"), one publish at
# a time and in bursts of 20.
#
#   cd bench && ./publishcpu.sh [rounds]
#
# The hub runs in the test process and its members in a child process, so
# the test process's own utime+stime (/proc/PID/stat, children excluded) is
# the server's CPU. It is sampled until the process exits, for two
# iteration counts of the same case; the difference in CPU over the
# difference in deliveries leaves out the setup (10,000 upgrades, the
# client process). Cases alternate plain and deflate; rounds (default 2)
# repeat them all, since these cores are shared.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
bin=$(mktemp -d)/core.test
go test -c -o "$bin" .
hz=$(getconf CLK_TCK)

# ticks NAME BURST N: the test process's CPU ticks for N iterations.
ticks() {
	local out pid last=0 t
	out=$(mktemp)
	"$bin" -test.run '^$' -test.bench "^BenchmarkPublishDeflate\$/^$1\$/^size=1024\$/^burst=$2\$" -test.benchtime="${3}x" >"$out" 2>&1 &
	pid=$!
	while [ -r "/proc/$pid/stat" ] && ! grep -q ') Z ' "/proc/$pid/stat" 2>/dev/null; do
		t=$(awk '{print $14+$15}' "/proc/$pid/stat" 2>/dev/null || true)
		[ -n "$t" ] && last=$t
		sleep 0.05
	done
	wait "$pid" || { cat "$out" >&2; exit 1; }
	grep -E '^BenchmarkPublishDeflate' "$out" | tr -s ' \t' ' ' >&2
	rm -f "$out"
	echo "$last"
}

for round in $(seq "$rounds"); do
	for c in "20 5 30" "1 50 300"; do
		set -- $c
		burst=$1 n1=$2 n2=$3
		declare -A per=()
		for name in plain deflate; do
			t1=$(ticks "$name" "$burst" "$n1")
			t2=$(ticks "$name" "$burst" "$n2")
			deliveries=$(((n2 - n1) * burst * 10000))
			per[$name]=$(awk -v t="$((t2 - t1))" -v hz="$hz" -v d="$deliveries" 'BEGIN { printf "%.2f", t / hz * 1e6 / d }')
			echo "round $round burst=$burst $name: $((t2 - t1)) ticks for $deliveries deliveries: ${per[$name]} µs per delivery"
		done
		awk -v p="${per[plain]}" -v d="${per[deflate]}" -v b="$burst" -v r="$round" 'BEGIN { printf "round %d burst=%d: deflate / plain = %.2f\n", r, b, d / p }'
		unset per
	done
done
