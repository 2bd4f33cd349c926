package rootfs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// sample is a small but complete archive: explicit and implicit directories, modes with
// setuid, owners, a symlink and a hard link.
func sample() []ent {
	suid := file("usr/bin/su", "su")
	suid.hdr.Mode = 0o4755
	owned := file("home/u/notes", "hello")
	owned.hdr.Uid, owned.hdr.Gid = 1000, 1001
	private := dir("home/u")
	private.hdr.Mode, private.hdr.Uid, private.hdr.Gid = 0o750, 1000, 1001
	return []ent{dir("./"), dir("usr/"), dir("usr/bin/"), suid, dir("home/"), private, owned,
		file("a/b/c.txt", "implicit parents"), symlink("bin", "usr/bin"), hardlink("usr/bin/su2", "usr/bin/su")}
}

func TestImport(t *testing.T) {
	for _, comp := range []string{"", "gzip", "zstd"} {
		t.Run("format="+comp, func(t *testing.T) {
			data := tarBytes(t, comp, sample()...)
			storeDir := filepath.Join(t.TempDir(), "store")
			s := newStore(t, storeDir, Options{})
			img, err := s.Import(context.Background(), writeTemp(t, data))
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(data)
			if want := "sha256:" + hex.EncodeToString(sum[:]); img.Digest != want {
				t.Errorf("Digest = %s, want %s", img.Digest, want)
			}
			if want := filepath.Join(storeDir, hex.EncodeToString(sum[:]), "rootfs"); img.Path != want {
				t.Errorf("Path = %s, want %s", img.Path, want)
			}
			if img.Size != int64(len("su")+len("hello")+len("implicit parents")) {
				t.Errorf("Size = %d", img.Size)
			}
			checkTree(t, img.Path)

			got, err := s.Get(img.Digest)
			if err != nil || got != img {
				t.Errorf("Get = %+v, %v; want %+v", got, err, img)
			}
			list, err := s.List()
			if err != nil || len(list) != 1 || list[0] != img {
				t.Errorf("List = %+v, %v", list, err)
			}
		})
	}
}

func checkTree(t *testing.T, tree string) {
	t.Helper()
	modes := map[string]os.FileMode{
		".":          os.ModeDir | 0o755,
		"usr/bin/su": os.ModeSetuid | 0o755,
		"home/u":     os.ModeDir | 0o750,
		"a/b":        os.ModeDir | 0o755, // implicit
		"bin":        os.ModeSymlink | 0o777,
		"work":       os.ModeDir | 0o755, // mountpoints
		"tmp":        os.ModeDir | 0o755,
		"proc":       os.ModeDir | 0o755,
		"dev":        os.ModeDir | 0o755,
		"sys":        os.ModeDir | 0o755,
	}
	for name, want := range modes {
		fi, err := os.Lstat(filepath.Join(tree, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
		} else if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), want)
		}
	}
	mustRead(t, filepath.Join(tree, "a/b/c.txt"), "implicit parents")
	if target, err := os.Readlink(filepath.Join(tree, "bin")); err != nil || target != "usr/bin" {
		t.Errorf("bin -> %q, %v", target, err)
	}
	su, _ := os.Stat(filepath.Join(tree, "usr/bin/su"))
	su2, _ := os.Stat(filepath.Join(tree, "usr/bin/su2"))
	if su == nil || su2 == nil || !os.SameFile(su, su2) {
		t.Errorf("usr/bin/su2 is not a hard link to usr/bin/su")
	}
	for _, name := range []string{"usr/bin", "home/u/notes", "bin"} {
		fi, err := os.Lstat(filepath.Join(tree, name))
		if err != nil || !fi.ModTime().Equal(testTime) {
			t.Errorf("%s: mtime %v, %v; want %v", name, fi.ModTime(), err, testTime)
		}
	}
	if os.Geteuid() != 0 {
		t.Log("not root: skipping owner checks")
		return
	}
	for _, name := range []string{"home/u", "home/u/notes"} {
		st := stat(t, filepath.Join(tree, name))
		if st.Uid != 1000 || st.Gid != 1001 {
			t.Errorf("%s: owner %d:%d, want 1000:1001", name, st.Uid, st.Gid)
		}
	}
}

func stat(t *testing.T, p string) *syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return &st
}

func TestImportReuse(t *testing.T) {
	tarball := writeTemp(t, tarBytes(t, "zstd", sample()...))
	storeDir := filepath.Join(t.TempDir(), "store")
	first, err := newStore(t, storeDir, Options{}).Import(context.Background(), tarball)
	if err != nil {
		t.Fatal(err)
	}
	before := stat(t, first.Path)

	// A new Store, as after a restart; the canceled context proves nothing is unpacked.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	again, err := newStore(t, storeDir, Options{}).Import(ctx, tarball)
	if err != nil {
		t.Fatal(err)
	}
	if again != first {
		t.Errorf("second Import = %+v, want %+v", again, first)
	}
	if after := stat(t, again.Path); after.Ino != before.Ino || after.Ctim != before.Ctim {
		t.Errorf("tree was replaced: inode %d -> %d", before.Ino, after.Ino)
	}
}

