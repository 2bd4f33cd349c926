// Package runtimes holds the runtime definitions sandboxd ships, one TOML file each
// (embedded in the binary), and loads them, with an admin's additions and overrides
// from a config directory, into the engine's sandbox.Runtime. Adding a language is
// adding a file here (and, if needed, packages to an image in images/).
package runtimes

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/docker/go-units"

	"github.com/sandboxd/sandboxd/sandbox"
)

//go:embed *.toml
var shipped embed.FS

// definition is one runtime's TOML file.
type definition struct {
	Name          string   `toml:"name"`
	Version       string   `toml:"version"`
	Aliases       []string `toml:"aliases"`
	Image         string   `toml:"image"`
	Main          string   `toml:"main"`
	Compile       []string `toml:"compile"`
	Run           []string `toml:"run"`
	Env           []string `toml:"env"`
	EnvAllow      []string `toml:"env_allow"`
	Bootstrap     string   `toml:"bootstrap"`
	Limits        limitSet `toml:"limits"`
	MaxLimits     limitSet `toml:"max_limits"`
	CompileLimits limitSet `toml:"compile_limits"`
}

// limitSet is a runtime's limits, named and written as in a request's "limits".
type limitSet struct {
	CPUs      float64  `toml:"cpus"`
	CPUTime   duration `toml:"cpu_time"`
	Memory    size     `toml:"memory"`
	Storage   size     `toml:"storage"`
	Pids      int64    `toml:"pids"`
	Timeout   duration `toml:"timeout"`
	OpenFiles int64    `toml:"open_files"`
	FileSize  size     `toml:"file_size"`
	Stack     size     `toml:"stack"`
}

func (l limitSet) limits() sandbox.Limits {
	return sandbox.Limits{CPUs: l.CPUs, CPUTime: time.Duration(l.CPUTime), Memory: int64(l.Memory), Storage: int64(l.Storage),
		Pids: l.Pids, Timeout: time.Duration(l.Timeout), OpenFiles: l.OpenFiles, FileSize: int64(l.FileSize), Stack: int64(l.Stack)}
}

// size is "512MB" (binary units, as everywhere in sandboxd) or a number of bytes.
type size int64

func (s *size) UnmarshalText(b []byte) error {
	v, err := units.RAMInBytes(string(b))
	*s = size(v)
	return err
}

// duration is "10s" or a number of seconds.
type duration time.Duration

func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = duration(v)
	return err
}

func (d *duration) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		return d.UnmarshalText([]byte(v))
	case int64:
		*d = duration(time.Duration(v) * time.Second)
	case float64:
		*d = duration(v * float64(time.Second))
	default:
		return fmt.Errorf("a duration must be a string or a number of seconds, not %T", v)
	}
	return nil
}

func (s *size) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		return s.UnmarshalText([]byte(v))
	case int64:
		*s = size(v)
	default:
		return fmt.Errorf("a size must be a string or a number of bytes, not %T", v)
	}
	return nil
}

// Shipped returns the runtimes this build ships.
func Shipped() ([]sandbox.Runtime, error) { return Load("") }

// Load returns the shipped runtimes with those of dir (every *.toml in it) added; a
// file in dir defining a shipped runtime's name replaces it. dir "" or a missing dir
// adds nothing.
func Load(dir string) ([]sandbox.Runtime, error) {
	byName := map[string]sandbox.Runtime{}
	if err := loadFS(shipped, ".", byName); err != nil {
		return nil, fmt.Errorf("shipped runtimes: %w", err)
	}
	if dir != "" {
		if _, err := os.Stat(dir); err == nil {
			if err := loadFS(os.DirFS(dir), ".", byName); err != nil {
				return nil, fmt.Errorf("runtimes in %s: %w", dir, err)
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	out := make([]sandbox.Runtime, 0, len(byName))
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		out = append(out, byName[name])
	}
	return out, nil
}

func loadFS(fsys fs.FS, dir string, into map[string]sandbox.Runtime) error {
	names, err := fs.Glob(fsys, filepath.Join(dir, "*.toml"))
	if err != nil {
		return err
	}
	for _, n := range names {
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return err
		}
		rt, err := Parse(b)
		if err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
		into[rt.Name] = rt
	}
	return nil
}

// Parse reads one runtime definition; unknown keys are an error.
func Parse(b []byte) (sandbox.Runtime, error) {
	var d definition
	md, err := toml.Decode(string(b), &d)
	if err != nil {
		return sandbox.Runtime{}, err
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return sandbox.Runtime{}, fmt.Errorf("unknown keys: %s", strings.Join(keys, ", "))
	}
	if d.Name == "" || d.Version == "" || d.Image == "" {
		return sandbox.Runtime{}, errors.New("name, version and image are required")
	}
	return sandbox.Runtime{
		Name: d.Name, Version: d.Version, Aliases: d.Aliases, Image: d.Image, Main: d.Main,
		Compile: d.Compile, Run: d.Run, Env: d.Env, EnvAllow: d.EnvAllow, Bootstrap: d.Bootstrap,
		Limits: d.Limits.limits(), MaxLimits: d.MaxLimits.limits(), CompileLimits: d.CompileLimits.limits(),
	}, nil
}
