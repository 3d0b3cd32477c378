package wshub

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gobwas/pool/pbytes"
	"github.com/gobwas/ws"
)

// The handshake of both doors: the checks every upgrade request passes
// (admission against the hub's limits, the origin, OnUpgrade), the own
// listener's request parsing and its answers, and the rejections, which
// both doors send alike.

// UpgradeError rejects an upgrade when OnUpgrade returns it. The response
// has Status, the fields of Header (WWW-Authenticate with a 401, Retry-After
// with a 503, ...) and Body, whose type is Header's Content-Type or else
// sniffed; with no Body, Reason is sent as plain text. Both doors send the
// same response, and the hub's own rejections are UpgradeErrors too.
type UpgradeError struct {
	Status int
	Reason string
	Header http.Header
	Body   []byte
}

// Error returns "wshub: upgrade rejected: STATUS REASON".
func (e *UpgradeError) Error() string {
	return "wshub: upgrade rejected: " + strconv.Itoa(e.Status) + " " + e.Reason
}

// rejection returns the hub's own rejection with status and reason.
func rejection(status int, reason string) *UpgradeError {
	e := &UpgradeError{Status: status, Reason: reason}
	switch status {
	case http.StatusServiceUnavailable:
		// Overloaded or shutting down: a client should come back, later
		// or elsewhere, rather than retry at once.
		e.Header = http.Header{"Retry-After": {"1"}}
	case http.StatusUpgradeRequired:
		e.Header = http.Header{"Upgrade": {"websocket"}}
	}
	return e
}

// body returns the response body and its content type.
func (e *UpgradeError) body() ([]byte, string) {
	if e.Body == nil {
		return []byte(e.Reason + "\n"), "text/plain; charset=utf-8"
	}
	if t := e.Header.Get("Content-Type"); t != "" {
		return e.Body, t
	}
	return e.Body, http.DetectContentType(e.Body)
}

// serve sends the rejection through net/http.
func (e *UpgradeError) serve(w http.ResponseWriter) {
	h := w.Header()
	for k, v := range e.Header {
		h[k] = v
	}
	body, ctype := e.body()
	h.Set("Content-Type", ctype)
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(e.Status)
	w.Write(body)
}

// response encodes the rejection as the own listener sends it, before it
// closes the connection.
func (e *UpgradeError) response() []byte {
	body, ctype := e.body()
	h := e.Header.Clone()
	if h == nil {
		h = make(http.Header)
	}
	h.Set("Content-Type", ctype)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Connection", "close")
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 " + strconv.Itoa(e.Status) + " " + http.StatusText(e.Status) + "\r\n")
	h.Write(&b) // sorted, and newlines in values made spaces
	b.WriteString("\r\n")
	b.Write(body)
	return b.Bytes()
}

// takeSlot counts a connection about to be upgraded against MaxConns and
// MaxTotalQueuedBytes. It returns the reason to refuse it with 503 instead,
// if any; otherwise freeSlot must follow, when the connection ends or if it
// is not opened after all.
func (h *Hub) takeSlot() string {
	if b := h.opts.MaxTotalQueuedBytes; b > 0 && h.stats.queued.Load() > b {
		return "server overloaded"
	}
	limit := int64(h.opts.MaxConns)
	for {
		n := h.stats.open.Load()
		if limit > 0 && n >= limit {
			return "too many connections"
		}
		if h.stats.open.CompareAndSwap(n, n+1) {
			return ""
		}
	}
}

// freeSlot gives back the slot of an admitted connection, c, when it ends
// or is not opened after all, and its place among its address's (see
// addrLimits). c is nil for one that never came to exist; st is then its
// address's account.
func (h *Hub) freeSlot(c *Conn, st *addrState) {
	h.stats.open.Add(-1)
	h.perAddr.release(c, st)
}

