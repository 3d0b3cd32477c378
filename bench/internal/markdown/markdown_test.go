package markdown

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sectionTitle = "## Echo: server CPU"

func TestReplaceSection(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "RESULTS.md")
	os.WriteFile(path, []byte("# R\n\n## Echo\n\nold echo\n\n## Broadcast\n\nb\n"), 0o644)
	first := sectionTitle + "\n\nfirst\n\n"
	if err := ReplaceSection(path, sectionTitle, first); err != nil {
		t.Fatal(err)
	}
	second := sectionTitle + "\n\nsecond\n\n"
	if err := ReplaceSection(path, sectionTitle, second); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	want := "# R\n\n## Echo\n\nold echo\n\n## Broadcast\n\nb\n\n" + sectionTitle + "\n\nsecond\n"
	if string(b) != want {
		t.Fatalf("got\n%s\nwant\n%s", b, want)
	}
	// A section in the middle is replaced in place.
	os.WriteFile(path, []byte("# R\n\n"+first+"## Later\n\nl\n"), 0o644)
	if err := ReplaceSection(path, sectionTitle, second); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	if want := "# R\n\n" + second + "## Later\n\nl\n"; string(b) != want {
		t.Fatalf("got\n%s\nwant\n%s", b, want)
	}
	if strings.Count(string(b), sectionTitle) != 1 {
		t.Fatalf("section written twice:\n%s", b)
	}
}
