package main

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/module"
)

//go:embed testdata/consumer/main.go
var consumerMain []byte

// check is what ./test.sh runs:
//
//   - every go.mod follows the scheme: its path is the one its tags give
//     it, no replace directive, one version required of the published
//     modules, and a published module requires no unpublished one;
//   - the published modules, served at that version from a file:// module
//     proxy made from the working tree, leave every module's go.mod and
//     go.sum as they are under go mod tidy (GOWORK=off): each module
//     resolves on its own, as it does for a consumer;
//   - a consumer module in a temporary directory outside the tree requires
//     every published module at that version, builds with that proxy and
//     the module cache's downloads alone (no network), and runs.
func check(r *repo) error {
	if err := r.rules(); err != nil {
		return err
	}
	v, err := r.version()
	if err != nil {
		return err
	}
	fmt.Printf("release: the published modules at %s, made from the working tree as if tagged\n", v)
	return withProxy(r, func(env []string) error {
		var errs []error
		for _, m := range r.mods {
			start := time.Now()
			diff, err := r.tidy(m, env, write{check: true})
			switch {
			case err != nil:
				errs = append(errs, err)
			case diff != "":
				errs = append(errs, fmt.Errorf("%s: go mod tidy would change go.mod or go.sum (go run ./internal/release tidy):\n%s", m.dir, diff))
			default:
				fmt.Printf("release: %-20s tidy as published (%.1fs)\n", m.dir, time.Since(start).Seconds())
			}
		}
		if len(errs) > 0 {
			return joinErrors(errs)
		}
		return r.consumer(v, offline(env))
	})
}

func joinErrors(errs []error) error {
	var b strings.Builder
	for _, err := range errs {
		fmt.Fprintf(&b, "\n%v", err)
	}
	return fmt.Errorf("%s", b.String())
}

// withProxy writes the module proxy of the published modules to a
// temporary directory and runs fn with the environment of a go command
// that resolves this repository's modules through it, the others through
// the module cache's downloads and then GOPROXY as set, in a module cache
// of its own (so that nothing made from the working tree reaches the
// user's).
func withProxy(r *repo, fn func(env []string) error) error {
	v, err := r.version()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "wshub-release-")
	if err != nil {
		return err
	}
	defer removeAll(tmp)
	proxy := filepath.Join(tmp, "proxy")
	if err := r.writeProxy(proxy, v); err != nil {
		return err
	}
	goproxy := "file://" + proxy + ",file://" + filepath.Join(goEnv("GOMODCACHE"), "cache", "download")
	if p := goEnv("GOPROXY"); p != "" && p != "off" {
		goproxy += "," + p
	}
	var env []string
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "GOPROXY", "GOSUMDB", "GONOSUMDB", "GOPRIVATE", "GONOPROXY", "GOINSECURE", "GOMODCACHE", "GOWORK", "GOTOOLCHAIN", "GOFLAGS":
		default:
			env = append(env, kv)
		}
	}
	env = append(env,
		"GOPROXY="+goproxy,
		"GOSUMDB=off",
		"GOMODCACHE="+filepath.Join(tmp, "mod"),
		"GOWORK=off",
		"GOTOOLCHAIN=local",
		"GOFLAGS="+strings.TrimSpace(os.Getenv("GOFLAGS")+" -mod=mod -modcacherw"),
	)
	return fn(env)
}

// offline is env with only the file:// proxies: the module proxy made from
// the tree and the module cache's downloads.
func offline(env []string) []string {
	env = slices.Clone(env)
	for i, kv := range env {
		if rest, ok := strings.CutPrefix(kv, "GOPROXY="); ok {
			var keep []string
			for p := range strings.SplitSeq(rest, ",") {
				if strings.HasPrefix(p, "file://") {
					keep = append(keep, p)
				}
			}
			env[i] = "GOPROXY=" + strings.Join(keep, ",")
		}
	}
	return env
}