// admit checks the hub's limits, the per-address ones, the origin and
// OnUpgrade for an upgrade request from remote. It returns the
// connection's data and its address's account, or the rejection to answer
// with. r may be nil when neither CheckOrigin, OnUpgrade nor ClientAddr is
// set. An admitted request holds a slot (see takeSlot and freeSlot).
func (h *Hub) admit(r *http.Request, origin, host, remote string) (any, *addrState, *UpgradeError) {
	// Limits first: an overloaded server should not spend time on the
	// application's authentication.
	if why := h.takeSlot(); why != "" {
		h.event(EventRejected, nil, why)
		return nil, nil, rejection(http.StatusServiceUnavailable, why)
	}
	var st *addrState
	held := true // the slot, until it is handed on or given back
	defer func() {
		// A hook (ClientAddr, CheckOrigin, OnUpgrade) panicked:
		// net/http recovers it, and the slot must not stay taken.
		if held {
			h.freeSlot(nil, st)
		}
	}()
	if h.perAddr != nil {
		var rej *UpgradeError
		if st, rej = h.perAddr.admit(h.clientKey(r, remote)); rej != nil {
			held = false
			h.stats.open.Add(-1)
			h.event(EventRejected, nil, rej.Reason)
			return nil, nil, rej
		}
	}
	data, rej := h.authorize(r, origin, host)
	held = false
	if rej != nil {
		h.freeSlot(nil, st)
		return nil, nil, rej
	}
	return data, st, nil
}

// authorize runs the origin check and OnUpgrade.
func (h *Hub) authorize(r *http.Request, origin, host string) (any, *UpgradeError) {
	if f := h.opts.CheckOrigin; f != nil {
		if !f(r) {
			return nil, rejection(http.StatusForbidden, "origin not allowed")
		}
	} else if !sameOrigin(origin, host) {
		return nil, rejection(http.StatusForbidden, "origin not allowed")
	}
	f := h.opts.OnUpgrade
	if f == nil {
		return nil, nil
	}
	data, err := f(r)
	if err == nil {
		return data, nil
	}
	if ue := (*UpgradeError)(nil); errors.As(err, &ue) && ue.Status >= 400 && ue.Status <= 599 {
		return nil, ue
	}
	return nil, rejection(http.StatusForbidden, "forbidden")
}

// sameOrigin reports whether a browser's Origin names the host it connects
// to. Requests without Origin come from non-browser clients and pass.
func sameOrigin(origin, host string) bool {
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, host)
}

// headerHasToken reports whether a field key of h lists token.
func headerHasToken(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		if hasToken(v, token) {
			return true
		}
	}
	return false
}

// hasToken reports whether the comma-separated list v holds token, in any
// case.
func hasToken(v, token string) bool {
	for t := range strings.SplitSeq(v, ",") {
		if strings.EqualFold(strings.TrimSpace(t), token) {
			return true
		}
	}
	return false
}

// maxRequestSize bounds an upgrade request read by the hub's own listener.
const maxRequestSize = 8 << 10

// upgrade handles the bytes of an own-listener connection that has not
// upgraded yet: all that arrived so far. Once the request is complete it
// answers it and returns the bytes that followed, which are frames, with
// done set. A request it refuses is answered at once, as net/http would,
// and the connection finished.
func (c *Conn) upgrade(b []byte) (rest []byte, done bool) {
	n, rej := requestHead(b)
	if n == 0 && rej == nil {
		return b, false // incomplete
	}
	if c.own&ownPending != 0 { // its request is here: admit counts it from now
		c.own &^= ownPending
		c.hub.perAddr.endPending(c)
	}
	var u upgrade
	var err error
	if rej == nil {
		u, rej, err = c.hub.answerHead(b[:n], c.rd.remote)
	}
	switch {
	case rej != nil:
		c.refuse(rej)
		return nil, false
	case err != nil:
		c.writeRaw(u.resp) // gobwas's answer: bad method, version or key
		c.finish(&CloseError{Code: CloseAbnormal, Reason: "upgrade failed: " + err.Error()})
		return nil, false
	}
	c.rd.remote = nil
	c.accept(u)
	// The response is queued like a frame, in the state change that opens
	// the connection, and held there until OnOpen has run: whatever
	// another goroutine writes from then on, Shutdown's close frame
	// included, follows it on the wire.
	c.mu.Lock()
	open := c.state.Load() == connHandshake && c.flags&flagShut == 0 // else Close, Shutdown or a timeout killed it
	if open {
		c.state.Store(connOpen)
		c.deadline.Store(0)
		c.holdLocked(u.resp)
	}
	c.mu.Unlock()
	if !open {
		c.hub.freeSlot(c, nil) // admitted, never opened
		return nil, false
	}
	c.opened()
	return b[n:], true
}

