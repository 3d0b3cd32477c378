// Command release makes this repository's modules what a consumer outside
// the tree gets when they are released, and checks them that way
// (docs/releasing.md).
//
// The published modules (the core and its adapters, brokers and metrics)
// are released together under one version, the one every go.mod of the
// repository requires of them. Until its tags exist, this command serves
// the working tree as that version: from the files git would commit (tracked
// and untracked, less what .gitignore leaves out), zipped as the module
// proxy zips a tagged tree, in a file:// module proxy.
//
//	go run . check          the checks ./test.sh runs (see check)
//	go run . rules          only the first: the go.mod and go.work files follow the scheme
//	go run . proxy DIR      write that module proxy to DIR
//	go run . tidy [-sums]   go mod tidy in every module, against that proxy
//	go run . version VER    make every go.mod require VER of the published modules
//	go run . workspace DIR FILE
//	                        write to FILE a go.work for the module in DIR and
//	                        the modules of this repository it needs, and
//	                        print the GOWORK to test it with ("off" if none)
//
// Every command runs from anywhere in the repository.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	modzip "golang.org/x/mod/zip"
)

// published lists the directories of the modules a consumer requires. They
// are tagged together, under one version; the other modules of the
// repository (examples, benchmarks, this command) are never tagged.
var published = []string{".", "adapters/fiber", "broker/nats", "broker/redis", "metrics/prometheus"}

func main() {
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: release check | rules | proxy DIR | tidy [-sums] | version VER | workspace DIR FILE")
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	r, err := loadRepo()
	if err == nil {
		err = run(r, flag.Arg(0), flag.Args()[1:])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

func run(r *repo, cmd string, args []string) error {
	switch cmd {
	case "check":
		return check(r)
	case "rules":
		return r.rules()
	case "proxy":
		if len(args) != 1 {
			return errors.New("usage: proxy DIR")
		}
		v, err := r.version()
		if err != nil {
			return err
		}
		dir, err := filepath.Abs(args[0])
		if err != nil {
			return err
		}
		if err := r.writeProxy(dir, v); err != nil {
			return err
		}
		fmt.Printf("GOPROXY=file://%s,file://%s/cache/download GOSUMDB=off\n", dir, goEnv("GOMODCACHE"))
		return nil
	case "tidy":
		fs := flag.NewFlagSet("tidy", flag.ExitOnError)
		sums := fs.Bool("sums", false, "write the go.sum lines of this repository's modules too (the release commit)")
		fs.Parse(args)
		if *sums {
			if err := r.onlyModFilesChanged(); err != nil {
				return err
			}
		}
		return tidyAll(r, *sums)
	case "version":
		if len(args) != 1 || !semver.IsValid(args[0]) || semver.Canonical(args[0]) != args[0] || semver.Build(args[0]) != "" {
			return errors.New("usage: version vX.Y.Z")
		}
		return r.setVersion(args[0])
	case "workspace":
		if len(args) != 2 {
			return errors.New("usage: workspace DIR FILE")
		}
		return r.workspace(args[0], args[1])
	}
	flag.Usage()
	os.Exit(2)
	return nil
}

type repo struct {
	root string
	mods []*mod // root first, then by directory
}

type mod struct {
	dir  string // relative to the root, "." for the core
	path string
	file *modfile.File
}

func (m *mod) abs(r *repo) string { return filepath.Join(r.root, filepath.FromSlash(m.dir)) }

func (m *mod) published() bool { return slices.Contains(published, m.dir) }

// loadRepo finds the repository around the working directory and its
// modules: every go.mod that git would commit.
func loadRepo() (*repo, error) {
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return nil, fmt.Errorf("not in a git repository: %v", err)
	}
	r := &repo{root: strings.TrimSpace(string(out))}
	files, err := r.gitFiles(".")
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		if path.Base(f) != "go.mod" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(r.root, f))
		if err != nil {
			return nil, err
		}
		mf, err := modfile.Parse(f, data, nil)
		if err != nil {
			return nil, err
		}
		if mf.Module == nil {
			return nil, fmt.Errorf("%s: no module line", f)
		}
		r.mods = append(r.mods, &mod{dir: path.Dir(f), path: mf.Module.Mod.Path, file: mf})
	}
	slices.SortFunc(r.mods, func(a, b *mod) int {
		switch {
		case a.dir == b.dir:
			return 0
		case a.dir == ".":
			return -1
		case b.dir == ".":
			return 1
		}
		return strings.Compare(a.dir, b.dir)
	})
	if len(r.mods) == 0 || r.mods[0].dir != "." {
		return nil, errors.New("no go.mod at the root of the repository")
	}
	for _, dir := range published {
		if r.mod(dir) == nil {
			return nil, fmt.Errorf("published module %s: no go.mod", dir)
		}
	}
	return r, nil
}