// removeAll removes dir, module cache included (its directories are
// read-only unless -modcacherw made them).
func removeAll(dir string) {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
	os.RemoveAll(dir)
}

// tidyAll tidies every module (see tidy) until nothing changes: a module's
// go.mod and go.sum are in its zip, so writing them changes what the proxy
// serves to the modules that require it (with sums, the hashes in their
// go.sum files), and the proxy is made again for another pass.
func tidyAll(r *repo, sums bool) error {
	for pass := 1; ; pass++ {
		changed := false
		err := withProxy(r, func(env []string) error {
			for _, m := range r.mods {
				wrote, err := r.tidy(m, env, write{sums: sums})
				if err != nil {
					return err
				}
				changed = changed || wrote != ""
			}
			return nil
		})
		if err != nil || !changed {
			return err
		}
		if pass == 5 {
			return errors.New("go.mod and go.sum files still change after 5 passes of go mod tidy")
		}
		if r, err = loadRepo(); err != nil {
			return err
		}
	}
}

type write struct {
	check bool // report what would change, change nothing
	sums  bool // write the go.sum lines of this repository's modules
}

// tidy runs go mod tidy in module m on copies of its go.mod and go.sum
// (-modfile), the go.sum without lines for this repository's modules: the
// proxy serves the working tree, whose hashes are not those of a version
// already released. It then reports the difference (w.check) or writes
// the result, and then lists the files it wrote. Lines for this
// repository's modules are kept where go.sum had them and tidy still needs
// them, and written afresh with w.sums, the release commit's
// (docs/releasing.md).
func (r *repo) tidy(m *mod, env []string, w write) (diff string, err error) {
	dir := m.abs(r)
	gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return "", err
	}
	gosum, err := os.ReadFile(filepath.Join(dir, "go.sum"))
	if err != nil && !os.IsNotExist(err) {
		return "", err
	}
	old := parseSum(gosum)
	tmp, err := os.MkdirTemp("", "wshub-tidy-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	var theirs []sumLine
	for _, l := range old {
		if r.byPath(l.path) == nil {
			theirs = append(theirs, l)
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, "go.mod"), gomod, 0o666); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(tmp, "go.sum"), formatSum(theirs), 0o666); err != nil {
		return "", err
	}
	cmd := exec.Command("go", "mod", "tidy", "-modfile="+filepath.Join(tmp, "go.mod"))
	cmd.Dir = dir
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s: go mod tidy: %v\n%s", m.dir, err, out)
	}
	newMod, err := os.ReadFile(filepath.Join(tmp, "go.mod"))
	if err != nil {
		return "", err
	}
	newSum, err := os.ReadFile(filepath.Join(tmp, "go.sum"))
	if err != nil && !os.IsNotExist(err) {
		return "", err
	}
	var sum []sumLine
	for _, l := range parseSum(newSum) {
		if r.byPath(l.path) != nil && !w.sums {
			i := slices.IndexFunc(old, func(o sumLine) bool { return o.path == l.path && o.vers == l.vers })
			if i < 0 {
				continue
			}
			l = old[i]
		}
		sum = append(sum, l)
	}
	wantSum := formatSum(sum)
	if w.check {
		return lineDiff("go.mod", gomod, newMod) + lineDiff("go.sum", gosum, wantSum), nil
	}
	var wrote []string
	for _, f := range []struct {
		name     string
		old, cur []byte
	}{{"go.mod", gomod, newMod}, {"go.sum", gosum, wantSum}} {
		if bytes.Equal(f.old, f.cur) {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, f.name), f.cur, 0o666); err != nil {
			return "", err
		}
		fmt.Printf("%s/%s: tidied\n", m.dir, f.name)
		wrote = append(wrote, m.dir+"/"+f.name)
	}
	return strings.Join(wrote, " "), nil
}

type sumLine struct{ path, vers, hash string } // vers ends in /go.mod for a go.mod's hash

