#!/usr/bin/env bash
# Installs what the tests need, then runs every module's tests with the race
# detector. Works on a fresh Debian machine with Go and Node; safe to re-run.
#
#   ./test.sh            everything
#   ./test.sh -short     skip the tests that start extra processes
set -euo pipefail
cd "$(dirname "$0")"

# Debian packages: headless Chromium for the browser tests, redis-server for
# the Redis broker's tests (which start it themselves on a free port).
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
if [ -n "$missing" ]; then
	echo "test.sh: installing$missing (Debian)"
	SUDO=""
	[ "$(id -u)" -ne 0 ] && SUDO="sudo"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
	# The package starts a redis-server on 6379; the tests start their own.
	$SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true
fi

# The Node ws client for the interoperability tests, kept out of the repo.
if [ ! -d .tools/node/node_modules/ws ]; then
	echo "test.sh: installing the ws npm package into .tools/node"
	npm install --silent --no-audit --no-fund --prefix .tools/node ws@8 >/dev/null
fi

export WSHUB_NODE_MODULES="$PWD/.tools/node/node_modules"
export WSHUB_CHROMIUM="$(command -v chromium)"

status=0
# The go.work at the root lists every module, so that `go run
# ./examples/chat` works from a fresh clone; inside a module it left out,
# every go command would fail.
used=$(go work edit -json go.work | sed -n 's/^[[:space:]]*"DiskPath": "\(.*\)",\{0,1\}$/\1/p')
for mod in $(git ls-files '*go.mod' 2>/dev/null); do
	dir=$(dirname "$mod")
	[ "$dir" = . ] || dir="./$dir"
	if ! printf '%s\n' "$used" | grep -qxF -- "$dir"; then
		echo "test.sh: go.work does not list the module in $dir: run go work use $dir" >&2
		status=1
	fi
done
# And the workspace holds together: the examples build from the root, as
# the README's first command runs them.
echo "== go build ./examples/... (go.work)"
go build ./examples/... || status=1

# Every module in the repository: the core and those with their own go.mod,
# each once, on its own go.mod and go.sum (GOWORK=off): the go.work would
# resolve the dependencies of all the modules together, which is not what
# a module's users build.
export GOWORK=off
for mod in $(git ls-files '*go.mod' 2>/dev/null || find . -name go.mod -not -path './.tools/*'); do
	dir=$(dirname "$mod")
	echo "== go test -race $dir/..."
	(cd "$dir" && go vet ./... && go test -race -count=1 -timeout 600s "$@" ./...) || status=1
done
# The core declares the oldest Go it builds with (the go line of go.mod,
# which gobwas/ws v1.5.0 sets at 1.26.0); prove it with that toolchain, which
# the go command fetches from the module proxy.
min=$(awk '/^go /{print $2}' go.mod)
echo "== go test with go$min, the core's minimum"
if ! GOTOOLCHAIN="go$min" go version >/dev/null; then
	echo "test.sh: cannot fetch the go$min toolchain" >&2
	status=1
elif ! (GOTOOLCHAIN="go$min" go vet ./... && GOTOOLCHAIN="go$min" go test -count=1 "$@" ./...); then
	status=1
fi
exit $status
