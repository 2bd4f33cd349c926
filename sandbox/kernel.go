package sandbox

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/transport"
)

// A session's kernel is a real IPython kernel (ipykernel) inside the session's
// container, spoken to over the Jupyter messaging protocol (5.3): ZeroMQ over ipc (unix)
// sockets that the kernel binds in a directory of the session's own, which the daemon
// reaches by host path. The kernel is untrusted: every frame it sends is bounded in size
// before it is read (boundedConn), and messages are signed both ways with HMAC-SHA256.

const (
	// kernelTransport is a ZeroMQ transport: unix sockets whose frames are size-checked.
	kernelTransport = "sbxipc"
	// maxKernelMsg bounds one ZMTP message from a kernel, all its frames together (a
	// PNG, a stream chunk, an HTML table are far smaller). A larger one ends the
	// connection, and so the session. With the library's queue (10 messages a socket)
	// and a waiter's (waiterQueue), it bounds what a hostile kernel can make the daemon
	// hold while a client reads slowly.
	maxKernelMsg    = 8 << 20
	waiterQueue     = 4
	protocolVersion = "5.3"
	delimiter       = "<IDS|MSG>"
)

func init() {
	if err := zmq4.RegisterTransport(kernelTransport, boundedTransport{}); err != nil {
		panic(err)
	}
}

// boundedTransport dials unix sockets through boundedConn.
type boundedTransport struct{}

func (boundedTransport) Dial(ctx context.Context, d transport.Dialer, addr string) (net.Conn, error) {
	c, err := d.DialContext(ctx, "unix", addr)
	if err != nil {
		return nil, err
	}
	return &boundedConn{Conn: c, max: maxKernelMsg, skip: 64, final: true}, nil
}

func (boundedTransport) Listen(context.Context, string) (net.Listener, error) {
	return nil, errors.New("sandboxd never listens for kernels")
}

func (boundedTransport) Addr(ep string) (string, error) { return ep, nil }

// boundedConn follows ZMTP 3's framing as bytes pass (a 64-byte greeting, then frames of
// a flags byte, a 1- or 8-byte size and a body; flag 0x01: more frames follow) and fails
// the read that would hand the ZeroMQ library a message over max, all frames together:
// the library allocates a frame's size before reading it, and keeps a message's frames.
type boundedConn struct {
	net.Conn
	max   uint64
	skip  uint64 // body (or greeting) bytes still to pass
	hdr   []byte // the frame header read so far
	msg   uint64 // bytes of the message so far
	final bool   // the last frame ended its message
}

var errFrameTooBig = errors.New("kernel sent a message over the size limit")

func (c *boundedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	for i := 0; i < n; {
		if c.skip > 0 {
			k := min(c.skip, uint64(n-i))
			c.skip -= k
			i += int(k)
			continue
		}
		c.hdr = append(c.hdr, p[i])
		i++
		need := 2
		if c.hdr[0]&0x02 != 0 { // long frame: 8-byte size
			need = 9
		}
		if len(c.hdr) < need {
			continue
		}
		var size uint64
		for _, b := range c.hdr[1:] {
			size = size<<8 | uint64(b)
		}
		if c.final {
			c.msg = 0
		}
		c.final = c.hdr[0]&0x01 == 0
		c.hdr = c.hdr[:0]
		if size > c.max || c.msg+size > c.max {
			return 0, errFrameTooBig
		}
		c.msg += size
		c.skip = size
	}
	return n, err
}

// kernelMsg is one Jupyter message.
type kernelMsg struct {
	Header       msgHeader       `json:"header"`
	ParentHeader msgHeader       `json:"parent_header"`
	Metadata     json.RawMessage `json:"metadata"`
	Content      json.RawMessage `json:"content"`
	Buffers      [][]byte        `json:"-"`
	Channel      string          `json:"channel,omitempty"`
	// The header and parent header as sent (they may hold fields msgHeader lacks); a
	// relayed message keeps them.
	RawHeader, RawParent json.RawMessage `json:"-"`
}

type msgHeader struct {
	MsgID    string `json:"msg_id,omitempty"`
	Session  string `json:"session,omitempty"`
	Username string `json:"username,omitempty"`
	Date     string `json:"date,omitempty"`
	MsgType  string `json:"msg_type,omitempty"`
	Version  string `json:"version,omitempty"`
}

// connectionInfo is the kernel's connection file (kernel.json).
type connectionInfo struct {
	Transport       string `json:"transport"`
	IP              string `json:"ip"`
	ShellPort       int    `json:"shell_port"`
	IOPubPort       int    `json:"iopub_port"`
	StdinPort       int    `json:"stdin_port"`
	ControlPort     int    `json:"control_port"`
	HBPort          int    `json:"hb_port"`
	Key             string `json:"key"`
	SignatureScheme string `json:"signature_scheme"`
	KernelName      string `json:"kernel_name"`
}

// kernelSockets names the socket files ipykernel binds for ip "<dir>/k": "k-<port>".
var kernelPorts = map[string]int{"shell": 1, "iopub": 2, "stdin": 3, "control": 4, "hb": 5}

