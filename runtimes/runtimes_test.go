package runtimes

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Every shipped definition parses, and each names its image and commands.
func TestShipped(t *testing.T) {
	rts, err := Shipped()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"bash", "c", "c++", "go", "java", "javascript", "python", "ruby", "rust", "typescript"}
	var got []string
	for _, rt := range rts {
		got = append(got, rt.Name)
		if rt.Image == "" || len(rt.Run) == 0 || rt.Main == "" || rt.Version == "" {
			t.Errorf("%s: %+v", rt.Name, rt)
		}
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("shipped %v, want %v", got, want)
	}
}

func TestParse(t *testing.T) {
	rt, err := Parse([]byte(`name = "x"
version = "1.2"
image = "base"
main = "main.x"
compile = ["xc", "{main}"]
run = ["{out}", "{args}"]
[limits]
memory = "256MB"
timeout = 5
[compile_limits]
timeout = "1m"
`))
	if err != nil {
		t.Fatal(err)
	}
	if rt.Limits.Memory != 256<<20 || rt.Limits.Timeout != 5*time.Second || rt.CompileLimits.Timeout != time.Minute || !rt.Compiled() {
		t.Errorf("%+v", rt)
	}
	for name, bad := range map[string]string{
		"unknown key":   "name = \"x\"\nversion = \"1\"\nimage = \"i\"\nmian = \"typo\"",
		"unknown limit": "name = \"x\"\nversion = \"1\"\nimage = \"i\"\n[limits]\nram = \"1GB\"",
		"bad size":      "name = \"x\"\nversion = \"1\"\nimage = \"i\"\n[limits]\nmemory = \"lots\"",
		"no image":      "name = \"x\"\nversion = \"1\"",
	} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

// A config dir adds runtimes and replaces shipped ones by name; a missing dir adds none.
func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "python.toml"), []byte("name = \"python\"\nversion = \"9\"\nimage = \"mine\"\nmain = \"m.py\"\nrun = [\"python3\", \"{main}\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "lua.toml"), []byte("name = \"lua\"\nversion = \"5.4\"\nimage = \"lua\"\nmain = \"main.lua\"\nrun = [\"lua\", \"{main}\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rts, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]string{}
	for _, rt := range rts {
		by[rt.Name] = rt.Version
	}
	if by["python"] != "9" || by["lua"] != "5.4" || by["c"] == "" {
		t.Errorf("%v", by)
	}
	if _, err := Load(filepath.Join(dir, "missing")); err != nil {
		t.Errorf("missing dir: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "broken.toml"), []byte("name = "), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "broken.toml") {
		t.Errorf("a broken file: %v", err)
	}
}
