package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// install.sh stages every file under DESTDIR, follows PREFIX in the units and the
// config, and run again changes nothing and keeps an edited config.
func TestInstallScript(t *testing.T) {
	src := t.TempDir()
	for _, f := range []string{"sandboxd", "sandboxctl", "rootfs.tar.zst"} {
		if err := os.WriteFile(filepath.Join(src, f), []byte(f), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dest := t.TempDir()
	install := func() string {
		cmd := exec.Command("../../scripts/install.sh")
		cmd.Env = append(os.Environ(), "DESTDIR="+dest, "PREFIX=/opt/sbx", "BIN_DIR="+src, "ROOTFS="+filepath.Join(src, "rootfs.tar.zst"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("install.sh: %v\n%s", err, out)
		}
		return string(out)
	}
	install()
	for _, f := range []string{"opt/sbx/bin/sandboxd", "opt/sbx/bin/sandboxctl", "opt/sbx/share/sandboxd/rootfs.tar.zst",
		"opt/sbx/share/doc/sandboxd/README.md", "etc/systemd/system/sandboxd.service", "etc/systemd/system/sandboxd.socket",
		"etc/sandboxd/config.toml"} {
		if _, err := os.Stat(filepath.Join(dest, f)); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	unit, _ := os.ReadFile(filepath.Join(dest, "etc/systemd/system/sandboxd.service"))
	if !strings.Contains(string(unit), "ExecStart=/opt/sbx/bin/sandboxd --config /etc/sandboxd/config.toml\n") {
		t.Errorf("the unit does not run the installed binary:\n%s", unit)
	}
	conf := filepath.Join(dest, "etc/sandboxd/config.toml")
	if b, _ := os.ReadFile(conf); !strings.Contains(string(b), `rootfs = "/opt/sbx/share/sandboxd/rootfs.tar.zst"`) {
		t.Errorf("the config does not name the installed rootfs")
	}
	if err := os.WriteFile(conf, []byte("max_jobs = 9\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := install()
	if strings.Contains(out, "installed ") {
		t.Errorf("a second run changed files:\n%s", out)
	}
	if b, _ := os.ReadFile(conf); string(b) != "max_jobs = 9\n" {
		t.Errorf("a second run overwrote the admin's config: %q", b)
	}
}

// systemd parses the units without complaint (where systemd-analyze is installed).
func TestUnitFiles(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	dir := t.TempDir()
	for _, f := range []string{"sandboxd.service", "sandboxd.socket"} {
		b, err := os.ReadFile("../../scripts/" + f)
		if err != nil {
			t.Fatal(err)
		}
		// verify wants ExecStart's binary to exist.
		b = []byte(strings.ReplaceAll(string(b), "/usr/local/bin/sandboxd", "/bin/true"))
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("systemd-analyze", "verify", filepath.Join(dir, "sandboxd.service"), filepath.Join(dir, "sandboxd.socket")).CombinedOutput()
	if err != nil || strings.Contains(string(out), dir) {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