// requestHead looks for a complete upgrade request head at the start of b,
// which the own listener or ServeConn read as raw bytes. It returns the
// head's length, 0 while it is incomplete, or the rejection of bytes that
// cannot become an acceptable head.
func requestHead(b []byte) (n int, rej *UpgradeError) {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	head := b
	if end >= 0 {
		head = b[:end+4]
	}
	switch {
	case bareLF(head):
		return 0, rejection(http.StatusBadRequest, "line not ended by CRLF")
	case end < 0 && len(b) > maxRequestSize:
		return 0, rejection(http.StatusRequestHeaderFieldsTooLarge, "upgrade request too large")
	case end < 0:
		return 0, nil
	}
	if rej := checkHead(head); rej != nil {
		return 0, rej
	}
	return len(head), nil
}

// An upgrade is what an accepted upgrade request decided: the response to
// send, the connection's data from OnUpgrade, its address's account and
// what was negotiated.
type upgrade struct {
	resp  []byte
	data  any
	addr  *addrState
	z     deflation
	proto uint32 // index plus one in Options.Subprotocols, 0 for none
}

// accept records u on c, before c is shared or while its owner opens it.
func (c *Conn) accept(u upgrade) {
	c.hub.perAddr.bind(c, u.addr)
	c.data = u.data
	c.compress(u.z)
	c.sched.Or(u.proto << schedProtoShift)
}

// answerHead runs the upgrade checks and the gobwas upgrader over head, a
// complete request head. It returns the upgrade, or the rejection to answer
// with, or, when gobwas refused the request itself (bad method, version or
// key), its error, with the answer gobwas wrote in u.resp, which the caller
// sends as it is.
func (h *Hub) answerHead(head []byte, remote net.Addr) (u upgrade, rej *UpgradeError, err error) {
	u, err = h.upgradeBytes(head, remote)
	switch {
	case err == nil:
		return u, nil, nil
	case errors.As(err, &rej):
		return upgrade{}, rej, nil
	case len(u.resp) > 0:
		return u, nil, err
	}
	// A request line gobwas could not parse.
	return upgrade{}, rejection(http.StatusBadRequest, "malformed request line"), nil
}

// refuse answers an own-listener request with rej and drops the
// connection, which never opened: no OnClose.
func (c *Conn) refuse(rej *UpgradeError) {
	c.hub.refusal(rej.Status)
	c.writeRaw(rej.response()) // best effort
	c.finish(&CloseError{Code: CloseAbnormal, Reason: "upgrade refused: " + strconv.Itoa(rej.Status) + " " + rej.Reason})
}

// bareLF reports whether a line of head ends with LF alone. net/http's
// reader accepts them; the own listener answers 400 Bad Request at once
// rather than wait for a CRLF CRLF that will not come.
func bareLF(head []byte) bool {
	for i, ch := range head {
		if ch == '\n' && (i == 0 || head[i-1] != '\r') {
			return true
		}
	}
	return false
}

