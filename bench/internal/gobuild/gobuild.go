// Package gobuild builds the binaries the bench commands measure.
package gobuild

import (
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Build compiles the package pkg ("./cmd/server", say) of the module in
// modDir into dir, and returns the binary's path, named after pkg.
func Build(dir, modDir, pkg string) (string, error) {
	bin := filepath.Join(dir, strings.ReplaceAll(strings.TrimPrefix(pkg, "./"), "/", "-"))
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = modDir
	cmd.Stderr = os.Stderr
	return bin, cmd.Run()
}

// MustBuild is Build for commands: it exits if the build fails.
func MustBuild(dir, modDir, pkg string) string {
	bin, err := Build(dir, modDir, pkg)
	if err != nil {
		log.Fatalf("build %s: %v", pkg, err)
	}
	return bin
}
