package gpu

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// parseMigMinors reads /proc/driver/nvidia-caps/mig-minors: lines of
// "<capability> <minor>", e.g. "gpu0/gi1/ci0/access 14". The node of a
// capability is /dev/nvidia-caps/nvidia-cap<minor>.
func parseMigMinors(r io.Reader) (map[string]int, error) {
	minors := make(map[string]int)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return nil, fmt.Errorf("mig-minors: malformed line %q", sc.Text())
		}
		minor, err := strconv.Atoi(f[1])
		if err != nil || minor < 0 {
			return nil, fmt.Errorf("mig-minors: malformed minor in %q", sc.Text())
		}
		minors[f[0]] = minor
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("mig-minors: %w", err)
	}
	return minors, nil
}

// jobParams copies the host's /proc/driver/nvidia/params with
// ModifyDeviceFiles set to 0, so the driver libraries in the job do not try
// to create or chmod device nodes.
func jobParams(host io.Reader) ([]byte, error) {
	var out bytes.Buffer
	found := false
	sc := bufio.NewScanner(host)
	for sc.Scan() {
		line := sc.Text()
		if key, _, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(key) == "ModifyDeviceFiles" {
			line, found = "ModifyDeviceFiles: 0", true
		}
		out.WriteString(line + "\n")
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("driver params: %w", err)
	}
	if !found {
		out.WriteString("ModifyDeviceFiles: 0\n")
	}
	return out.Bytes(), nil
}
