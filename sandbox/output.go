package sandbox

import (
	"bytes"
	"io"
)

// capture keeps the first limit bytes of a stream and drains the rest, so a job that
// floods its output is neither blocked nor killed for it; it is only flagged.
type capture struct {
	buf       bytes.Buffer
	limit     int64
	total     int64
	truncated bool
}

func (c *capture) Write(p []byte) (int, error) {
	c.total += int64(len(p))
	if room := c.limit - int64(c.buf.Len()); room > 0 {
		if int64(len(p)) > room {
			c.buf.Write(p[:room])
			c.truncated = true
		} else {
			c.buf.Write(p)
		}
	} else if len(p) > 0 {
		c.truncated = true
	}
	return len(p), nil
}

// drain copies r into c until EOF or an error, then signals done.
func (c *capture) drain(r io.Reader, done chan<- struct{}) {
	buf := make([]byte, 32<<10)
	_, _ = io.CopyBuffer(c, r, buf)
	close(done)
}
