package daemon

import (
	"fmt"
	"io"
	"log/slog"
)

// NewLogger builds the daemon's one logger. level is kept so SIGHUP can change it.
func NewLogger(w io.Writer, format string, level *slog.LevelVar) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	switch s {
	case "debug", "info", "warn", "error":
		return l, l.UnmarshalText([]byte(s))
	}
	return l, fmt.Errorf("%q: want debug, info, warn or error", s)
}

// SetLevel applies the config's log level to level (validated already).
func (c *Config) SetLevel(level *slog.LevelVar) {
	if l, err := parseLevel(c.LogLevel); err == nil {
		level.Set(l)
	}
}
