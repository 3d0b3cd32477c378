// Package markdown rewrites one section of a Markdown file, the way the
// bench commands keep their own part of RESULTS.md up to date.
package markdown

import (
	"os"
	"strings"
)

// ReplaceSection replaces the section of the Markdown file at path that starts with
// the heading line title and runs to the next "## " heading with section,
// or adds section at the end when the file has no such heading. section
// starts with title.
func ReplaceSection(path, title, section string) error {
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	old := string(b)
	if i := strings.Index(old, title+"\n"); i >= 0 {
		rest := old[i+len(title):]
		end := len(old)
		if j := strings.Index(rest, "\n## "); j >= 0 {
			end = i + len(title) + j + 1
		}
		old = old[:i] + section + old[end:]
	} else {
		if old != "" && !strings.HasSuffix(old, "\n\n") {
			old = strings.TrimRight(old, "\n") + "\n\n"
		}
		old += section
	}
	return os.WriteFile(path, []byte(strings.TrimRight(old, "\n")+"\n"), 0o644)
}