// checkHead checks an own-listener request head for what net/http's reader
// refuses and gobwas's upgrader does not look at: control characters,
// header lines that are not "token: value", a missing "Upgrade: websocket"
// (426 Upgrade Required, as on the ServeHTTP door), and a body (see
// errBody).
func checkHead(head []byte) *UpgradeError {
	upgrade, body := false, false
	for i, line := range bytes.Split(head[:len(head)-4], []byte("\r\n")) {
		for _, ch := range line {
			if ch < ' ' && ch != '\t' || ch == 0x7f {
				return rejection(http.StatusBadRequest, "control character in request")
			}
		}
		if i == 0 {
			// The request line: gobwas checks method, URI and version
			// once it has the shape net/http requires.
			method, rest, ok1 := bytes.Cut(line, []byte(" "))
			_, proto, ok2 := bytes.Cut(rest, []byte(" "))
			if !ok1 || !ok2 || !isToken(method) || !bytes.HasPrefix(proto, []byte("HTTP/")) {
				return rejection(http.StatusBadRequest, "malformed request line")
			}
			continue
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok || !isToken(k) {
			return rejection(http.StatusBadRequest, "malformed header line")
		}
		if strings.EqualFold(string(k), "Upgrade") && hasToken(string(v), "websocket") {
			upgrade = true
		}
		switch {
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			body = true
		case bytes.EqualFold(k, []byte("Content-Length")):
			body = body || string(bytes.TrimSpace(v)) != "0"
		}
	}
	if !upgrade {
		return rejection(http.StatusUpgradeRequired, "websocket upgrade required")
	}
	if body {
		return errBody()
	}
	return nil
}

// errBody refuses an upgrade request that declares a body: after the 101
// the bytes that follow the head are frames, so a body would be parsed as
// frames (and a proxy in between could read them as the body). Every door
// answers it with 400.
func errBody() *UpgradeError {
	return rejection(http.StatusBadRequest, "upgrade request with a body")
}

// isToken reports whether s is an HTTP token (RFC 9110, 5.6.2).
func isToken(s []byte) bool {
	for _, ch := range s {
		if ch >= 0x80 || !tokenChar[ch] {
			return false
		}
	}
	return len(s) > 0
}

var tokenChar = func() (t [128]bool) {
	for ch := '0'; ch <= '9'; ch++ {
		t[ch] = true
	}
	for ch := 'a'; ch <= 'z'; ch++ {
		t[ch], t[ch-'a'+'A'] = true, true
	}
	for _, ch := range "!#$%&'*+-.^_`|~" {
		t[ch] = true
	}
	return t
}()

// upgradeBytes runs the gobwas upgrader over a complete upgrade request and
// returns the response to send, and the connection's data from OnUpgrade.
// Hooks see the request's fields as zero-copy slices; an *http.Request is
// built only when CheckOrigin or OnUpgrade needs one.
func (h *Hub) upgradeBytes(req []byte, remote net.Addr) (u upgrade, err error) {
	var (
		uri, host, origin string
		header            http.Header
		needRequest       = h.opts.OnUpgrade != nil || h.opts.CheckOrigin != nil || h.opts.ClientAddr != nil
		answer            ws.HandshakeHeader
	)
	// gobwas keeps Sec-WebSocket-Protocol and -Extensions from OnHeader:
	// read the offers from the request itself.
	var fields http.Header
	u.z, u.proto, fields = h.negotiateAll(func(name string) []string { return headerValues(req, name) })
	if fields != nil {
		answer = ws.HandshakeHeaderHTTP(fields)
	}
	up := ws.Upgrader{
		OnRequest: func(b []byte) error { uri = string(b); return nil },
		OnHost:    func(b []byte) error { host = string(b); return nil },
		OnHeader: func(k, v []byte) error {
			switch {
			case needRequest:
				if header == nil {
					header = make(http.Header)
				}
				header.Add(string(k), string(v))
			case strings.EqualFold(string(k), "Origin"):
				origin = string(v)
			}
			return nil
		},
		OnBeforeUpgrade: func() (ws.HandshakeHeader, error) {
			var r *http.Request
			if needRequest {
				r = newUpgradeRequest(uri, host, header, remote)
				origin = r.Header.Get("Origin")
			}
			var rej *UpgradeError
			var addr string
			if remote != nil {
				addr = remote.String()
			}
			if u.data, u.addr, rej = h.admit(r, origin, host, addr); rej != nil {
				return nil, rej // answered by the caller, as ServeHTTP would
			}
			return answer, nil
		},
	}
	var out bytes.Buffer
	_, err = up.Upgrade(struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(req), &out})
	if err != nil && out.Len() > 0 && !errors.As(err, new(*UpgradeError)) {
		// gobwas's own answer (bad method, version or key), which the
		// callers send as it is; they send an UpgradeError themselves.
		h.refusal(gobwasStatus(err))
	}
	u.resp = out.Bytes()
	return u, err
}

