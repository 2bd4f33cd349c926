package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/urfave/cli/v2"

	"github.com/sandboxd/sandboxd/api"
)

var streamFlag = &cli.BoolFlag{Name: "stream", Usage: "print the output as the job writes it (NDJSON from the daemon)"}

// streamEvent is one NDJSON line of POST /v1/execute with Accept: application/x-ndjson.
type streamEvent struct {
	Type     string          `json:"type"`
	Data     string          `json:"data"`
	Encoding string          `json:"encoding"`
	Result   json.RawMessage `json:"result"`
	Error    string          `json:"error"`
}

// runStream runs body, printing stdout and stderr chunks as they come (exact bytes:
// it asks for base64), then exits as run does.
func runStream(c *cli.Context, cl *client, body *api.ExecuteRequest) error {
	body.OutputEncoding = "base64"
	js, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := cl.request(c, http.MethodPost, "/v1/execute", bytes.NewReader(js))
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := cl.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach sandboxd at %s: %w", cl.where, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(resp.Body)
		ae := &apiError{Status: resp.StatusCode}
		if json.Unmarshal(data, ae) != nil || ae.Message == "" {
			ae.Message = string(data)
		}
		return ae
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 16<<20) // a result line holds all the output
	for sc.Scan() {
		var ev streamEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("unexpected line from sandboxd: %w", err)
		}
		switch ev.Type {
		case "stdout", "stderr":
			b, err := base64.StdEncoding.DecodeString(ev.Data)
			if err != nil {
				return fmt.Errorf("unexpected chunk from sandboxd: %w", err)
			}
			w := c.App.Writer
			if ev.Type == "stderr" {
				w = c.App.ErrWriter
			}
			w.Write(b)
		case "error":
			return errors.New(ev.Error)
		case "result":
			if wantJSON(c) {
				if err := printJSON(c.App.Writer, ev.Result); err != nil {
					return err
				}
			}
			var res api.Result
			if err := json.Unmarshal(ev.Result, &res); err != nil {
				return fmt.Errorf("unexpected answer from sandboxd: %w", err)
			}
			return exitOf(&res)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return errors.New("the stream ended without a result")
}
