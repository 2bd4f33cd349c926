package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

var (
	testSubmissions = flag.Int("test-submissions", 10, "submissions per test-case row")
	testCases       = flag.Int("test-cases", 20, "test cases per submission")
	goJudgeInFlight = flag.Int("go-judge-in-flight", 4, "go-judge test-case row: /run requests in flight at once (a judge's concurrency)")
)

// testProgram reads n and prints the sum of the first n squares: each test case has its
// own input and expected output, so a test that got another's input or output fails.
const testProgram = "import sys\nn = int(sys.stdin.read())\nprint(sum(i * i for i in range(1, n + 1)))\n"

type testCase struct{ stdin, want string }

func makeTestCases(k int) []testCase {
	tcs := make([]testCase, k)
	for i := range tcs {
		n := int64(i*37 + 5)
		tcs[i] = testCase{strconv.FormatInt(n, 10) + "\n", strconv.FormatInt(n*(n+1)*(2*n+1)/6, 10)}
	}
	return tcs
}

// submitTests runs one submission with every test case through /v1/execute's tests and
// checks each verdict and output; it returns how many ran on a warm container.
func submitTests(c *http.Client, url string, tcs []testCase) (int, error) {
	type test struct {
		Stdin          string `json:"stdin"`
		ExpectedOutput string `json:"expected_output"`
	}
	req := struct {
		Code  string `json:"code"`
		Tests []test `json:"tests"`
	}{Code: testProgram}
	for _, tc := range tcs {
		req.Tests = append(req.Tests, test{tc.stdin, tc.want})
	}
	body, _ := json.Marshal(req)
	resp, err := c.Post(url+"/v1/execute", "application/json", strings.NewReader(string(body)))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status      string `json:"status"`
		TestsPassed *int   `json:"tests_passed"`
		Tests       []struct {
			Verdict, Stdout, Stderr string
			Warm                    bool
		} `json:"tests"`
	}
	err = json.NewDecoder(resp.Body).Decode(&r)
	_, _ = io.Copy(io.Discard, resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("HTTP %d: %v", resp.StatusCode, err)
	}
	if r.Status != "ok" || r.TestsPassed == nil || *r.TestsPassed != len(tcs) || len(r.Tests) != len(tcs) {
		return 0, fmt.Errorf("status %q, %v of %d tests passed", r.Status, r.TestsPassed, len(tcs))
	}
	warm := 0
	for i, t := range r.Tests { // checked here too, not only by the daemon's verdict
		if t.Verdict != "passed" || strings.TrimRight(t.Stdout, "\n") != tcs[i].want {
			return 0, fmt.Errorf("test %d: verdict %q stdout %q stderr %q, want %q", i, t.Verdict, t.Stdout, t.Stderr, tcs[i].want)
		}
		if t.Warm {
			warm++
		}
	}
	return warm, nil
}

// goJudgeTests runs one submission on go-judge as a judge does: the source uploaded once
// to its file store, then one /run per test case copying it in by fileId, inFlight at a
// time; each output checked.
func goJudgeTests(c *http.Client, g *goJudge, tcs []testCase, inFlight int) error {
	id, err := g.upload(c, "main.py", testProgram)
	if err != nil {
		return err
	}
	defer func() {
		if req, err := http.NewRequest(http.MethodDelete, g.url+"/file/"+id, nil); err == nil {
			if resp, err := c.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}()
	errs := make([]error, len(tcs))
	next := make(chan int, len(tcs))
	for i := range tcs {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	for range inFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out, err := g.run(c, goJudgeFile{FileID: id}, tcs[i].stdin)
				if err == nil && strings.TrimRight(out, "\n") != tcs[i].want {
					err = fmt.Errorf("printed %q, want %q", out, tcs[i].want)
				}
				if err != nil {
					errs[i] = fmt.Errorf("test %d: %w", i, err)
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// testCaseTable times whole submissions of *testCases tests, back to back: p50 per
// submission and tests/s, beside go-judge running the same commands.
func testCaseTable(c *http.Client, cold, warm, forked *daemon, g *goJudge) error {
	tcs := makeTestCases(*testCases)
	type tcRow struct {
		name string
		f    func() error
	}
	var warmTests, allWarmTests int
	rows := []tcRow{
		{fmt.Sprintf("sandboxd warm: 1 request, %d tests", len(tcs)), func() error {
			w, err := submitTests(c, warm.url, tcs)
			warmTests += w
			allWarmTests += len(tcs)
			return err
		}},
		{fmt.Sprintf("sandboxd cold: 1 request, %d tests", len(tcs)), func() error { _, err := submitTests(c, cold.url, tcs); return err }},
	}
	if forked != nil {
		rows = append(rows, tcRow{fmt.Sprintf("sandboxd fork: 1 request, %d tests", len(tcs)), func() error { _, err := submitTests(c, forked.url, tcs); return err }})
	}
	gj := len(rows) // the index of go-judge's first row, if any
	if g != nil {
		rows = append(rows,
			tcRow{fmt.Sprintf("go-judge: %d /run one by one", len(tcs)), func() error { return goJudgeTests(c, g, tcs, 1) }},
			tcRow{fmt.Sprintf("go-judge: %d /run, %d at once", len(tcs), *goJudgeInFlight), func() error { return goJudgeTests(c, g, tcs, *goJudgeInFlight) }},
		)
	}
	fmt.Printf("\ntest cases: one python submission (reads n, prints a sum) with %d tests, each output checked; %d submissions per row, the rows taking turns, each after a 1 s pause (not timed)\n\n",
		len(tcs), *testSubmissions)
	fmt.Printf("%-36s %14s %9s %14s %14s\n", "", "p50 ms/subm.", "tests/s", "vs gj 1-by-1", fmt.Sprintf("vs gj %d at once", *goJudgeInFlight))
	for _, r := range rows { // warm caches
		if err := r.f(); err != nil {
			return fmt.Errorf("%s: %w", r.name, err)
		}
	}
	warmTests, allWarmTests = 0, 0
	// The rows take turns, one submission each, so a load that comes and goes on the
	// host (other work) weighs on every row alike.
	lat := make([][]float64, len(rows))
	for range *testSubmissions {
		for i, r := range rows {
			time.Sleep(time.Second) // a full pool, as between bursts in service
			start := time.Now()
			if err := r.f(); err != nil {
				return fmt.Errorf("%s: %w", r.name, err)
			}
			lat[i] = append(lat[i], float64(time.Since(start).Microseconds())/1000)
		}
	}
	rates := make([]float64, len(rows))
	p50s := make([]float64, len(rows))
	for i := range rows {
		total := 0.0
		for _, ms := range lat[i] {
			total += ms
		}
		rates[i] = float64(len(tcs)*len(lat[i])) / (total / 1000)
		p50s[i] = pct(lat[i], 50)
	}
	for i, r := range rows {
		ratio := func(j int) string {
			if j >= len(rows) {
				return "-"
			}
			return fmt.Sprintf("%.2fx", rates[i]/rates[j])
		}
		fmt.Printf("%-36s %14.1f %9.0f %14s %14s\n", r.name, p50s[i], rates[i], ratio(gj), ratio(gj+1))
	}
	fmt.Printf("\nsandboxd warm: %d of %d tests ran on a warm container\n", warmTests, allWarmTests)
	return nil
}
