package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// asyncRows time async jobs beside /v1/execute: one job is POST /v1/jobs, then
// GET /v1/jobs/{id}?wait=30s until it is done, so a row's latency is submit-to-done
// and its jobs/s is async throughput with 2 and 4 clients.
func asyncRows(c *http.Client, url string) []row {
	return []row{{"sandboxd warm async (HTTP)", func() error { return asyncJob(c, url) }}}
}

func asyncJob(c *http.Client, url string) error {
	resp, err := c.Post(url+"/v1/jobs", "application/json", strings.NewReader(`{"code": "print(\"hello\")"}`))
	if err != nil {
		return err
	}
	var j struct {
		ID, State string
		Result    *struct{ Status, Stdout string }
	}
	err = json.NewDecoder(resp.Body).Decode(&j)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("submit: HTTP %d: %v", resp.StatusCode, err)
	}
	for j.State != "done" {
		resp, err := c.Get(url + "/v1/jobs/" + j.ID + "?wait=30s")
		if err != nil {
			return err
		}
		err = json.NewDecoder(resp.Body).Decode(&j)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || j.State == "lost" {
			return fmt.Errorf("get %s: HTTP %d state %q: %v", j.ID, resp.StatusCode, j.State, err)
		}
	}
	if j.Result == nil || j.Result.Status != "ok" || j.Result.Stdout != "hello\n" {
		return fmt.Errorf("job %s: %+v", j.ID, j.Result)
	}
	return nil
}
