package daemon

import (
	"context"
	"log/slog"
	"net"
	"sort"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	sd "github.com/coreos/go-systemd/v22/daemon"
)

// What sandboxd tells systemd (Type=notify). Outside systemd, NOTIFY_SOCKET is unset and
// these do nothing.
func notify(log *slog.Logger, state string) {
	if _, err := sd.SdNotify(false, state); err != nil {
		log.Warn("notify systemd", "state", state, "err", err)
	}
}

// NotifyReloading is sent before a reload; READY=1 follows it. MONOTONIC_USEC lets
// Type=notify-reload units use it too.
func notifyReloading(log *slog.Logger) {
	notify(log, sd.SdNotifyReloading+"\n"+sd.SdNotifyMonotonicUsec())
}

// Watchdog pings systemd at half the WatchdogSec interval it asks for until ctx ends,
// each time after healthy returns: a daemon stuck in it stops pinging and systemd
// restarts it. Without WatchdogSec it returns at once.
func Watchdog(ctx context.Context, log *slog.Logger, healthy func()) {
	interval, err := sd.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("systemd watchdog", "err", err)
	}
	if interval <= 0 {
		return
	}
	log.Debug("systemd watchdog on", "interval", interval)
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		healthy()
		notify(log, sd.SdNotifyWatchdog)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// namedListener is a socket to serve and where it came from.
type namedListener struct {
	net.Listener
	name string // systemd's FileDescriptorName, or the configured address
}

// systemdListeners returns the sockets systemd passed (LISTEN_FDS, sandboxd.socket), in
// name order, and unsets the variables so no child inherits them. None is not an error.
func systemdListeners() []namedListener {
	byName, _ := activation.ListenersWithNames() // never fails; non-sockets are skipped
	var out []namedListener
	for name, lns := range byName {
		for _, ln := range lns {
			out = append(out, namedListener{Listener: ln, name: name})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}
