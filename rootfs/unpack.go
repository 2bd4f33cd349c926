package rootfs

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

var (
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
	gzipMagic = []byte{0x1f, 0x8b}
)

// maxZstdWindow bounds the decoder's memory against a hostile frame header; zstd -19 uses
// 8 MiB and --long=27 128 MiB (the library default would allow 512 MiB).
const maxZstdWindow = 128 << 20

// mountpoints must exist in every tree: the job's root is read-only and the runtime mounts
// tmpfs, proc, sysfs and /dev on them.
var mountpoints = []string{"work", "tmp", "proc", "dev", "sys", "usr/local/nvidia"}

// unpacker extracts one tar stream below root and never follows a symlink while doing so:
// every path is walked a component at a time with O_NOFOLLOW, so an entry that goes
// through a symlink (in-tree or not) fails with ErrUnsafeEntry. os.Root and
// filepath-securejoin's pathrs-lite confine lookups to the root but still follow in-root
// symlinks; refusing them outright is stricter and simpler to reason about. Symlinks
// themselves may point anywhere: they are only resolved later, inside the container.
type unpacker struct {
	root    int // O_DIRECTORY fd of the tree
	opts    Options
	chown   bool
	entries int
	size    int64 // regular file bytes so far
	dirs    []dirMeta
	buf     []byte
}

// dirMeta is applied after all entries: a directory's mtime changes as children are
// added, and a read-only mode would stop an unprivileged extraction half-way.
type dirMeta struct {
	name     string
	mode     uint32
	uid, gid int
	modTime  time.Time
}

// unpack extracts the tar stream r (plain, gzip or zstd) into the new directory target
// and returns the total size of its regular files.
func unpack(ctx context.Context, r io.Reader, target string, opts Options, chown bool) (int64, error) {
	tr, closeFn, err := decompress(bufio.NewReader(r))
	if err != nil {
		return 0, err
	}
	defer closeFn()
	if err := os.Mkdir(target, 0o700); err != nil {
		return 0, err
	}
	root, err := unix.Open(target, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", target, err)
	}
	defer unix.Close(root)
	// The root's metadata unless the archive has a "./" entry.
	u := &unpacker{root: root, opts: opts, chown: chown, buf: make([]byte, 128<<10),
		dirs: []dirMeta{{name: ".", mode: 0o755, modTime: time.Now()}}}
	for {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("%w: %w", ErrBadFormat, err)
		}
		if err := u.entry(hdr, tr); err != nil {
			return 0, fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	}
	if u.entries == 0 {
		return 0, fmt.Errorf("%w: empty archive", ErrBadFormat)
	}
	for _, m := range mountpoints {
		fd, err := u.openDir(m, true)
		if err != nil {
			return 0, fmt.Errorf("mountpoint /%s: %w", m, err)
		}
		unix.Close(fd)
	}
	return u.size, u.finishDirs()
}

// decompress picks the decoder by magic bytes; anything else is read as a plain tar.
func decompress(br *bufio.Reader) (*tar.Reader, func(), error) {
	magic, _ := br.Peek(len(zstdMagic))
	switch {
	case bytes.HasPrefix(magic, zstdMagic):
		dec, err := zstd.NewReader(br, zstd.WithDecoderMaxWindow(maxZstdWindow))
		if err != nil {
			return nil, nil, fmt.Errorf("%w: zstd: %w", ErrBadFormat, err)
		}
		return tar.NewReader(dec), dec.Close, nil
	case bytes.HasPrefix(magic, gzipMagic):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: gzip: %w", ErrBadFormat, err)
		}
		return tar.NewReader(zr), func() { zr.Close() }, nil
	}
	return tar.NewReader(br), func() {}, nil
}

// cleanName makes a tar path relative to the tree: a leading "/" is stripped, as GNU tar
// does, and a ".." that climbs above the root is refused.
func cleanName(name string) (string, error) {
	n := path.Clean(strings.TrimLeft(name, "/"))
	if n == ".." || strings.HasPrefix(n, "../") {
		return "", fmt.Errorf("%w: %q escapes the root", ErrUnsafeEntry, name)
	}
	return n, nil
}

func (u *unpacker) entry(hdr *tar.Header, r io.Reader) error {
	if u.entries++; u.entries > u.opts.MaxEntries {
		return fmt.Errorf("%w: more than %d entries", ErrTooLarge, u.opts.MaxEntries)
	}
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		return u.mkdir(name, hdr)
	case tar.TypeReg, tar.TypeSymlink, tar.TypeLink:
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo, tar.TypeXGlobalHeader:
		return nil // device nodes come from the runtime's config, never from an image
	default:
		return fmt.Errorf("%w: unsupported entry type %q", ErrBadFormat, hdr.Typeflag)
	}
	if name == "." {
		return fmt.Errorf("%w: non-directory entry for the root", ErrUnsafeEntry)
	}
	parent, err := u.openDir(path.Dir(name), true)
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	base := path.Base(name)
	// A later entry replaces an earlier one, as with tar(1); a directory is never replaced.
	if err := unix.Unlinkat(parent, base, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("replace: %w", err)
	}
	switch hdr.Typeflag {
	case tar.TypeReg:
		err = u.writeFile(parent, base, hdr, r)
	case tar.TypeSymlink:
		err = u.symlink(parent, base, hdr)
	case tar.TypeLink:
		return u.hardlink(parent, base, hdr)
	}
	if err != nil {
		return err
	}
	return setTimes(parent, base, hdr.ModTime)
}