func parseSum(data []byte) []sumLine {
	var lines []sumLine
	for l := range strings.Lines(string(data)) {
		if f := strings.Fields(l); len(f) == 3 {
			lines = append(lines, sumLine{f[0], f[1], f[2]})
		}
	}
	return lines
}

// formatSum writes lines in the go command's order.
func formatSum(lines []sumLine) []byte {
	hashes := map[module.Version][]string{}
	var vs []module.Version
	for _, l := range lines {
		v := module.Version{Path: l.path, Version: l.vers}
		if hashes[v] == nil {
			vs = append(vs, v)
		}
		hashes[v] = append(hashes[v], l.hash)
	}
	module.Sort(vs)
	var b bytes.Buffer
	for _, v := range vs {
		hs := hashes[v]
		slices.Sort(hs)
		for _, h := range slices.Compact(hs) {
			fmt.Fprintf(&b, "%s %s %s\n", v.Path, v.Version, h)
		}
	}
	return b.Bytes()
}

// lineDiff lists the lines of name only in old (-) or only in new (+).
func lineDiff(name string, old, cur []byte) string {
	if bytes.Equal(old, cur) {
		return ""
	}
	count := func(data []byte) map[string]int {
		m := map[string]int{}
		for l := range strings.Lines(string(data)) {
			m[strings.TrimRight(l, "\n")]++
		}
		return m
	}
	o, n := count(old), count(cur)
	var b strings.Builder
	for l := range strings.Lines(string(old)) {
		if l = strings.TrimRight(l, "\n"); o[l] > n[l] {
			fmt.Fprintf(&b, "\t%s -%s\n", name, l)
		}
	}
	for l := range strings.Lines(string(cur)) {
		if l = strings.TrimRight(l, "\n"); n[l] > o[l] {
			fmt.Fprintf(&b, "\t%s +%s\n", name, l)
		}
	}
	if b.Len() == 0 {
		b.WriteString("\t" + name + ": the same lines in another order\n")
	}
	return b.String()
}

// consumer builds and runs testdata/consumer in a module of its own in a
// temporary directory outside the tree, as a user would, with every
// published module required at version v; env must reach no network.
func (r *repo) consumer(v string, env []string) error {
	dir, err := os.MkdirTemp("", "wshub-consumer-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/consumer\n\ngo 1.26.0\n"), 0o666); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), consumerMain, 0o666); err != nil {
		return err
	}
	for _, kv := range env {
		if strings.HasPrefix(kv, "GOPROXY=") || strings.HasPrefix(kv, "GOSUMDB=") || strings.HasPrefix(kv, "GOFLAGS=") {
			fmt.Printf("release: consumer: %s\n", kv)
		}
	}
	get := []string{"go", "get"}
	for _, d := range published {
		get = append(get, r.mod(d).path+"@"+v)
	}
	for _, args := range [][]string{
		get,
		{"go", "mod", "tidy"},
		{"go", "build", "-trimpath", "-o", "consumer", "."},
		{"./consumer"},
	} {
		fmt.Printf("release: consumer: $ %s\n", strings.Join(args, " "))
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = dir
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		for l := range strings.Lines(string(out)) {
			// The added requirements: this repository's; not the others.
			if strings.HasPrefix(l, "go: added ") && !strings.Contains(l, "github.com/wshub/") {
				continue
			}
			if !strings.HasPrefix(l, "go: downloading ") && !strings.HasPrefix(l, "go: finding ") {
				fmt.Print("\t" + l)
			}
		}
		if err != nil {
			return fmt.Errorf("consumer in %s: %s: %v", dir, strings.Join(args, " "), err)
		}
	}
	gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return err
	}
	if strings.Contains(string(gomod), "replace") {
		return fmt.Errorf("consumer's go.mod has a replace directive:\n%s", gomod)
	}
	fmt.Printf("release: consumer outside the tree: built and ran with the published modules at %s, no network, no replace\n", v)
	return nil
}
