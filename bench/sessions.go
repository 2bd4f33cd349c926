package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"
)

var (
	sessionsOnly = flag.Bool("sessions-only", false, "run only the session rows")
	sessionN     = flag.Int("session-n", 10, "sessions created per create row (each waits for the pool to refill)")
	cellN        = flag.Int("cell-n", 200, "cells per round-trip row")
)

// sessionTable is the sessions' figures: create p50 with the pool ready (warm daemon,
// --session-pool 1) and cold (--session-pool 0); a `1+1` cell's round trip through
// /v1/sessions and through the Jupyter channels.
func sessionTable(client *http.Client, cold, warm *daemon) error {
	fmt.Printf("\nsessions (a real IPython kernel each); %d creates per row, %d cells per row\n\n", *sessionN, *cellN)
	fmt.Printf("%-40s %8s %8s\n", "", "p50 ms", "p95 ms")
	create := func(d *daemon) (string, error) {
		resp, err := client.Post(d.url+"/v1/sessions", "application/json", strings.NewReader(`{}`))
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		var s struct {
			ID   string `json:"id"`
			Warm bool   `json:"warm"`
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusNotImplemented {
			return "", errNoKernel
		}
		if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &s) != nil {
			return "", fmt.Errorf("create session: %d %s", resp.StatusCode, b)
		}
		return s.ID, nil
	}
	del := func(d *daemon, id string) {
		req, _ := http.NewRequest("DELETE", d.url+"/v1/sessions/"+id, nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	for _, r := range []struct {
		name string
		d    *daemon
		wait time.Duration
	}{{"session create, pool ready", warm, 5 * time.Second}, {"session create, cold", cold, 0}} {
		var lat []float64
		for range *sessionN {
			time.Sleep(r.wait) // the pool refills off the clock
			t := time.Now()
			id, err := create(r.d)
			if errors.Is(err, errNoKernel) {
				fmt.Println("sessions: skipped, the rootfs has no ipykernel (use the python image)")
				return nil
			}
			if err != nil {
				return err
			}
			lat = append(lat, float64(time.Since(t).Microseconds())/1000)
			del(r.d, id)
		}
		fmt.Printf("%-40s %8.1f %8.1f\n", r.name, pct(lat, 50), pct(lat, 95))
	}

	id, err := create(cold)
	if err != nil {
		return err
	}
	defer del(cold, id)
	cell := []byte(`{"code": "1+1"}`)
	lat, err := series(func() error {
		resp, err := client.Post(cold.url+"/v1/sessions/"+id+"/execute", "application/json", bytes.NewReader(cell))
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Contains(b, []byte(`"2"`)) {
			return fmt.Errorf("cell: %d %s", resp.StatusCode, b)
		}
		return nil
	}, *cellN)
	if err != nil {
		return err
	}
	fmt.Printf("%-40s %8.1f %8.1f\n", "1+1 round trip, /v1/sessions (HTTP)", pct(lat, 50), pct(lat, 95))

	// The Jupyter front: one WebSocket, an execute_request, until the reply and idle.
	resp, err := client.Post(cold.url+"/api/kernels", "application/json", strings.NewReader(`{"name": "python3"}`))
	if err != nil {
		return err
	}
	var k struct {
		ID string `json:"id"`
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := json.Unmarshal(b, &k); err != nil || k.ID == "" {
		return fmt.Errorf("start kernel: %s", b)
	}
	defer func() {
		req, _ := http.NewRequest("DELETE", cold.url+"/api/kernels/"+k.ID, nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	ctx := context.Background()
	ws, _, err := websocket.Dial(ctx, strings.Replace(cold.url, "http", "ws", 1)+"/api/kernels/"+k.ID+"/channels", nil)
	if err != nil {
		return err
	}
	defer ws.CloseNow()
	n := 0
	lat, err = series(func() error {
		n++
		msgID := fmt.Sprintf("bench-%d", n)
		msg, _ := json.Marshal(map[string]any{"channel": "shell", "header": map[string]any{"msg_id": msgID, "msg_type": "execute_request",
			"session": "bench", "username": "bench", "version": "5.3", "date": time.Now().UTC().Format(time.RFC3339Nano)},
			"parent_header": map[string]any{}, "metadata": map[string]any{},
			"content": map[string]any{"code": "1+1", "silent": false, "store_history": true, "user_expressions": map[string]any{}, "allow_stdin": false}})
		if err := ws.Write(ctx, websocket.MessageText, msg); err != nil {
			return err
		}
		replied, idle := false, false
		for !(replied && idle) {
			_, b, err := ws.Read(ctx)
			if err != nil {
				return err
			}
			var m struct {
				Channel string `json:"channel"`
				Header  struct {
					MsgType string `json:"msg_type"`
				} `json:"header"`
				Parent struct {
					MsgID string `json:"msg_id"`
				} `json:"parent_header"`
				Content struct {
					ExecutionState string `json:"execution_state"`
				} `json:"content"`
			}
			if json.Unmarshal(b, &m) != nil || m.Parent.MsgID != msgID {
				continue
			}
			replied = replied || m.Header.MsgType == "execute_reply"
			idle = idle || m.Content.ExecutionState == "idle"
		}
		return nil
	}, *cellN)
	if err != nil {
		return err
	}
	fmt.Printf("%-40s %8.1f %8.1f\n", "1+1 round trip, Jupyter channels (WS)", pct(lat, 50), pct(lat, 95))
	return nil
}

var errNoKernel = errors.New("no ipykernel")
