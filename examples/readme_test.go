package examples_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lameduck/lameduck/internal/testutil"
)

// TestREADME builds every Go block of README.md that is a whole program
// (it starts with "package main") against the checkout, so that the quick
// starts compile as printed. Each block becomes the main.go of a package
// directory inside the module that exists only in a build overlay
// (go build -overlay), so nothing is written into the repository.
func TestREADME(t *testing.T) {
	t.Parallel()
	root := testutil.ModuleRoot(t)
	data, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	programs := goPrograms(string(data))
	if len(programs) < 4 {
		t.Fatalf("README.md has %d whole Go programs, want at least 4 (chi, gin, gRPC, HTTP + gRPC + admin)", len(programs))
	}

	tmp := t.TempDir()
	replace := map[string]string{}
	var pkgs []string
	for i, p := range programs {
		src := filepath.Join(tmp, fmt.Sprintf("readme%d.go", i))
		if err := os.WriteFile(src, []byte(p.src), 0o644); err != nil {
			t.Fatal(err)
		}
		dir := fmt.Sprintf("examples/readme-program-%d", i)
		replace[filepath.Join(root, dir, "main.go")] = src
		pkgs = append(pkgs, "./"+dir)
	}
	overlay, err := json.Marshal(map[string]any{"Replace": replace})
	if err != nil {
		t.Fatal(err)
	}
	overlayFile := filepath.Join(tmp, "overlay.json")
	if err := os.WriteFile(overlayFile, overlay, 0o644); err != nil {
		t.Fatal(err)
	}

	// One go build of several main packages compiles them all and
	// discards the results.
	cmd := exec.CommandContext(t.Context(), "go", append([]string{"build", "-overlay=" + overlayFile}, pkgs...)...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		msg := string(out)
		for i, p := range programs {
			msg = strings.ReplaceAll(msg, fmt.Sprintf("readme-program-%d", i), fmt.Sprintf("README.md:%d", p.line))
		}
		t.Fatalf("a program of README.md does not compile (directory README.md:N is the block that starts on line N):\n%s", msg)
	}

	// gofmt: the programs are printed as gofmt prints them, so that the
	// line counts of the quick starts are what a user gets.
	for i, p := range programs {
		cmd := exec.CommandContext(t.Context(), "gofmt", "-l", filepath.Join(tmp, fmt.Sprintf("readme%d.go", i)))
		if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("the program at README.md:%d is not gofmt-formatted (%v): %s", p.line, err, out)
		}
	}
}

type readmeProgram struct {
	line int // of the block's first line of code
	src  string
}

// goPrograms returns the ```go blocks of a Markdown text that start with
// "package main".
func goPrograms(md string) []readmeProgram {
	var (
		out   []readmeProgram
		in    bool
		start int
		b     strings.Builder
	)
	for i, line := range strings.Split(md, "\n") {
		switch {
		case !in && strings.TrimSpace(line) == "```go":
			in, start = true, i+2
			b.Reset()
		case in && strings.TrimSpace(line) == "```":
			in = false
			if src := b.String(); strings.HasPrefix(src, "package main\n") {
				out = append(out, readmeProgram{line: start, src: src})
			}
		case in:
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return out
}
