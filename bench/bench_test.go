package main

import (
	"strconv"
	"strings"
	"testing"
)

// The expected outputs are what testProgram prints: the sum of the first n squares, by
// a loop here (the table uses the closed form), and every test's input differs.
func TestMakeTestCases(t *testing.T) {
	seen := map[string]bool{}
	for i, tc := range makeTestCases(20) {
		n, err := strconv.Atoi(strings.TrimSpace(tc.stdin))
		if err != nil {
			t.Fatalf("test %d: stdin %q", i, tc.stdin)
		}
		sum := 0
		for k := 1; k <= n; k++ {
			sum += k * k
		}
		if tc.want != strconv.Itoa(sum) {
			t.Errorf("n=%d: want %s, the sum is %d", n, tc.want, sum)
		}
		if seen[tc.stdin] {
			t.Errorf("test %d: input %q repeated", i, tc.stdin)
		}
		seen[tc.stdin] = true
	}
}

func TestFiguresLine(t *testing.T) {
	gj := &figures{p50: 20, p95: 30, jobs: [3]float64{40, 80, 100}}
	for _, tc := range []struct {
		name string
		f    figures
		gj   *figures
		want []string // fields after the name
	}{
		{"ratios", figures{p50: 5, p95: 10, jobs: [3]float64{60, 120, 150}}, gj,
			[]string{"5.0", "10.0", "60", "120", "150", "0.50x", "0.25x", "1.50/1.50/1.50"}},
		{"paced row", figures{p50: 4, p95: 6}, gj,
			[]string{"4.0", "6.0", "-", "-", "-", "0.40x", "0.20x", "-/-/-"}},
		{"no go-judge", figures{p50: 10, p95: 10, jobs: [3]float64{1, 2, 3}}, nil,
			[]string{"10.0", "10.0", "1", "2", "3", "1.00x", "-", "-"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := strings.Fields(tc.f.line("row", 10, tc.gj))
			if strings.Join(got[1:], " ") != strings.Join(tc.want, " ") {
				t.Errorf("got %q, want %q", got[1:], tc.want)
			}
		})
	}
}
