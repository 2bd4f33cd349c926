package sandbox

import (
	"bytes"
	"io"
)

// capture keeps the first limit bytes of a stream and drains the rest, so a job that
// floods its output is neither blocked nor killed for it; it is only flagged. A sink,
// if set, is handed each chunk kept as it is read, and once, with truncated set, the
// chunk that reached the cap.
type capture struct {
	buf       bytes.Buffer
	limit     int64
	total     int64
	truncated bool
	sink      func(chunk []byte, truncated bool) // chunk is the sink's to keep
}

func (c *capture) Write(p []byte) (int, error) {
	c.total += int64(len(p))
	if c.truncated {
		return len(p), nil
	}
	keep := p
	if room := c.limit - int64(c.buf.Len()); int64(len(p)) > room {
		keep = p[:max(room, 0)]
		c.truncated = true
	}
	c.buf.Write(keep)
	if c.sink != nil && (len(keep) > 0 || c.truncated) {
		c.sink(bytes.Clone(keep), c.truncated)
	}
	return len(p), nil
}

// drain copies r into c until EOF or an error, then signals done.
func (c *capture) drain(r io.Reader, done chan<- struct{}) {
	buf := make([]byte, 32<<10)
	_, _ = io.CopyBuffer(c, r, buf)
	close(done)
}
