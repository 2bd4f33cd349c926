// Package rootfs is the content-addressed store of job root filesystems: tarballs are
// unpacked once, named by the sha256 of the file, and reused across restarts.
//
// Layout under the store's directory:
//
//	<hex>/rootfs      the unpacked tree (Image.Path)
//	<hex>/image.json  digest, size, creation time
//	.tmp-<hex>-*      an import or removal in progress, or left by a crash (see Sweep)
//
// <hex> appears only by an atomic rename of a complete temp dir, so if it exists it is whole.
package rootfs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

const (
	treeDir   = "rootfs"
	metaFile  = "image.json"
	tmpPrefix = ".tmp-"
)

// Options bounds what an import may unpack; a zero field takes its default.
type Options struct {
	MaxTotalBytes int64 // sum of regular file sizes; default 8 GiB
	MaxEntries    int   // tar entries; default 1M
	MaxFileBytes  int64 // one regular file; default 4 GiB
}

// Image is one unpacked root filesystem.
type Image struct {
	Digest  string    `json:"digest"` // "sha256:<hex>" of the tarball file
	Path    string    `json:"-"`      // the tree; a host path, kept out of JSON
	Size    int64     `json:"size"`   // bytes of regular files
	Created time.Time `json:"created"`
}

// Store holds images under one directory.
type Store struct {
	dir   string
	opts  Options
	chown bool // keep the archive's owners; only root can
	// Sweep takes mu exclusively; Import and Remove hold it shared while they own a temp
	// dir, so Sweep never deletes one in use.
	mu sync.RWMutex
}

// NewStore opens the store at dir, creating it with mode 0711: jobs' user namespaces
// map root to an unprivileged host uid, which must be able to reach (not list) a tree.
func NewStore(dir string, opts Options) (*Store, error) {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, fmt.Errorf("rootfs store: %w", err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, fmt.Errorf("rootfs store: %w", err)
	}
	if opts.MaxTotalBytes <= 0 {
		opts.MaxTotalBytes = 8 << 30
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 1 << 20
	}
	if opts.MaxFileBytes <= 0 {
		opts.MaxFileBytes = 4 << 30
	}
	return &Store{dir: dir, opts: opts, chown: os.Geteuid() == 0}, nil
}

// Import unpacks a tar, tar.gz or tar.zst file into the store, or returns the image
// already there for the same file contents. Concurrent imports of one file are safe.
func (s *Store) Import(ctx context.Context, tarball string) (Image, error) {
	f, err := os.Open(tarball)
	if err != nil {
		return Image{}, fmt.Errorf("import: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return Image{}, fmt.Errorf("import %s: %w", tarball, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if img, err := s.get(sum); !errors.Is(err, ErrNotFound) {
		return img, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return Image{}, fmt.Errorf("import %s: %w", tarball, err)
	}

	s.mu.RLock()
	defer s.mu.RUnlock()
	tmp, err := os.MkdirTemp(s.dir, tmpPrefix+sum+"-")
	if err == nil {
		err = os.Chmod(tmp, 0o711) // see NewStore
	}
	if err != nil {
		return Image{}, fmt.Errorf("import %s: %w", tarball, err)
	}
	defer func() {
		if tmp != "" {
			os.RemoveAll(tmp)
		}
	}()
	// Hash again while unpacking: the tree must match its name even if the file changed.
	h.Reset()
	src := io.TeeReader(f, h)
	size, err := unpack(ctx, src, filepath.Join(tmp, treeDir), s.opts, s.chown)
	if err != nil {
		return Image{}, fmt.Errorf("import %s: %w", tarball, err)
	}
	if _, err := io.Copy(io.Discard, src); err != nil {
		return Image{}, fmt.Errorf("import %s: %w", tarball, err)
	}
	if hex.EncodeToString(h.Sum(nil)) != sum {
		return Image{}, fmt.Errorf("import %s: file changed while importing", tarball)
	}
	img := Image{Digest: "sha256:" + sum, Size: size, Created: time.Now().UTC()}
	meta, err := json.Marshal(img)
	if err != nil {
		return Image{}, err
	}
	if err := os.WriteFile(filepath.Join(tmp, metaFile), meta, 0o644); err != nil {
		return Image{}, fmt.Errorf("import %s: %w", tarball, err)
	}
	// One syncfs rather than an fsync per file, so that the rename never publishes a tree
	// whose data a power loss could still take away.
	if err := syncfs(tmp); err != nil {
		return Image{}, fmt.Errorf("import %s: %w", tarball, err)
	}
	final := filepath.Join(s.dir, sum)
	if err := os.Rename(tmp, final); err != nil {
		if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) {
			return s.get(sum) // a concurrent Import of the same file won the race
		}
		return Image{}, fmt.Errorf("import %s: %w", tarball, err)
	}
	tmp = ""
	img.Path = filepath.Join(final, treeDir)
	return img, nil
}

// List returns the images in the store, ordered by digest.
func (s *Store) List() ([]Image, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	var imgs []Image
	for _, e := range ents {
		if !validHex(e.Name()) {
			continue
		}
		img, err := s.get(e.Name())
		if errors.Is(err, ErrNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		imgs = append(imgs, img)
	}
	return imgs, nil
}

// Get returns the image with the given "sha256:<hex>" digest, or ErrNotFound.
func (s *Store) Get(digest string) (Image, error) {
	sum, err := parseDigest(digest)
	if err != nil {
		return Image{}, err
	}
	return s.get(sum)
}

// Remove deletes an image. The caller makes sure no job uses it.
func (s *Store) Remove(digest string) error {
	sum, err := parseDigest(digest)
	if err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	tmp, err := os.MkdirTemp(s.dir, tmpPrefix+sum+"-rm-")
	if err != nil {
		return fmt.Errorf("remove %s: %w", digest, err)
	}
	// Renaming first makes removal atomic: a crash half-way leaves a temp dir for Sweep,
	// never a partial tree that Import would take for complete. unix.Rename, as os.Rename
	// refuses to replace the (empty) temp dir.
	if err := unix.Rename(filepath.Join(s.dir, sum), tmp); err != nil {
		os.Remove(tmp)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", digest, ErrNotFound)
		}
		return fmt.Errorf("remove %s: %w", digest, err)
	}
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("remove %s: %w", digest, err)
	}
	return nil
}

// Sweep deletes the temp dirs of imports and removals that a crash interrupted. It waits
// for this Store's own imports and removals in flight.
func (s *Store) Sweep() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	var errs []error
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			if err := os.RemoveAll(filepath.Join(s.dir, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (s *Store) get(sum string) (Image, error) {
	dir := filepath.Join(s.dir, sum)
	b, err := os.ReadFile(filepath.Join(dir, metaFile))
	if errors.Is(err, fs.ErrNotExist) {
		return Image{}, fmt.Errorf("%w: sha256:%s", ErrNotFound, sum)
	}
	if err != nil {
		return Image{}, fmt.Errorf("image sha256:%s: %w", sum, err)
	}
	var img Image
	if err := json.Unmarshal(b, &img); err != nil {
		return Image{}, fmt.Errorf("image sha256:%s: %w", sum, err)
	}
	img.Path = filepath.Join(dir, treeDir)
	return img, nil
}

// parseDigest returns the hex of a "sha256:<hex>" digest; anything else names no image.
func parseDigest(digest string) (string, error) {
	sum, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || !validHex(sum) {
		return "", fmt.Errorf("%w: invalid digest %q", ErrNotFound, digest)
	}
	return sum, nil
}

func validHex(s string) bool {
	if len(s) != sha256.Size*2 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func syncfs(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return nil
}
