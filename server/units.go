package server

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/docker/go-units"
)

// The wire formats of limits. Each parser takes the raw JSON value, so a request may say
// 512, "512MB" or "0.5" as users of Docker, the seeds and Judge0 are used to; each error
// names the field. A limit that is present must be above zero: the engine reads a zero
// limit as "the default", so a 0 let through here would be silently changed, which the
// README promises never happens. Omitting a limit is how a client asks for the default.

// errZero is the message for a limit of 0 or less.
const errZero = "must be greater than 0 (omit it for the default)"

// parseBytes accepts a JSON number of bytes or a string with a binary unit as Docker's
// --memory does ("512MB", "512m", "1GB", "1g" are MiB and GiB; "1048576" is bytes).
func parseBytes(field string, raw json.RawMessage) (int64, error) {
	if n, ok, err := number(field, raw); ok || err != nil {
		if err != nil {
			return 0, err
		}
		if n <= 0 {
			return 0, fieldError(field, errZero)
		}
		if n != math.Trunc(n) || n > math.MaxInt64/2 {
			return 0, fieldError(field, "must be a whole number of bytes or a size such as \"512MB\"")
		}
		return int64(n), nil
	}
	s, err := str(field, raw)
	if err != nil {
		return 0, err
	}
	v, err := units.RAMInBytes(strings.TrimSpace(s))
	if err != nil {
		return 0, fieldError(field, fmt.Sprintf("cannot parse size %q (use e.g. \"512MB\", \"1GB\" or a number of bytes)", s))
	}
	if v <= 0 {
		return 0, fieldError(field, errZero)
	}
	return v, nil
}

// parseCPUs accepts a number of cores, fractional allowed: 0.5, "2".
func parseCPUs(field string, raw json.RawMessage) (float64, error) {
	if n, ok, err := number(field, raw); ok || err != nil {
		return n, positive(field, n, err)
	}
	s, err := str(field, raw)
	if err != nil {
		return 0, err
	}
	n, perr := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if perr != nil || math.IsNaN(n) || math.IsInf(n, 0) {
		return 0, fieldError(field, fmt.Sprintf("cannot parse CPUs %q (use e.g. 0.5 or \"2\")", s))
	}
	return n, positive(field, n, nil)
}

// parseCount accepts a whole number above zero: 64, "64".
func parseCount(field string, raw json.RawMessage) (int64, error) {
	n, err := parseWhole(field, raw)
	if err == nil && n == 0 {
		err = fieldError(field, errZero)
	}
	return n, err
}

// parseWhole accepts a whole number, zero included: a GPU count or index.
func parseWhole(field string, raw json.RawMessage) (int64, error) {
	n, ok, err := number(field, raw)
	if !ok && err == nil {
		var s string
		if s, err = str(field, raw); err == nil {
			n, err = strconv.ParseFloat(strings.TrimSpace(s), 64)
			if err != nil {
				err = fieldError(field, fmt.Sprintf("cannot parse %q as a whole number", s))
			}
		}
	}
	if err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, fieldError(field, "must not be negative")
	}
	if n != math.Trunc(n) || n > math.MaxInt32 {
		return 0, fieldError(field, "must be a whole number")
	}
	return int64(n), nil
}

// parseSeconds accepts a number of seconds above zero (fractional allowed) or a Go
// duration: 10, 2.5, "10", "1500ms", "2m".
func parseSeconds(field string, raw json.RawMessage) (time.Duration, error) {
	d, err := parseWait(field, raw)
	if err == nil && d <= 0 {
		err = fieldError(field, errZero)
	}
	return d, err
}

// parseWait is parseSeconds with zero allowed: gpu_wait 0 is "do not wait", its default.
func parseWait(field string, raw json.RawMessage) (time.Duration, error) {
	n, ok, err := number(field, raw)
	if !ok && err == nil {
		var s string
		if s, err = str(field, raw); err == nil {
			s = strings.TrimSpace(s)
			if d, derr := time.ParseDuration(s); derr == nil {
				return d, nonNegative(field, d.Seconds(), nil)
			}
			if n, err = strconv.ParseFloat(s, 64); err != nil {
				err = fieldError(field, fmt.Sprintf("cannot parse duration %q (use seconds, e.g. 10, or \"1500ms\")", s))
			}
		}
	}
	if err != nil {
		return 0, err
	}
	if err := nonNegative(field, n, nil); err != nil {
		return 0, err
	}
	if n > 1e6 {
		return 0, fieldError(field, "is far too long")
	}
	return time.Duration(n * float64(time.Second)), nil
}

func nonNegative(field string, n float64, err error) error {
	if err != nil {
		return err
	}
	if n < 0 || math.IsNaN(n) || math.IsInf(n, 0) {
		return fieldError(field, "must not be negative")
	}
	return nil
}

func positive(field string, n float64, err error) error {
	if err := nonNegative(field, n, err); err != nil {
		return err
	}
	if n == 0 {
		return fieldError(field, errZero)
	}
	return nil
}

// number decodes raw as a JSON number; ok is false when raw is not a number at all.
func number(field string, raw json.RawMessage) (float64, bool, error) {
	t := strings.TrimSpace(string(raw))
	if t == "" || (t[0] != '-' && (t[0] < '0' || t[0] > '9')) {
		return 0, false, nil
	}
	n, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsInf(n, 0) {
		return 0, true, fieldError(field, "is not a valid number")
	}
	return n, true, nil
}

func str(field string, raw json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fieldError(field, "must be a number or a string, not "+rawKind(raw))
	}
	return s, nil
}

// rawKind names the kind of a JSON value for an error message.
func rawKind(raw json.RawMessage) string {
	switch t := strings.TrimSpace(string(raw)); {
	case t == "true" || t == "false":
		return "a boolean"
	case strings.HasPrefix(t, "{"):
		return "an object"
	case strings.HasPrefix(t, "["):
		return "an array"
	}
	return "that value"
}
