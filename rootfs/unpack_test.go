package rootfs

import (
	"archive/tar"
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestHostileArchives imports archives that try to write outside the tree. The tree is
// unpacked at <base>/store/.tmp-*/rootfs, so "../../../sentinel" names <base>/sentinel.
func TestHostileArchives(t *testing.T) {
	tests := []struct {
		name    string
		ents    func(sentinel string) []ent
		wantErr error
		check   func(t *testing.T, tree, sentinel string) // on success
	}{
		{"dotdot", func(string) []ent { return []ent{file("../../../sentinel/pwned", "x")} }, ErrUnsafeEntry, nil},
		{"dotdot inside path", func(string) []ent { return []ent{file("a/../../../../sentinel/pwned", "x")} }, ErrUnsafeEntry, nil},
		{"dotdot dir", func(string) []ent { return []ent{dir("../../../sentinel/d")} }, ErrUnsafeEntry, nil},
		{"dotdot symlink name", func(string) []ent { return []ent{symlink("../../../sentinel/s", "/")} }, ErrUnsafeEntry, nil},
		{"absolute name is relative to the root", func(string) []ent { return []ent{file("/abs/path", "x")} }, nil,
			func(t *testing.T, tree, _ string) { mustRead(t, filepath.Join(tree, "abs/path"), "x") }},
		{"file through symlink to /", func(s string) []ent {
			return []ent{symlink("evil", "/"), file("evil"+s+"/pwned", "x")}
		}, ErrUnsafeEntry, nil},
		{"file through symlink to outside dir", func(s string) []ent {
			return []ent{symlink("evil", s), file("evil/pwned", "x")}
		}, ErrUnsafeEntry, nil},
		{"dir through symlink", func(s string) []ent {
			return []ent{symlink("evil", s), dir("evil/d")}
		}, ErrUnsafeEntry, nil},
		{"symlink through symlink", func(s string) []ent {
			return []ent{symlink("evil", s), symlink("evil/s", "/")}
		}, ErrUnsafeEntry, nil},
		{"dotdot symlink chain", func(string) []ent {
			return []ent{symlink("up", "../../.."), file("up/sentinel/pwned", "x")}
		}, ErrUnsafeEntry, nil},
		{"two-hop symlink chain", func(string) []ent {
			return []ent{dir("a"), symlink("a/b", "../c"), symlink("c", "../../../.."), file("a/b/sentinel/pwned", "x")}
		}, ErrUnsafeEntry, nil},
		{"in-tree symlink is not followed either", func(string) []ent {
			return []ent{dir("real"), symlink("link", "real"), file("link/f", "x")}
		}, ErrUnsafeEntry, nil},
		{"file replaces symlink instead of writing through it", func(s string) []ent {
			return []ent{symlink("f", s+"/keep"), file("f", "new")}
		}, nil, func(t *testing.T, tree, _ string) { mustRead(t, filepath.Join(tree, "f"), "new") }},
		{"hardlink to /etc/passwd", func(string) []ent { return []ent{hardlink("p", "/etc/passwd")} }, ErrUnsafeEntry, nil},
		{"hardlink to ../outside", func(string) []ent { return []ent{hardlink("p", "../outside")} }, ErrUnsafeEntry, nil},
		{"hardlink to sentinel", func(string) []ent { return []ent{hardlink("p", "../../../sentinel/keep")} }, ErrUnsafeEntry, nil},
		{"hardlink through symlink", func(s string) []ent {
			return []ent{symlink("evil", s), hardlink("p", "evil/keep")}
		}, ErrUnsafeEntry, nil},
		{"hardlink to symlink links the symlink", func(s string) []ent {
			return []ent{symlink("s", s+"/keep"), hardlink("h", "s")}
		}, nil, func(t *testing.T, tree, s string) {
			fi, err := os.Lstat(filepath.Join(tree, "h"))
			if err != nil || fi.Mode()&os.ModeSymlink == 0 {
				t.Errorf("h: want a symlink, got %v, %v", fi, err)
			}
		}},
		{"hardlink to in-tree file", func(string) []ent {
			return []ent{file("etc/passwd", "root"), hardlink("p", "/etc/passwd")}
		}, nil, func(t *testing.T, tree, _ string) { mustRead(t, filepath.Join(tree, "p"), "root") }},
		{"devices and fifos are skipped", func(string) []ent {
			return []ent{special("null", tar.TypeChar), special("sda", tar.TypeBlock), special("fifo", tar.TypeFifo), file("f", "x")}
		}, nil, func(t *testing.T, tree, _ string) {
			for _, n := range []string{"null", "sda", "fifo"} {
				if _, err := os.Lstat(filepath.Join(tree, n)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s: want skipped, got %v", n, err)
				}
			}
		}},
		{"mountpoint must be a directory", func(string) []ent { return []ent{symlink("tmp", "/")} }, ErrUnsafeEntry, nil},
		{"file entry for the root", func(string) []ent { return []ent{file(".", "x")} }, ErrUnsafeEntry, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			sentinel := filepath.Join(base, "sentinel")
			if err := os.Mkdir(sentinel, 0o755); err != nil {
				t.Fatal(err)
			}
			keep := filepath.Join(sentinel, "keep")
			if err := os.WriteFile(keep, []byte("keep"), 0o644); err != nil {
				t.Fatal(err)
			}
			storeDir := filepath.Join(base, "store")
			s := newStore(t, storeDir, Options{})
			img, err := s.Import(context.Background(), writeTemp(t, tarBytes(t, "", tt.ents(sentinel)...)))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Import: got %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				assertClean(t, storeDir)
			} else if tt.check != nil {
				tt.check(t, img.Path, sentinel)
			}
			ents, err := os.ReadDir(sentinel)
			if err != nil || len(ents) != 1 {
				t.Errorf("sentinel dir changed: %v %v", ents, err)
			}
			mustRead(t, keep, "keep")
			var st syscall.Stat_t
			if err := syscall.Stat(keep, &st); err != nil || st.Nlink != 1 {
				t.Errorf("sentinel file gained links: nlink %d, %v", st.Nlink, err)
			}
		})
	}
}