func TestImportConcurrent(t *testing.T) {
	tarball := writeTemp(t, tarBytes(t, "zstd", sample()...))
	storeDir := filepath.Join(t.TempDir(), "store")
	s := newStore(t, storeDir, Options{})
	const n = 8
	imgs := make([]Image, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { imgs[i], errs[i] = s.Import(context.Background(), tarball) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || imgs[i] != imgs[0] {
			t.Errorf("Import %d = %+v, %v; want %+v", i, imgs[i], errs[i], imgs[0])
		}
	}
	ents, _ := os.ReadDir(storeDir)
	if len(ents) != 1 {
		t.Errorf("store holds %d entries, want 1 (no temp dirs left)", len(ents))
	}
	checkTree(t, imgs[0].Path)
}

func TestImportCanceled(t *testing.T) {
	storeDir := filepath.Join(t.TempDir(), "store")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := newStore(t, storeDir, Options{}).Import(ctx, writeTemp(t, tarBytes(t, "", sample()...)))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Import: got %v, want context.Canceled", err)
	}
	assertClean(t, storeDir)
}

func TestRemove(t *testing.T) {
	storeDir := filepath.Join(t.TempDir(), "store")
	s := newStore(t, storeDir, Options{})
	img, err := s.Import(context.Background(), writeTemp(t, tarBytes(t, "", sample()...)))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(img.Digest); err != nil {
		t.Fatal(err)
	}
	assertClean(t, storeDir)
	tests := []struct {
		name string
		err  error
	}{
		{"get removed", func() error { _, err := s.Get(img.Digest); return err }()},
		{"remove again", s.Remove(img.Digest)},
		{"remove bad digest", s.Remove("sha256:../../etc")},
		{"get bad digest", func() error { _, err := s.Get("../" + img.Digest[7:]); return err }()},
		{"get uppercase", func() error { _, err := s.Get("SHA256:" + img.Digest[7:]); return err }()},
	}
	for _, tt := range tests {
		if !errors.Is(tt.err, ErrNotFound) {
			t.Errorf("%s: got %v, want ErrNotFound", tt.name, tt.err)
		}
	}
	if list, err := s.List(); err != nil || len(list) != 0 {
		t.Errorf("List = %v, %v; want empty", list, err)
	}
}

func TestSweep(t *testing.T) {
	storeDir := filepath.Join(t.TempDir(), "store")
	s := newStore(t, storeDir, Options{})
	img, err := s.Import(context.Background(), writeTemp(t, tarBytes(t, "", sample()...)))
	if err != nil {
		t.Fatal(err)
	}
	leftovers := []string{".tmp-abc-123/rootfs/usr/bin", ".tmp-def-rm-456"}
	for _, p := range leftovers {
		if err := os.MkdirAll(filepath.Join(storeDir, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Sweep(); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(storeDir)
	if len(ents) != 1 || ents[0].Name() != img.Digest[7:] {
		t.Errorf("after Sweep: %v, want only %s", ents, img.Digest[7:])
	}
	if _, err := s.Get(img.Digest); err != nil {
		t.Errorf("Get after Sweep: %v", err)
	}
}

// TestImportRealRootfs imports the Debian rootfs built by scripts/mkrootfs.sh.
func TestImportRealRootfs(t *testing.T) {
	tarball := os.Getenv("SANDBOXD_ROOTFS")
	if tarball == "" {
		tarball = "../build/rootfs.tar.zst"
	}
	if _, err := os.Stat(tarball); err != nil {
		t.Skipf("no rootfs tarball (set SANDBOXD_ROOTFS or run scripts/mkrootfs.sh): %v", err)
	}
	if testing.Short() {
		t.Skip("-short")
	}
	s := newStore(t, filepath.Join(t.TempDir(), "store"), Options{})
	start := time.Now()
	img, err := s.Import(context.Background(), tarball)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("imported %s (%d MiB unpacked) in %v", img.Digest, img.Size>>20, time.Since(start).Round(time.Millisecond))
	if _, err := os.Lstat(filepath.Join(img.Path, "usr/bin/python3")); err != nil {
		t.Error(err)
	}
	if fi, err := os.Lstat(filepath.Join(img.Path, "tmp")); err != nil || !fi.IsDir() {
		t.Errorf("tmp: %v, %v", fi, err)
	}
}
