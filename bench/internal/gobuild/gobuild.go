// Package gobuild builds the binaries the bench commands measure.
package gobuild

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Build compiles the package pkg ("./cmd/server", say) of the module in
// modDir into dir, and returns the binary's path, named after pkg, or
// after modDir for its root package ".".
func Build(dir, modDir, pkg string) (string, error) {
	name := strings.ReplaceAll(strings.TrimPrefix(pkg, "./"), "/", "-")
	if pkg == "." {
		abs, err := filepath.Abs(modDir)
		if err != nil {
			return "", err
		}
		name = filepath.Base(abs)
	}
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = modDir
	cmd.Stderr = os.Stderr
	return bin, cmd.Run()
}
