package rootfs

import "errors"

var (
	// ErrNotFound: no image with that digest is in the store.
	ErrNotFound = errors.New("rootfs: image not found")
	// ErrUnsafeEntry: a tar entry would land outside the tree or pass through a symlink.
	ErrUnsafeEntry = errors.New("rootfs: unsafe tar entry")
	// ErrTooLarge: the archive exceeds Options' size or entry limits.
	ErrTooLarge = errors.New("rootfs: archive too large")
	// ErrBadFormat: the file is not a readable (optionally zstd or gzip compressed) tar.
	ErrBadFormat = errors.New("rootfs: bad archive format")
)