func TestLimits(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		ents []ent
	}{
		{"file", Options{MaxFileBytes: 10}, []ent{file("a", "01234567890")}},
		{"total", Options{MaxTotalBytes: 15}, []ent{file("a", "0123456789"), file("b", "0123456789")}},
		{"entries", Options{MaxEntries: 3}, []ent{dir("d"), file("d/a", ""), file("d/b", ""), file("d/c", "")}},
		{"skipped entries count", Options{MaxEntries: 2}, []ent{special("a", tar.TypeFifo), special("b", tar.TypeFifo), file("c", "")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			storeDir := filepath.Join(t.TempDir(), "store")
			s := newStore(t, storeDir, tt.opts)
			_, err := s.Import(context.Background(), writeTemp(t, tarBytes(t, "zstd", tt.ents...)))
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Import: got %v, want ErrTooLarge", err)
			}
			assertClean(t, storeDir)
		})
	}
}

func TestBadFormat(t *testing.T) {
	valid := []ent{dir("d"), file("d/a", string(make([]byte, 4096))), file("d/b", "b")}
	half := func(b []byte) []byte { return b[:len(b)/2] }
	garbage := make([]byte, 2048)
	for i := range garbage {
		garbage[i] = byte(i*7 + 3)
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"empty file", nil},
		{"short garbage", []byte("not a tarball")},
		{"garbage", garbage},
		{"truncated tar", half(tarBytes(t, "", valid...))},
		{"truncated gzip", half(tarBytes(t, "gzip", valid...))},
		{"truncated zstd", half(tarBytes(t, "zstd", valid...))},
		{"zstd magic then garbage", append([]byte{0x28, 0xb5, 0x2f, 0xfd}, garbage...)},
		{"gzip magic then garbage", append([]byte{0x1f, 0x8b}, garbage...)},
		{"zstd of garbage", zstdBytes(t, garbage)},
		{"unsupported entry type", tarBytes(t, "", ent{hdr: tar.Header{Typeflag: 'Z', Name: "z", ModTime: testTime}})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			storeDir := filepath.Join(t.TempDir(), "store")
			s := newStore(t, storeDir, Options{})
			_, err := s.Import(context.Background(), writeTemp(t, tt.data))
			if !errors.Is(err, ErrBadFormat) {
				t.Fatalf("Import: got %v, want ErrBadFormat", err)
			}
			assertClean(t, storeDir)
		})
	}
}

func TestCleanName(t *testing.T) {
	tests := []struct {
		in, want string
		unsafe   bool
	}{
		{"a/b", "a/b", false},
		{"./a/b/", "a/b", false},
		{"/etc/passwd", "etc/passwd", false},
		{"//x", "x", false},
		{"a/../b", "b", false},
		{"./", ".", false},
		{"..", "", true},
		{"../x", "", true},
		{"a/../../x", "", true},
		{"/../x", "", true},
	}
	for _, tt := range tests {
		got, err := cleanName(tt.in)
		if tt.unsafe != errors.Is(err, ErrUnsafeEntry) || got != tt.want {
			t.Errorf("cleanName(%q) = %q, %v; want %q, unsafe %v", tt.in, got, err, tt.want, tt.unsafe)
		}
	}
}

func mustRead(t *testing.T, p, want string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil || string(b) != want {
		t.Errorf("%s: got %q, %v; want %q", p, b, err, want)
	}
}