// gobwasStatus returns the status of the answer gobwas's upgraders write
// when they fail with err: the rejection's, or 500.
func gobwasStatus(err error) int {
	if rej := (*ws.ConnectionRejectedError)(nil); errors.As(err, &rej) && rej.StatusCode() != 0 {
		return rej.StatusCode()
	}
	return http.StatusInternalServerError
}

// selectProtocol returns the index plus one in Options.Subprotocols of the
// first one that offers, values of Sec-WebSocket-Protocol, names, or 0.
func (h *Hub) selectProtocol(offers []string) uint32 {
	for i, p := range h.opts.Subprotocols {
		for _, v := range offers {
			if hasToken(v, p) {
				return uint32(i + 1)
			}
		}
	}
	return 0
}

// negotiateAll answers the request's offers of compression and
// subprotocols, whose values values returns by field name. It returns what
// was agreed and the response's fields that say so, nil when there are
// none.
func (h *Hub) negotiateAll(values func(name string) []string) (z deflation, proto uint32, fields http.Header) {
	var ext string
	if h.opts.Compression != nil {
		ext, z = h.negotiate(values("Sec-WebSocket-Extensions"))
	}
	if h.opts.Subprotocols != nil {
		proto = h.selectProtocol(values("Sec-WebSocket-Protocol"))
	}
	if z == 0 && proto == 0 {
		return z, proto, nil
	}
	fields = make(http.Header, 2)
	if proto != 0 {
		fields.Set("Sec-WebSocket-Protocol", h.opts.Subprotocols[proto-1])
	}
	if ext != "" {
		fields.Set("Sec-WebSocket-Extensions", ext)
	}
	return z, proto, fields
}

// headerValues returns the values of the header field name in the request
// head req, a field repeated or not.
func headerValues(req []byte, name string) []string {
	var vs []string
	for line := range bytes.SplitSeq(req, []byte("\r\n")) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if ok && strings.EqualFold(string(k), name) {
			vs = append(vs, string(bytes.TrimSpace(v)))
		}
	}
	return vs
}

// newUpgradeRequest builds the request OnUpgrade and CheckOrigin see on the
// hub's own listener.
func newUpgradeRequest(uri, host string, header http.Header, remote net.Addr) *http.Request {
	if header == nil {
		header = make(http.Header)
	}
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		u = &url.URL{Path: "/"}
	}
	r := &http.Request{
		Method:     http.MethodGet,
		URL:        u,
		RequestURI: uri,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     header,
		Host:       host,
	}
	if remote != nil {
		r.RemoteAddr = remote.String()
	}
	return r
}

// answerRequest answers r, an upgrade request that net/http or another
// server has read, after the checks every door makes, and hands its
// connection to the poller with the bytes the client sent after r: those
// left in the reader the hijack returns, then early. w is net/http's
// ResponseWriter, whose rejections net/http sends, or ServeConn's
// connResponse, whose rejections go straight to the connection.
func (h *Hub) answerRequest(w http.ResponseWriter, r *http.Request, early []byte) error {
	if !headerHasToken(r.Header, "Upgrade", "websocket") {
		return h.reject(w, rejection(http.StatusUpgradeRequired, "websocket upgrade required"))
	}
	if r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
		return h.reject(w, errBody())
	}
	if h.isClosed() {
		h.reject(w, rejection(http.StatusServiceUnavailable, "shutting down"))
		return ErrHubClosed
	}
	data, addr, rej := h.admit(r, r.Header.Get("Origin"), r.Host, r.RemoteAddr)
	if rej != nil {
		return h.reject(w, rej)
	}
	var up ws.HTTPUpgrader
	u := upgrade{data: data, addr: addr}
	u.z, u.proto, up.Header = h.negotiateAll(r.Header.Values)
	if _, ok := w.(*connResponse); ok {
		// No server's WriteTimeout covers this connection: bound the
		// write of the answer as the own listener bounds the request.
		up.Timeout = h.opts.HandshakeTimeout
	}
	hw := &heldResponse{ResponseWriter: w}
	nc, rw, _, err := up.Upgrade(r, hw)
	if err != nil {
		// gobwas has answered: the request's fault (bad method, version
		// or key), or 500 if it could not hijack.
		h.freeSlot(nil, u.addr)
		h.refusal(gobwasStatus(err))
		if nc != nil {
			nc.SetWriteDeadline(time.Now().Add(h.opts.HandshakeTimeout))
			nc.Write(hw.resp)
			nc.Close()
		}
		return err
	}
	u.resp = hw.resp
	c := h.openedConn(u)
	var inReader []byte
	if rw.Reader != nil {
		inReader, _ = rw.Reader.Peek(rw.Reader.Buffered())
	}
	c.keepEarly(inReader, early)
	return h.adopt(c, nc, u.resp)
}

