package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"

	"golang.org/x/sys/unix"
)

// A session's files live in its storage (/work), which its code changes at will: every
// access goes through os.Root (no path leaves the storage, whatever links it holds), a
// download never follows a final symlink nor reads anything but a regular file, and the
// caps are the job files' (RequestCaps).

// maxListed bounds a listing of a session's files.
const maxListed = 10000

// SessionFile is one entry of a session's /work.
type SessionFile struct {
	Name string // relative to /work
	Size int64
	Type string // "file", "dir", "symlink", "other"
}

// PutFile writes a file into the session's /work, owned by the session's user.
func (s *Session) PutFile(name string, content []byte) error {
	if err := checkFileName(name); err != nil {
		return fieldErr("path", "%v", err)
	}
	if int64(len(content)) > s.e.opts.Caps.MaxFilesBytes {
		return fieldErr("body", "%d bytes is over the cap of %d", len(content), s.e.opts.Caps.MaxFilesBytes)
	}
	if err := s.alive(); err != nil {
		return err
	}
	root, err := os.OpenRoot(s.storage)
	if err != nil {
		return err
	}
	defer root.Close()
	if d := path.Dir(name); d != "." {
		if err := mkdirOwned(root, d, s.e.jobUID()); err != nil {
			return fieldErr("path", "cannot make its directory: %v", pathErr(err))
		}
	}
	// Never through a link the session left at that name: replace it.
	if fi, err := root.Lstat(name); err == nil && !fi.Mode().IsRegular() {
		if fi.IsDir() {
			return fieldErr("path", "is a directory")
		}
		if err := root.Remove(name); err != nil {
			return err
		}
	}
	// O_NONBLOCK: a FIFO the session puts there meanwhile fails the open (ENXIO)
	// instead of blocking it; a regular file ignores the flag.
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0o644)
	if err != nil {
		return fieldErr("path", "cannot be written: %v", pathErr(err))
	}
	_, werr := f.Write(content)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		if errors.Is(err, unix.ENOSPC) {
			return fmt.Errorf("%w", errStorageFull)
		}
		return err
	}
	return root.Lchown(name, s.e.jobUID(), s.e.jobUID())
}

// pathErr is an *fs.PathError's cause alone: its path is the host's.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// GetFile reads a regular file of the session's /work, up to the download cap
// (RequestCaps.CollectTotal).
func (s *Session) GetFile(name string) ([]byte, error) {
	if err := checkFileName(name); err != nil {
		return nil, fieldErr("path", "%v", err)
	}
	if err := s.alive(); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(s.storage)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	fi, err := root.Lstat(name)
	if err != nil {
		return nil, fs.ErrNotExist
	}
	if !fi.Mode().IsRegular() {
		return nil, ErrNotRegularFile
	}
	limit := s.e.opts.Caps.CollectTotal
	b, err := readPrefix(root, name, limit+1)
	if err != nil {
		return nil, ErrNotRegularFile
	}
	if int64(len(b)) > limit {
		return nil, ErrFileTooLarge
	}
	return b, nil
}

// ListFiles lists the session's /work, entering real directories only.
func (s *Session) ListFiles() ([]SessionFile, bool, error) {
	if err := s.alive(); err != nil {
		return nil, false, err
	}
	root, err := os.OpenRoot(s.storage)
	if err != nil {
		return nil, false, err
	}
	defer root.Close()
	var out []SessionFile
	truncated := false
	var walk func(dir string)
	walk = func(dir string) {
		d, err := root.Open(dir)
		if err != nil {
			return
		}
		ents, err := d.ReadDir(-1)
		d.Close()
		if err != nil {
			return
		}
		slices.SortFunc(ents, func(a, b fs.DirEntry) int {
			switch {
			case a.Name() < b.Name():
				return -1
			case a.Name() > b.Name():
				return 1
			}
			return 0
		})
		for _, ent := range ents {
			if len(out) >= maxListed {
				truncated = true
				return
			}
			p := path.Join(dir, ent.Name())
			f := SessionFile{Name: p, Type: "other"}
			switch t := ent.Type(); {
			case t&fs.ModeSymlink != 0:
				f.Type = "symlink"
			case t.IsDir():
				f.Type = "dir"
			case t.IsRegular():
				f.Type = "file"
				if fi, err := ent.Info(); err == nil {
					f.Size = fi.Size()
				}
			}
			out = append(out, f)
			if f.Type == "dir" {
				walk(p)
			}
		}
	}
	walk(".")
	return out, truncated, nil
}

func (s *Session) alive() error {
	select {
	case <-s.ended:
		return ErrSessionEnded
	default:
		return nil
	}
}