// gitFiles lists the files under dir (relative to the root) that git would
// commit: tracked and untracked, less the ignored ones and those deleted
// from the working tree.
func (r *repo) gitFiles(dir string) ([]string, error) {
	cmd := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", dir)
	cmd.Dir = r.root
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git ls-files: %v", err)
	}
	var files []string
	seen := map[string]bool{}
	for f := range strings.SplitSeq(strings.TrimSuffix(string(out), "\x00"), "\x00") {
		if f == "" || seen[f] {
			continue
		}
		seen[f] = true
		if _, err := os.Lstat(filepath.Join(r.root, f)); errors.Is(err, os.ErrNotExist) {
			continue
		}
		files = append(files, f)
	}
	return files, nil
}

// onlyModFilesChanged fails unless the working tree is HEAD but for go.mod,
// go.sum and go.work files: the hashes tidy -sums writes are those of the
// tree, and must be those of the commit that is tagged.
func (r *repo) onlyModFilesChanged() error {
	cmd := exec.Command("git", "status", "--porcelain", "-z", "--untracked-files=all")
	cmd.Dir = r.root
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("git status: %v", err)
	}
	var other []string
	for e := range strings.SplitSeq(strings.TrimSuffix(string(out), "\x00"), "\x00") {
		if len(e) > 3 {
			if b := path.Base(e[3:]); b != "go.mod" && b != "go.sum" && e[3:] != "go.work" && e[3:] != "go.work.sum" {
				other = append(other, e[3:])
			}
		}
	}
	if len(other) > 0 {
		return fmt.Errorf("tidy -sums hashes the working tree for the tags: commit or remove first %s", strings.Join(other, ", "))
	}
	return nil
}

func (r *repo) mod(dir string) *mod {
	for _, m := range r.mods {
		if m.dir == dir {
			return m
		}
	}
	return nil
}

func (r *repo) byPath(p string) *mod {
	for _, m := range r.mods {
		if m.path == p {
			return m
		}
	}
	return nil
}

// version is the version every go.mod requires of the published modules:
// the one they are released under, all together.
func (r *repo) version() (string, error) {
	var v, where string
	for _, m := range r.mods {
		for _, req := range m.file.Require {
			if r.byPath(req.Mod.Path) == nil {
				continue
			}
			if v == "" {
				v, where = req.Mod.Version, m.dir+"/go.mod"
			} else if req.Mod.Version != v {
				return "", fmt.Errorf("%s/go.mod requires %s, %s requires %s: this repository's modules are released together, under one version (go run ./internal/release version VER)",
					m.dir, req.Mod, where, v)
			}
		}
	}
	if v == "" {
		return "", errors.New("no go.mod requires a module of this repository")
	}
	if !semver.IsValid(v) || semver.Canonical(v) != v || module.IsPseudoVersion(v) {
		return "", fmt.Errorf("%s requires version %s of this repository's modules: not a release version vX.Y.Z", where, v)
	}
	return v, nil
}