// heldResponse is the ResponseWriter through which the gobwas upgrader
// answers a request that net/http or another server read. Its Hijack takes
// the connection from the ResponseWriter it wraps, but gives the upgrader a
// writer into resp, so that the 101 can wait for OnOpen in the
// connection's queue (see Conn.holdLocked); a refusal the upgrader writes
// there is sent by answerRequest.
type heldResponse struct {
	http.ResponseWriter
	resp byteSink
}

// Hijack hijacks the wrapped ResponseWriter's connection and keeps its
// reader, which may hold bytes the client sent after the request.
func (w *heldResponse) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nc, rw, err
	}
	var rd *bufio.Reader
	if rw != nil {
		rd = rw.Reader
	}
	return nc, bufio.NewReadWriter(rd, bufio.NewWriterSize(&w.resp, 512)), nil
}

// A byteSink keeps what is written to it.
type byteSink []byte

func (s *byteSink) Write(p []byte) (int, error) {
	*s = append(*s, p...)
	return len(p), nil
}

// keepEarly hands the connection's owner the bytes the client sent right
// after its upgrade request, a then b, which a reader of another server's
// (net/http's, fasthttp's) or ServeConn's took from the socket: the owner
// parses them before it reads the socket (see Conn.openedOnce). They are
// copied into a pooled buffer.
func (c *Conn) keepEarly(a, b []byte) {
	if n := len(a) + len(b); n > 0 {
		c.reader().buf = append(append(pbytes.GetCap(n), a...), b...)
	}
}

// reject counts rej, sends it through w and returns it.
func (h *Hub) reject(w http.ResponseWriter, rej *UpgradeError) error {
	h.refusal(rej.Status)
	if cw, ok := w.(*connResponse); ok {
		cw.refuse(rej)
	} else {
		rej.serve(w)
	}
	return rej
}

// connResponse is the http.ResponseWriter through which ServeConn has the
// gobwas upgrader answer a request read by another server: its Hijack hands
// over the connection at once, which is all the upgrader asks of it, and
// rejections are written to the connection as the own listener writes them.
type connResponse struct {
	nc      net.Conn
	timeout time.Duration // for writing a rejection
}

// Header returns an empty header: a connResponse's answers are written to
// the connection, never through WriteHeader.
func (w *connResponse) Header() http.Header { return http.Header{} }

// Write reports that the connection is not net/http's to write to.
func (w *connResponse) Write([]byte) (int, error) { return 0, http.ErrHijacked }

// WriteHeader does nothing, as Write.
func (w *connResponse) WriteHeader(int) {}

// Hijack returns the connection, with no reader or writer: heldResponse
// supplies the writer, and the bytes another server read past the request
// are ServeConn's buffered argument.
func (w *connResponse) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return w.nc, nil, nil
}

// refuse writes rej to the connection, best effort within the timeout, and
// closes it.
func (w *connResponse) refuse(rej *UpgradeError) {
	w.nc.SetWriteDeadline(time.Now().Add(w.timeout))
	w.nc.Write(rej.response())
	w.nc.Close()
}
