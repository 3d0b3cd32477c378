#!/usr/bin/env bash
# Installs what the tests need, then runs every module's tests with the race
# detector, checks the modules as a consumer outside the repository gets them
# (docs/releasing.md), and tests the core with its minimum Go. Works on a
# fresh Debian machine with Go and Node; safe to re-run.
#
#   ./test.sh            everything
#   ./test.sh -short     skip the tests that start extra processes
#
# Each step prints when it starts ("== [1m05s] step"), a line every minute
# while it runs, and at the end every step's duration. CI=true, as CI sets
# it, changes nothing in this script: it makes the tests that need
# Chromium, Node's ws or redis-server fail where the tool is missing
# instead of skipping.
set -euo pipefail
cd "$(dirname "$0")"
args=("$@")

tmp=$(mktemp -d)
ticker=""
trap 'if [ -n "$ticker" ]; then kill "$ticker" 2>/dev/null || true; fi; rm -rf "$tmp"' EXIT

# clock prints a duration in seconds as 42s or 3m05s.
clock() {
	if [ "$1" -lt 60 ]; then
		printf '%ds' "$1"
	else
		printf '%dm%02ds' $(($1 / 60)) $(($1 % 60))
	fi
}

status=0
passed=0
failed=0
summary=""
# step NAME COMMAND...: runs COMMAND in a subshell with set -e, timed. A
# step that fails fails the run, after the other steps.
step() {
	local name=$1 start=$SECONDS rc
	shift
	echo "== [$(clock $SECONDS)] $name"
	(while sleep 60 >/dev/null 2>&1; do echo "   [$(clock $SECONDS)] still running: $name"; done) &
	ticker=$!
	set +e
	(
		set -e
		"$@"
	)
	rc=$?
	set -e
	kill "$ticker" 2>/dev/null || true
	wait "$ticker" 2>/dev/null || true
	ticker=""
	local took=$((SECONDS - start)) result=ok
	if [ "$rc" -ne 0 ]; then
		result=FAIL
		status=1
		failed=$((failed + 1))
		echo "== [$(clock $SECONDS)] FAIL: $name ($(clock $took))"
	else
		passed=$((passed + 1))
	fi
	summary+=$(printf '%8s  %-4s  %s' "$(clock $took)" "$result" "$name")$'\n'
}

# Debian packages: headless Chromium for the browser tests, redis-server for
# the Redis broker's tests (which start it themselves on a free port).
debian_packages() {
	local missing=""
	command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
	command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
	if [ -z "$missing" ]; then
		echo "test.sh: chromium and redis-server are installed"
		return
	fi
	echo "test.sh: installing$missing (Debian packages; under a minute here, longer from a slow mirror)"
	local sudo=""
	[ "$(id -u)" -ne 0 ] && sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
	# The package starts a redis-server on 6379; the tests start their own.
	$sudo systemctl disable --now redis-server >/dev/null 2>&1 || true
}

# The Node ws client for the interoperability tests, kept out of the repo.
node_ws() {
	if [ -d .tools/node/node_modules/ws ]; then
		echo "test.sh: .tools/node has ws"
		return
	fi
	npm install --silent --no-audit --no-fund --prefix .tools/node ws@8 >/dev/null
}

# The root go.work lists every module, so that `go run ./examples/chat` works
# from a fresh clone and the modules are developed together; the go.mod
# files require released versions of each other, with no replace directive
# (docs/releasing.md). internal/release, built here into .tools/release,
# checks both (`rules`) and writes the workspaces of the next steps. And the
# workspace holds together: the examples build from the root, as the
# README's first command runs them.
workspace() {
	(cd internal/release && GOWORK=off go build -o ../../.tools/release .)
	.tools/release rules
	go build ./examples/...
}

# test_module DIR: go vet and go test -race in the module in DIR, with the
# working tree of the modules of this repository it requires (a go.work of
# those alone, written by internal/release) and otherwise the versions of
# its own go.mod and go.sum: the root go.work would add up the requirements
# of every module, which is not what the module's users build. The core,
# which requires none, runs with GOWORK=off. The test binaries run without
# that GOWORK (-exec): a test that builds a command of another module
# (bench's build examples/echo) gets the root go.work, as in development.
test_module() {
	local work
	work=$(.tools/release workspace "$1" "$tmp/$(printf '%s' "$1" | tr -c 'A-Za-z0-9\n' _).go.work")
	cd "$1"
	GOWORK=$work go vet ./...
	GOWORK=$work go test -race -count=1 -timeout 600s -exec "env -u GOWORK" ${args[@]+"${args[@]}"} ./...
}

# The core declares the oldest Go it builds with (the go line of go.mod,
# which gobwas/ws v1.5.0 sets at 1.26.0); prove it with that toolchain, which
# the go command fetches from the module proxy.
min_go() {
	export GOTOOLCHAIN="go$1" GOWORK=off
	if ! go version; then
		echo "test.sh: cannot fetch the go$1 toolchain" >&2
		return 1
	fi
	go vet ./...
	go test -count=1 ${args[@]+"${args[@]}"} ./...
}

step "Debian packages: chromium, redis-server" debian_packages
step "npm: ws into .tools/node" node_ws
step "go.work and go.mod files (internal/release rules); go build ./examples/..." workspace
# Every module in the repository.
for mod in $(git ls-files '*go.mod'); do
	dir=$(dirname "$mod")
	step "go vet, go test -race: $dir" test_module "$dir"
done
# The modules as a consumer outside the repository gets them, from a module
# proxy made from the working tree as if it were tagged: every go.mod tidy
# on its own, and a consumer module built and run without network.
step "release check: go mod tidy as published, a consumer outside the tree" .tools/release check
min=$(awk '/^go /{print $2}' go.mod)
step "go vet, go test: the core with go$min, its minimum" min_go "$min"

echo "== [$(clock $SECONDS)] done; each step took:"
printf '%s' "$summary"
echo "steps: $passed passed, $failed failed"
exit $status