func newConnectionInfo(ip string) connectionInfo {
	return connectionInfo{Transport: "ipc", IP: ip, ShellPort: kernelPorts["shell"], IOPubPort: kernelPorts["iopub"],
		StdinPort: kernelPorts["stdin"], ControlPort: kernelPorts["control"], HBPort: kernelPorts["hb"],
		Key: randomHex(32), SignatureScheme: "hmac-sha256", KernelName: "python3"}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// kernelClient speaks to one kernel: requests on shell and control (DEALER sockets),
// everything the kernel publishes on iopub (SUB). Replies and iopub messages are handed
// to whoever waits for their parent's msg_id; others are dropped.
type kernelClient struct {
	key     []byte
	session string
	ctx     context.Context
	cancel  context.CancelFunc
	shell   zmq4.Socket
	control zmq4.Socket
	iopub   zmq4.Socket
	sendMu  sync.Mutex

	mu      sync.Mutex
	waiters map[string]*waiter       // by parent msg_id
	taps    map[int]func(*kernelMsg) // told of every message (the Jupyter front)
	nextTap int
	dead    chan struct{} // closed when a socket fails: the kernel is gone
	deadErr error
}

// waiter receives the messages whose parent is one request, until gone is closed.
type waiter struct {
	ch   chan *kernelMsg
	gone chan struct{}
}

// dialKernel connects to the sockets of a kernel whose ip (socket path prefix, on the
// host) is hostIP.
func dialKernel(hostIP string, key string) (*kernelClient, error) {
	ctx, cancel := context.WithCancel(context.Background())
	k := &kernelClient{key: []byte(key), session: randomHex(16), ctx: ctx, cancel: cancel,
		waiters: map[string]*waiter{}, dead: make(chan struct{})}
	opts := []zmq4.Option{zmq4.WithAutomaticReconnect(false), zmq4.WithDialerMaxRetries(0), zmq4.WithDialerTimeout(2 * time.Second)}
	ep := func(ch string) string { return fmt.Sprintf("%s://%s-%d", kernelTransport, hostIP, kernelPorts[ch]) }
	k.shell = zmq4.NewDealer(ctx, append(opts, zmq4.WithID(zmq4.SocketIdentity(randomHex(8))))...)
	k.control = zmq4.NewDealer(ctx, append(opts, zmq4.WithID(zmq4.SocketIdentity(randomHex(8))))...)
	k.iopub = zmq4.NewSub(ctx, opts...)
	for ch, s := range map[string]zmq4.Socket{"shell": k.shell, "control": k.control, "iopub": k.iopub} {
		if err := s.Dial(ep(ch)); err != nil {
			k.close()
			return nil, fmt.Errorf("connect to the kernel's %s socket: %w", ch, err)
		}
	}
	if err := k.iopub.SetOption(zmq4.OptionSubscribe, ""); err != nil {
		k.close()
		return nil, err
	}
	for ch, s := range map[string]zmq4.Socket{"shell": k.shell, "control": k.control, "iopub": k.iopub} {
		go k.read(ch, s)
	}
	return k, nil
}

func (k *kernelClient) close() {
	k.cancel()
	for _, s := range []zmq4.Socket{k.shell, k.control, k.iopub} {
		if s != nil {
			_ = s.Close()
		}
	}
	k.fail(errors.New("closed"))
}

func (k *kernelClient) fail(err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	select {
	case <-k.dead:
	default:
		k.deadErr = err
		close(k.dead)
	}
}

// read hands each message of one socket to its waiter.
func (k *kernelClient) read(ch string, s zmq4.Socket) {
	for {
		zm, err := s.Recv()
		if err != nil {
			k.fail(fmt.Errorf("kernel %s socket: %w", ch, err))
			return
		}
		m, err := k.decode(zm.Frames)
		if err != nil {
			continue // unsigned or malformed: not from the kernel we started
		}
		m.Channel = ch
		k.mu.Lock()
		w := k.waiters[m.ParentHeader.MsgID]
		taps := make([]func(*kernelMsg), 0, len(k.taps))
		for _, t := range k.taps {
			taps = append(taps, t)
		}
		k.mu.Unlock()
		for _, t := range taps {
			t(m)
		}
		if w != nil {
			select {
			case w.ch <- m:
			case <-w.gone:
			case <-k.ctx.Done():
				return
			}
		}
	}
}

// sign is the HMAC of a message's four parts.
func (k *kernelClient) sign(parts ...[]byte) string {
	mac := hmac.New(sha256.New, k.key)
	for _, p := range parts {
		mac.Write(p)
	}
	return hex.EncodeToString(mac.Sum(nil))
}

func (k *kernelClient) decode(frames [][]byte) (*kernelMsg, error) {
	i := 0
	for i < len(frames) && string(frames[i]) != delimiter {
		i++
	}
	if len(frames) < i+6 {
		return nil, errors.New("short message")
	}
	sig, parts := frames[i+1], frames[i+2:i+6]
	if !hmac.Equal(sig, []byte(k.sign(parts...))) {
		return nil, errors.New("bad signature")
	}
	m := &kernelMsg{Metadata: parts[2], Content: parts[3], Buffers: frames[i+6:], RawHeader: parts[0], RawParent: parts[1]}
	if err := json.Unmarshal(parts[0], &m.Header); err != nil {
		return nil, err
	}
	_ = json.Unmarshal(parts[1], &m.ParentHeader)
	return m, nil
}

// send sends a message of type msgType on channel ("shell" or "control") and returns
// a channel of the replies and iopub messages it causes, until done is called.
func (k *kernelClient) send(channel string, m *kernelMsg) (<-chan *kernelMsg, func(), error) {
	if m.Header.MsgID == "" {
		m.Header.MsgID = randomHex(16)
	}
	if m.Header.Session == "" {
		m.Header.Session = k.session
	}
	if m.Header.Username == "" {
		m.Header.Username = "sandboxd"
	}
	if m.Header.Version == "" {
		m.Header.Version = protocolVersion
	}
	if m.Header.Date == "" {
		m.Header.Date = time.Now().UTC().Format(time.RFC3339Nano)
	}
	hdr := []byte(m.RawHeader)
	if len(hdr) == 0 {
		hdr, _ = json.Marshal(m.Header)
	}
	parent := []byte(m.RawParent)
	if len(parent) == 0 {
		parent = []byte("{}")
		if m.ParentHeader.MsgID != "" {
			parent, _ = json.Marshal(m.ParentHeader)
		}
	}
	meta := []byte(m.Metadata)
	if len(meta) == 0 {
		meta = []byte("{}")
	}
	content := []byte(m.Content)
	if len(content) == 0 {
		content = []byte("{}")
	}
	id := m.Header.MsgID
	w := &waiter{ch: make(chan *kernelMsg, waiterQueue), gone: make(chan struct{})}
	ch := w.ch
	k.mu.Lock()
	k.waiters[id] = w
	k.mu.Unlock()
	var once sync.Once
	done := func() {
		once.Do(func() {
			k.mu.Lock()
			delete(k.waiters, id)
			k.mu.Unlock()
			close(w.gone)
		})
	}
	if err := k.post(channel, hdr, parent, meta, content, m.Buffers); err != nil {
		done()
		return nil, nil, err
	}
	return ch, done, nil
}

// post signs and sends one message's parts on shell or control.
func (k *kernelClient) post(channel string, hdr, parent, meta, content []byte, buffers [][]byte) error {
	s := k.shell
	if channel == "control" {
		s = k.control
	}
	frames := [][]byte{[]byte(delimiter), []byte(k.sign(hdr, parent, meta, content)), hdr, parent, meta, content}
	frames = append(frames, buffers...)
	k.sendMu.Lock()
	err := s.Send(zmq4.NewMsgFrom(frames...))
	k.sendMu.Unlock()
	if err != nil {
		return fmt.Errorf("send to kernel: %w", err)
	}
	return nil
}

// request sends a message and returns its reply on channel (shell or control).
func (k *kernelClient) request(ctx context.Context, channel, msgType string, content any) (*kernelMsg, error) {
	body, err := json.Marshal(content)
	if err != nil {
		return nil, err
	}
	ch, done, err := k.send(channel, &kernelMsg{Header: msgHeader{MsgType: msgType}, Content: body})
	if err != nil {
		return nil, err
	}
	defer done()
	for {
		select {
		case m := <-ch:
			if m.Channel == channel {
				return m, nil
			}
		case <-k.dead:
			return nil, ErrSessionEnded
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// awaitKernel waits until the kernel answers kernel_info on shell and publishes on
// iopub (a SUB socket misses what was published before it joined: Jupyter clients wait
// for iopub the same way).
func (k *kernelClient) awaitKernel(ctx context.Context) error {
	for {
		ch, done, err := k.send("shell", &kernelMsg{Header: msgHeader{MsgType: "kernel_info_request"}})
		if err != nil {
			return err
		}
		gotReply, gotIOPub := false, false
		retry := time.After(250 * time.Millisecond)
	wait:
		for !(gotReply && gotIOPub) {
			select {
			case m := <-ch:
				gotReply = gotReply || m.Channel == "shell"
				// Its idle status, the last thing the request publishes: the kernel
				// is then idle, and known to be.
				gotIOPub = gotIOPub || (m.Channel == "iopub" && m.Header.MsgType == "status" && bytes.Contains(m.Content, []byte(`"idle"`)))
			case <-retry:
				break wait
			case <-k.dead:
				done()
				return fmt.Errorf("kernel went away while starting: %w", k.deadErr)
			case <-ctx.Done():
				done()
				return ctx.Err()
			}
		}
		done()
		if gotReply && gotIOPub {
			return nil
		}
	}
}

// addTap tells f of every message the kernel sends, until the returned func is called.
// f runs on the socket's reader and must not block.
func (k *kernelClient) addTap(f func(*kernelMsg)) func() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.taps == nil {
		k.taps = map[int]func(*kernelMsg){}
	}
	id := k.nextTap
	k.nextTap++
	k.taps[id] = f
	return func() {
		k.mu.Lock()
		delete(k.taps, id)
		k.mu.Unlock()
	}
}
