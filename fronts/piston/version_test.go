package piston

import "testing"

func TestVersionMatches(t *testing.T) {
	for _, tc := range []struct {
		have, sel string
		want      bool
	}{
		{"3.11.2", "*", true},
		{"3.11.2", "3.11.2", true},
		{"3.11.2", "3.x", true},
		{"3.11.2", "3", true},
		{"3.11.2", "3.11", true},
		{"3.11.2", "3.11.x", true},
		{"3.11.2", "^3.10", true},
		{"3.11.2", ">=3.0.0 <4", true},
		{"3.11.2", "3.10.0", false},
		{"3.11.2", "2.x", false},
		{"3.11.2", "3.1", false},
		{"5.2.15", "5.x", true},
		{"21", "21.x", true},
		{"21", "*", true},
		{"21", "17", false},
		{"3.11.2", "not a version", false},
	} {
		if got := versionMatches(tc.have, tc.sel); got != tc.want {
			t.Errorf("versionMatches(%q, %q) = %v, want %v", tc.have, tc.sel, got, tc.want)
		}
	}
}
