package server

import (
	"archive/tar"
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/rootfs"
)

// tinyTmpfs mounts a tmpfs of size bytes for the test and unmounts it after.
func tinyTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Fatalf("mount a tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// A full disk while importing a rootfs is the daemon's fault: a logged 507, not 400;
// a bad tarball stays 400. Both the staging of the upload and the unpacking can fill it.
func TestAdminRootfsDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounts a tiny tmpfs: needs root")
	}
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	big := bytes.Repeat([]byte("x"), 1<<20)
	tw.WriteHeader(&tar.Header{Name: "usr/bin/python3", Mode: 0o755, Size: int64(len(big)), Typeflag: tar.TypeReg})
	tw.Write(big)
	tw.Close()
	tarball := tb.Bytes()

	for _, c := range []struct {
		name, uploadSize, storeSize string
		body                        []byte
		code                        int
		logged                      string
	}{
		{"upload fills the disk", "256k", "", tarball, 507, "stage rootfs upload"},
		{"unpacking fills the disk", "", "256k", tarball, 507, "import rootfs"},
		{"a bad tarball is still the client's", "", "", []byte("not a tarball at all"), 400, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			storeDir, uploadDir := t.TempDir(), t.TempDir()
			if c.storeSize != "" {
				storeDir = tinyTmpfs(t, c.storeSize)
			}
			if c.uploadSize != "" {
				uploadDir = tinyTmpfs(t, c.uploadSize)
			}
			store, err := rootfs.NewStore(filepath.Join(storeDir, "rootfs"), rootfs.Options{})
			if err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			eng := &fakeEngine{}
			gate := NewGate(eng, nil)
			s := New(gate, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			(&Admin{Engine: eng, Gate: gate, Store: store, Started: time.Now(), UploadDir: uploadDir}).Register(s)

			code, ans := do(t, s, "POST", "/v1/admin/rootfs", c.body)
			if code != c.code {
				t.Errorf("HTTP %d %v, want %d", code, ans, c.code)
			}
			msg, _ := ans["error"].(string)
			if strings.Contains(msg, storeDir) || strings.Contains(msg, uploadDir) {
				t.Errorf("the answer shows a host path: %q", msg)
			}
			if c.logged == "" {
				if logs.Len() != 0 {
					t.Errorf("a client's error was logged as the server's: %s", logs.String())
				}
				return
			}
			if !strings.Contains(msg, "disk is full") {
				t.Errorf("error %q does not say the disk is full", msg)
			}
			if l := logs.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, c.logged) || !strings.Contains(l, "no space left on device") {
				t.Errorf("the fault was not logged as %q with its cause:\n%s", c.logged, l)
			}
			// Nothing half-done stays: no staged upload, no partial tree, no image.
			if ents, _ := os.ReadDir(uploadDir); len(ents) > 0 {
				t.Errorf("the staged upload is left: %v", ents)
			}
			if imgs, err := store.List(); err != nil || len(imgs) != 0 {
				t.Errorf("the store lists %v %v after a failed import", imgs, err)
			}
			ents, _ := os.ReadDir(filepath.Join(storeDir, "rootfs"))
			for _, e := range ents {
				t.Errorf("left in the store: %s", e.Name())
			}
		})
	}
}