// rules checks what the scheme needs of every go.mod.
func (r *repo) rules() error {
	var errs []error
	for _, m := range r.mods {
		want := r.mods[0].path
		if m.dir != "." {
			want += "/" + m.dir
		}
		if m.path != want {
			errs = append(errs, fmt.Errorf("%s/go.mod: module %s, want %s (the path its tags give it)", m.dir, m.path, want))
		}
		for _, rep := range m.file.Replace {
			errs = append(errs, fmt.Errorf("%s/go.mod: replace %s: no replace directives (the root go.work joins the modules for development)", m.dir, rep.Old.Path))
		}
		for _, req := range m.file.Require {
			if dep := r.byPath(req.Mod.Path); dep != nil && m.published() && !dep.published() {
				errs = append(errs, fmt.Errorf("%s/go.mod: the published module requires %s, which is never released", m.dir, req.Mod.Path))
			}
		}
	}
	if err := r.checkWork(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// readWork parses the root go.work.
func (r *repo) readWork() (*modfile.WorkFile, error) {
	name := filepath.Join(r.root, "go.work")
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	return modfile.ParseWork(name, data, nil)
}

// checkWork checks that the root go.work uses every module and replaces
// the version of each published module that the go.mod files require
// with its directory: a module in the workspace is only a root of version
// selection, the version another module requires of it is still in the
// module graph (golang.org/issue/66516), and the go command would ask the
// module proxy for its go.mod, which an unpublished version does not have.
func (r *repo) checkWork() error {
	wf, err := r.readWork()
	if err != nil {
		return err
	}
	var errs []error
	used := map[string]bool{}
	for _, u := range wf.Use {
		used[filepath.Clean(filepath.Join(r.root, filepath.FromSlash(u.Path)))] = true
	}
	for _, m := range r.mods {
		if !used[m.abs(r)] {
			errs = append(errs, fmt.Errorf("go.work does not use the module in %s: run go work use ./%s", m.dir, m.dir))
		}
	}
	v, err := r.version()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	want := r.workReplaces()
	for _, rep := range wf.Replace {
		if i := slices.IndexFunc(want, func(m *mod) bool { return m.path == rep.Old.Path }); i >= 0 && rep.Old.Version == v &&
			filepath.Clean(filepath.Join(r.root, filepath.FromSlash(rep.New.Path))) == want[i].abs(r) && rep.New.Version == "" {
			want = slices.Delete(want, i, i+1)
			continue
		}
		errs = append(errs, fmt.Errorf("go.work: replace %v => %v: the only replace directives are those of the published modules at %s, by their directories (go run ./internal/release version %s)", rep.Old, rep.New, v, v))
	}
	for _, m := range want {
		errs = append(errs, fmt.Errorf("go.work: no replace %s %s => ./%s (go run ./internal/release version %s)", m.path, v, m.dir, v))
	}
	return errors.Join(errs...)
}

// workReplaces lists the modules the root go.work replaces at the version
// the go.mod files require: the published ones.
func (r *repo) workReplaces() []*mod {
	var reps []*mod
	for _, dir := range published {
		reps = append(reps, r.mod(dir))
	}
	return reps
}

// formatWork writes the root go.work: its go line and its use directives
// as they are, then the replace directives for version v.
func (r *repo) formatWork(wf *modfile.WorkFile, v string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "go %s\n\nuse (\n", wf.Go.Version)
	for _, u := range wf.Use {
		fmt.Fprintf(&b, "\t%s\n", u.Path)
	}
	b.WriteString(")\n\n")
	b.WriteString(workComment)
	b.WriteString("replace (\n")
	for _, m := range r.workReplaces() {
		dir := "."
		if m.dir != "." {
			dir = "./" + m.dir
		}
		fmt.Fprintf(&b, "\t%s %s => %s\n", m.path, v, dir)
	}
	b.WriteString(")\n")
	return []byte(b.String())
}

const workComment = `// The go.mod files require the published modules of this repository at
// the version of the release (docs/releasing.md), which the module proxy
// does not have before it is tagged. A module used here is a root of
// version selection, not a replacement of every version of it: these
// directives make that version the working tree too.
`

// setVersion makes every go.mod require v of the modules of this
// repository it requires.
func (r *repo) setVersion(v string) error {
	for _, m := range r.mods {
		changed := false
		for _, req := range m.file.Require {
			if r.byPath(req.Mod.Path) != nil && req.Mod.Version != v {
				if err := m.file.AddRequire(req.Mod.Path, v); err != nil {
					return err
				}
				changed = true
			}
		}
		if !changed {
			continue
		}
		data, err := m.file.Format()
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(m.abs(r), "go.mod"), data, 0o666); err != nil {
			return err
		}
		fmt.Printf("%s/go.mod: requires %s\n", m.dir, v)
	}
	wf, err := r.readWork()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(r.root, "go.work"), r.formatWork(wf, v), 0o666); err != nil {
		return err
	}
	fmt.Printf("go.work: replaces %s of the published modules by their directories\n", v)
	return nil
}

