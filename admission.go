package wshub

import (
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Per-client admission: Options.MaxConnsPerAddr and UpgradesPerAddr, counted
// by client address (Options.ClientAddr). They are checked where MaxConns
// is, with the hub's other limits, before OnUpgrade and before the
// connection that would be opened exists. On the own listener the request
// has been read by then: so that an address cannot hold sockets that send
// nothing for HandshakeTimeout, its unfinished upgrades are counted too,
// from the accept, at most MaxConnsPerAddr of them (see
// Hub.admitAccepted), unless ClientAddr names the address from the
// request.
//
// The table of addresses is bounded by maxAddrs: an attacker with many
// addresses cannot grow it past that. An address's entry goes once it has
// no connection, no unfinished upgrade and its upgrade bucket is full
// again; when the table is full of addresses that still count, a new one
// is refused with 503.

// maxAddrs bounds the client addresses the per-address limits remember.
const maxAddrs = 1 << 16

// maxAddrKey bounds the bytes of a key the table keeps as it came: an
// IPv6 /64 takes at most 43; a longer key is hashed.
const maxAddrKey = 64

// evictScan is how many entries a full table looks at, from a random
// place, for one it may forget: a constant cost per new address.
const evictScan = 64

// addrLimits is the hub's per-address admission state.
type addrLimits struct {
	maxConns int32   // per address; 0: none
	rate     float64 // upgrades per second per address; 0: none
	burst    float64 // the bucket's size

	mu    sync.Mutex
	addrs map[string]*addrState
	// byConn, with maxConns, says whose connection each is, or whose
	// unfinished upgrade (the own listener's, marked ownPending).
	byConn map[*Conn]*addrState
}

// addrState is one client address's account: its open connections and its
// token bucket of upgrades.
type addrState struct {
	key     string
	conns   int32
	pending int32 // unfinished upgrades on the own listener, at most maxConns
	tokens  float64
	last    int64 // Unix nanoseconds of the bucket's last refill
}

func newAddrLimits(o *Options) *addrLimits {
	if o.MaxConnsPerAddr <= 0 && o.UpgradesPerAddr <= 0 {
		return nil
	}
	a := &addrLimits{
		maxConns: int32(o.MaxConnsPerAddr),
		rate:     o.UpgradesPerAddr,
		burst:    math.Max(1, math.Ceil(o.UpgradesPerAddr)),
		addrs:    make(map[string]*addrState),
	}
	if a.maxConns > 0 {
		a.byConn = make(map[*Conn]*addrState)
	}
	return a
}

// addrKey returns the key the per-address limits count remote by: the IP
// of a host:port, an IPv6 address by its /64 (what one subscriber gets), or
// remote itself if it is neither (hashed past maxAddrKey bytes).
func addrKey(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip := net.ParseIP(host)
	switch {
	case ip == nil && len(host) > maxAddrKey:
		// Not an address (a ClientAddr that returns a header as it
		// came, say): the table keeps a hash of it, not what a client
		// chose to send.
		return "#" + strconv.FormatUint(hashUser(host), 16)
	case ip == nil:
		return host
	case ip.To4() != nil:
		return ip.To4().String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// clientKey returns the key of an upgrade request from remote: by
// Options.ClientAddr if set (r is then never nil), else by remote.
func (h *Hub) clientKey(r *http.Request, remote string) string {
	if f := h.opts.ClientAddr; f != nil {
		return addrKey(f(r))
	}
	return addrKey(remote)
}

// admit counts an upgrade from key and returns the address's account, to
// be bound to the connection, or the rejection: 429 with Retry-After past a
// limit, 503 when the table is full.
func (a *addrLimits) admit(key string) (*addrState, *UpgradeError) {
	now := time.Now().UnixNano()
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.stateLocked(key, now)
	if st == nil {
		return nil, rejection(http.StatusServiceUnavailable, "too many client addresses")
	}
	if a.maxConns > 0 && st.conns >= a.maxConns {
		return nil, tooMany("too many connections from this address", time.Second)
	}
	if a.rate > 0 {
		st.refill(now, a.rate, a.burst)
		if st.tokens < 1 {
			wait := time.Duration((1 - st.tokens) / a.rate * float64(time.Second))
			return nil, tooMany("too many upgrades from this address", wait)
		}
		st.tokens--
	}
	if a.maxConns > 0 {
		st.conns++
	}
	return st, nil
}

// stateLocked returns key's account, made if need be; nil if the table is
// full of addresses that still count.
func (a *addrLimits) stateLocked(key string, now int64) *addrState {
	st := a.addrs[key]
	if st == nil {
		if len(a.addrs) >= maxAddrs && !a.evictLocked(now) {
			return nil
		}
		st = &addrState{key: key, tokens: a.burst, last: now}
		a.addrs[key] = st
	}
	return st
}

// startPending counts c, an own-listener connection whose request has not
// arrived, among key's unfinished upgrades, unless key has maxConns of
// them already (or the table is full); it reports whether it did. Open
// connections are not counted here: admit counts them, with the request.
func (a *addrLimits) startPending(c *Conn, key string) bool {
	if a.maxConns <= 0 {
		return true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.stateLocked(key, time.Now().UnixNano())
	if st == nil || st.pending >= a.maxConns {
		return false
	}
	st.pending++
	a.byConn[c] = st
	return true
}

// endPending uncounts c's unfinished upgrade: its request arrived, or it
// ended without one. Only a connection marked ownPending has one: byConn
// holds what admit bound otherwise.
func (a *addrLimits) endPending(c *Conn) {
	if a == nil || a.maxConns <= 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if st := a.byConn[c]; st != nil {
		st.pending--
		delete(a.byConn, c)
	}
}

// refill adds the tokens earned since the last refill.
func (st *addrState) refill(now int64, rate, burst float64) {
	st.tokens = math.Min(burst, st.tokens+float64(now-st.last)/1e9*rate)
	st.last = now
}

// evictLocked forgets an address that no longer counts: no connection, a
// full bucket. It looks at evictScan entries at most, and reports whether
// it found one.
func (a *addrLimits) evictLocked(now int64) bool {
	n := 0
	for k, st := range a.addrs { // map iteration starts at a random place
		if st.conns == 0 && st.pending == 0 {
			if a.rate > 0 {
				st.refill(now, a.rate, a.burst)
			}
			if a.rate <= 0 || st.tokens >= a.burst {
				delete(a.addrs, k)
				return true
			}
		}
		if n++; n == evictScan {
			return false
		}
	}
	return false
}

// bind records that c is the connection st admitted.
func (a *addrLimits) bind(c *Conn, st *addrState) {
	if a == nil || st == nil || a.maxConns <= 0 {
		return
	}
	a.mu.Lock()
	a.byConn[c] = st
	a.mu.Unlock()
}

// release gives back the connection st admitted, which ended or never
// opened; c, if not nil, is unbound.
func (a *addrLimits) release(c *Conn, st *addrState) {
	if a == nil || a.maxConns <= 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if c != nil {
		st = a.byConn[c]
		delete(a.byConn, c)
	}
	if st != nil {
		st.conns--
	}
}

// len returns how many addresses the table holds.
func (a *addrLimits) len() int {
	if a == nil {
		return 0
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.addrs)
}

// tooMany returns a 429 rejection that asks the client to wait d.
func tooMany(reason string, d time.Duration) *UpgradeError {
	secs := max(1, int(math.Ceil(d.Seconds())))
	return &UpgradeError{
		Status: http.StatusTooManyRequests,
		Reason: reason,
		Header: http.Header{"Retry-After": {strconv.Itoa(secs)}},
	}
}
