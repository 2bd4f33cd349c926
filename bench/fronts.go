package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// frontRows time the Piston and Judge0 fronts with the same hello world as
// /v1/execute, on the warm daemon: the translation's cost beside /v1's.
func frontRows(c *http.Client, url string) []row {
	return []row{
		{"piston /api/v2/execute", func() error { return pistonExecute(c, url) }},
		{"judge0 wait=true", func() error { return judge0Wait(c, url) }},
	}
}

func pistonExecute(c *http.Client, url string) error {
	// As the npm piston-client sends it: no Content-Type, its default limits.
	body := `{"language":"python","version":"*","files":[{"content":"print(\"hello\")"}],"stdin":"","args":[],` +
		`"compile_timeout":10000,"run_timeout":3000,"compile_memory_limit":-1,"run_memory_limit":-1}`
	resp, err := c.Post(url+"/api/v2/execute", "", strings.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var r struct {
		Run struct {
			Stdout string `json:"stdout"`
			Code   *int   `json:"code"`
		} `json:"run"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 || r.Run.Stdout != "hello\n" || r.Run.Code == nil || *r.Run.Code != 0 {
		return fmt.Errorf("piston: HTTP %d stdout %q", resp.StatusCode, r.Run.Stdout)
	}
	return nil
}

func judge0Wait(c *http.Client, url string) error {
	resp, err := c.Post(url+"/submissions?wait=true", "application/json",
		strings.NewReader(`{"language_id":71,"source_code":"print(\"hello\")","expected_output":"hello"}`))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var r struct {
		Stdout string `json:"stdout"`
		Status struct {
			ID int `json:"id"`
		} `json:"status"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 201 || r.Status.ID != 3 {
		return fmt.Errorf("judge0: HTTP %d status %d stdout %q", resp.StatusCode, r.Status.ID, r.Stdout)
	}
	return nil
}