// writeProxy writes a file:// module proxy (the GOPROXY protocol's layout)
// that serves every published module at version v, made from the working
// tree.
func (r *repo) writeProxy(dir, v string) error {
	t := time.Now().UTC()
	if out, err := exec.Command("git", "-C", r.root, "log", "-1", "--format=%cI").Output(); err == nil {
		if ct, err := time.Parse(time.RFC3339, strings.TrimSpace(string(out))); err == nil {
			t = ct.UTC()
		}
	}
	info, _ := json.Marshal(struct {
		Version string
		Time    time.Time
	}{v, t})
	for _, dir0 := range published {
		m := r.mod(dir0)
		esc, err := module.EscapePath(m.path)
		if err != nil {
			return err
		}
		at := filepath.Join(dir, filepath.FromSlash(esc), "@v")
		if err := os.MkdirAll(at, 0o777); err != nil {
			return err
		}
		gomod, err := os.ReadFile(filepath.Join(m.abs(r), "go.mod"))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(at, v+".mod"), gomod, 0o666); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(at, v+".info"), info, 0o666); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(at, "list"), []byte(v+"\n"), 0o666); err != nil {
			return err
		}
		if err := r.writeZip(m, v, filepath.Join(at, v+".zip")); err != nil {
			return fmt.Errorf("%s@%s: %v", m.path, v, err)
		}
	}
	return nil
}

type file struct{ rel, abs string }

func (f file) Path() string                 { return f.rel }
func (f file) Lstat() (os.FileInfo, error)  { return os.Lstat(f.abs) }
func (f file) Open() (io.ReadCloser, error) { return os.Open(f.abs) }

// writeZip zips module m as the module proxy zips a tagged tree: its
// files less those of the modules nested in it (golang.org/x/mod/zip
// leaves out every directory with a go.mod of its own).
func (r *repo) writeZip(m *mod, v, name string) error {
	rels, err := r.gitFiles(m.dir)
	if err != nil {
		return err
	}
	var files []modzip.File
	for _, rel := range rels {
		inMod := rel
		if m.dir != "." {
			inMod = strings.TrimPrefix(rel, m.dir+"/")
		}
		files = append(files, file{rel: inMod, abs: filepath.Join(r.root, filepath.FromSlash(rel))})
	}
	var buf bytes.Buffer
	if err := modzip.Create(&buf, module.Version{Path: m.path, Version: v}, files); err != nil {
		return err
	}
	return os.WriteFile(name, buf.Bytes(), 0o666)
}

// workspace writes to file a go.work that uses the module in dir and the
// modules of this repository that its go.mod requires, and theirs in turn
// (replacing their required version by their directories, as the root
// go.work does), and prints the GOWORK to test it with: file, or "off" when the module
// requires none. So each module is tested with the working tree of what it
// requires from the repository, and otherwise with the versions of its own
// go.mod, not those every module of the root go.work adds up to.
func (r *repo) workspace(dir, file string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(r.root, abs)
	if err != nil {
		return err
	}
	start := r.mod(filepath.ToSlash(rel))
	if start == nil {
		return fmt.Errorf("no module in %s", dir)
	}
	use := []*mod{start}
	for i := 0; i < len(use); i++ {
		for _, req := range use[i].file.Require {
			if dep := r.byPath(req.Mod.Path); dep != nil && !slices.Contains(use, dep) {
				use = append(use, dep)
			}
		}
	}
	if len(use) == 1 {
		fmt.Println("off")
		return nil
	}
	v, err := r.version()
	if err != nil {
		return err
	}
	goVersion := "1.21"
	var b, reps strings.Builder
	for i, m := range use {
		if m.file.Go != nil && semver.Compare("v"+m.file.Go.Version, "v"+goVersion) > 0 {
			goVersion = m.file.Go.Version
		}
		fmt.Fprintf(&b, "\t%s\n", m.abs(r))
		if i > 0 {
			fmt.Fprintf(&reps, "\t%s %s => %s\n", m.path, v, m.abs(r))
		}
	}
	work := fmt.Sprintf("go %s\n\nuse (\n%s)\n\n// As in the root go.work, which says why.\nreplace (\n%s)\n", goVersion, b.String(), reps.String())
	if err := os.WriteFile(file, []byte(work), 0o666); err != nil {
		return err
	}
	fmt.Println(file)
	return nil
}

// goEnv returns the value of a go env variable.
func goEnv(name string) string {
	out, err := exec.Command("go", "env", name).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