func (u *unpacker) writeFile(parent int, base string, hdr *tar.Header, r io.Reader) error {
	if hdr.Size > u.opts.MaxFileBytes {
		return fmt.Errorf("%w: file of %d bytes, limit %d", ErrTooLarge, hdr.Size, u.opts.MaxFileBytes)
	}
	if u.size += hdr.Size; u.size > u.opts.MaxTotalBytes {
		return fmt.Errorf("%w: more than %d bytes in total", ErrTooLarge, u.opts.MaxTotalBytes)
	}
	fd, err := unix.Openat(parent, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	f := os.NewFile(uintptr(fd), base)
	defer f.Close()
	for {
		n, rerr := r.Read(u.buf)
		if _, err := f.Write(u.buf[:n]); err != nil {
			return err
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return fmt.Errorf("%w: %w", ErrBadFormat, rerr)
		}
	}
	if err := u.setOwnerMode(fd, hdr.Uid, hdr.Gid, uint32(hdr.Mode)); err != nil {
		return err
	}
	return f.Close()
}

func (u *unpacker) symlink(parent int, base string, hdr *tar.Header) error {
	if err := unix.Symlinkat(hdr.Linkname, parent, base); err != nil {
		return fmt.Errorf("symlink: %w", err)
	}
	if !u.chown {
		return nil
	}
	if err := unix.Fchownat(parent, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("lchown: %w", err)
	}
	return nil
}

// hardlink links to an entry already extracted in the tree; the target is looked up with
// the same no-symlink walk, so it can name nothing outside.
func (u *unpacker) hardlink(parent int, base string, hdr *tar.Header) error {
	target, err := cleanName(hdr.Linkname)
	if err != nil {
		return err
	}
	tparent, err := u.openDir(path.Dir(target), false)
	if err == nil {
		// flags 0: a symlink target is linked itself, never followed.
		err = unix.Linkat(tparent, path.Base(target), parent, base, 0)
		unix.Close(tparent)
	}
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("%w: hard link target %q is not in the tree", ErrUnsafeEntry, hdr.Linkname)
	}
	if err != nil {
		return fmt.Errorf("hard link to %q: %w", hdr.Linkname, err)
	}
	return nil
}

func (u *unpacker) mkdir(name string, hdr *tar.Header) error {
	if name != "." {
		parent, err := u.openDir(path.Dir(name), true)
		if err != nil {
			return err
		}
		err = unix.Mkdirat(parent, path.Base(name), 0o700)
		unix.Close(parent)
		if err != nil && !errors.Is(err, unix.EEXIST) { // an existing non-directory fails in finishDirs
			return fmt.Errorf("mkdir: %w", err)
		}
	}
	u.dirs = append(u.dirs, dirMeta{name: name, mode: uint32(hdr.Mode), uid: hdr.Uid, gid: hdr.Gid, modTime: hdr.ModTime})
	return nil
}

// finishDirs applies directory metadata, deepest (last seen) first; for a directory that
// appears more than once the last entry wins.
func (u *unpacker) finishDirs() error {
	done := make(map[string]bool, len(u.dirs))
	for i := len(u.dirs) - 1; i >= 0; i-- {
		d := u.dirs[i]
		if done[d.name] {
			continue
		}
		done[d.name] = true
		fd, err := u.openDir(d.name, false)
		if err != nil {
			return fmt.Errorf("directory %q: %w", d.name, err)
		}
		err = u.setOwnerMode(fd, d.uid, d.gid, d.mode)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("directory %q: %w", d.name, err)
		}
		parent, err := u.openDir(path.Dir(d.name), false)
		if err != nil {
			return err
		}
		err = setTimes(parent, path.Base(d.name), d.modTime)
		unix.Close(parent)
		if err != nil {
			return fmt.Errorf("directory %q: %w", d.name, err)
		}
	}
	return nil
}

// openDir opens dir (clean, relative to the root) without following symlinks, creating
// missing components with mode 0755 when create is set.
func (u *unpacker) openDir(dir string, create bool) (int, error) {
	fd, err := unix.Dup(u.root)
	if err != nil || dir == "." {
		return fd, err
	}
	for _, c := range strings.Split(dir, "/") {
		created := false
		if create {
			err := unix.Mkdirat(fd, c, 0o755)
			if err != nil && !errors.Is(err, unix.EEXIST) {
				unix.Close(fd)
				return -1, fmt.Errorf("mkdir %q: %w", dir, err)
			}
			created = err == nil
		}
		next, err := unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return -1, fmt.Errorf("%w: %q in %q is a symlink or not a directory", ErrUnsafeEntry, c, dir)
		}
		if err != nil {
			return -1, fmt.Errorf("open %q: %w", dir, err)
		}
		if created {
			if err := unix.Fchmod(next, 0o755); err != nil { // whatever the umask
				unix.Close(next)
				return -1, err
			}
		}
		fd = next
	}
	return fd, nil
}

// setOwnerMode keeps the archive's owners and modes, setuid and setgid included: jobs run
// with no_new_privs in a user namespace, so those bits grant nothing. Owners are only set
// when running as root; chown clears setuid, so the mode comes after it.
func (u *unpacker) setOwnerMode(fd, uid, gid int, mode uint32) error {
	if u.chown {
		if err := unix.Fchown(fd, uid, gid); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	if err := unix.Fchmod(fd, mode&0o7777); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	return nil
}

func setTimes(parent int, base string, t time.Time) error {
	ts := unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
	if err := unix.UtimesNanoAt(parent, base, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}
