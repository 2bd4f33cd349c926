package sandbox

import (
	"bytes"
	"errors"
	"net"
	"testing"
)

// boundedConn passes ZMTP frames up to its limit, in any read sizes, and fails the read
// that would hand the ZeroMQ library a larger frame's size (which it would allocate).
func TestBoundedConnFrames(t *testing.T) {
	greeting := bytes.Repeat([]byte{0xAA}, 64)
	short := func(body []byte) []byte { return append([]byte{0x00, byte(len(body))}, body...) }
	long := func(size uint64, body []byte) []byte {
		h := []byte{0x02, 0, 0, 0, 0, 0, 0, 0, 0}
		for i := 0; i < 8; i++ {
			h[8-i] = byte(size >> (8 * i))
		}
		return append(h, body...)
	}
	cases := []struct {
		name    string
		stream  []byte
		wantErr bool
	}{
		{"short frames", slicesConcat(greeting, short([]byte("hello")), short(nil), short(bytes.Repeat([]byte{1}, 100))), false},
		{"long frame at the limit", slicesConcat(greeting, long(100, bytes.Repeat([]byte{2}, 100)), short([]byte("x"))), false},
		{"long frame over the limit", slicesConcat(greeting, long(101, nil)), true},
		{"huge size", slicesConcat(greeting, long(1<<62, nil)), true},
		// 0x01: more frames follow. Frames of one message count together; the next
		// message starts afresh.
		{"message at the limit", slicesConcat(greeting, []byte{0x01, 50}, bytes.Repeat([]byte{3}, 50), short(bytes.Repeat([]byte{4}, 50)),
			short(bytes.Repeat([]byte{5}, 100))), false},
		{"message over the limit", slicesConcat(greeting, []byte{0x01, 60}, bytes.Repeat([]byte{3}, 60), short(bytes.Repeat([]byte{4}, 41))), true},
	}
	for _, c := range cases {
		for _, chunk := range []int{1, 3, 64, 4096} {
			a, b := net.Pipe()
			go func() {
				for i := 0; i < len(c.stream); i += chunk {
					if _, err := a.Write(c.stream[i:min(i+chunk, len(c.stream))]); err != nil {
						return
					}
				}
				a.Close()
			}()
			bc := &boundedConn{Conn: b, max: 100, skip: 64, final: true}
			var got []byte
			var err error
			buf := make([]byte, 7)
			for {
				var n int
				n, err = bc.Read(buf)
				got = append(got, buf[:n]...)
				if err != nil {
					break
				}
			}
			b.Close()
			if c.wantErr != errors.Is(err, errFrameTooBig) {
				t.Errorf("%s (writes of %d): err %v", c.name, chunk, err)
			}
			if !c.wantErr && !bytes.Equal(got, c.stream) {
				t.Errorf("%s (writes of %d): bytes changed", c.name, chunk)
			}
		}
	}
}

func slicesConcat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// A message is signed over its four parts; one that is unsigned or tampered with is
// dropped, whatever its identities before the delimiter.
func TestKernelMessageSignature(t *testing.T) {
	k := &kernelClient{key: []byte("k3y")}
	hdr, parent, meta, content := []byte(`{"msg_id":"1","msg_type":"stream"}`), []byte(`{"msg_id":"0"}`), []byte(`{}`), []byte(`{"name":"stdout","text":"hi"}`)
	sig := []byte(k.sign(hdr, parent, meta, content))
	frames := func(sig []byte, c []byte) [][]byte {
		return [][]byte{[]byte("ident"), []byte(delimiter), sig, hdr, parent, meta, c}
	}
	m, err := k.decode(frames(sig, content))
	if err != nil || m.Header.MsgType != "stream" || m.ParentHeader.MsgID != "0" {
		t.Fatalf("signed message: %+v %v", m, err)
	}
	if _, err := k.decode(frames([]byte(""), content)); err == nil {
		t.Error("unsigned message accepted")
	}
	if _, err := k.decode(frames(sig, []byte(`{"name":"stdout","text":"forged"}`))); err == nil {
		t.Error("tampered message accepted")
	}
	if _, err := k.decode([][]byte{[]byte(delimiter), sig}); err == nil {
		t.Error("short message accepted")
	}
}

func TestBoundedConnShortOver(t *testing.T) {
	a, b := net.Pipe()
	stream := append(bytes.Repeat([]byte{0xAA}, 64), 0x00, 0xFF)
	stream = append(stream, bytes.Repeat([]byte{1}, 255)...)
	go func() {
		for i := range stream {
			if _, err := a.Write(stream[i : i+1]); err != nil {
				return
			}
		}
		a.Close()
	}()
	bc := &boundedConn{Conn: b, max: 100, skip: 64, final: true}
	buf := make([]byte, 7)
	var err error
	for err == nil {
		_, err = bc.Read(buf)
	}
	b.Close()
	if !errors.Is(err, errFrameTooBig) {
		t.Fatalf("a 255-byte short frame over a 100-byte limit: %v", err)
	}
}
