package wshub

import (
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"
)

// refusingOptions refuses upgrades as a service does: 401 without a user,
// 429 for a busy one, 403 for a banned one (a plain error), and admits one
// connection at most (MaxConns), so that the next gets 503.
func refusingOptions() *Options {
	return &Options{
		MaxConns: 1,
		OnUpgrade: func(r *http.Request) (any, error) {
			switch user := r.URL.Query().Get("as"); user {
			case "":
				return nil, &UpgradeError{Status: http.StatusUnauthorized, Reason: "log in",
					Header: http.Header{"WWW-Authenticate": {`Bearer realm="test"`}}}
			case "busy":
				return nil, &UpgradeError{Status: http.StatusTooManyRequests, Reason: "slow down"}
			case "banned":
				return nil, errors.New("banned")
			default:
				return user, nil
			}
		},
	}
}

// request returns an upgrade request for /ws?as=user (or /ws with user
// empty) to addr, changed by edit.
func request(addr, user string, edit func(string) string, extra ...string) string {
	req := upgradeRequest(addr, extra...)
	if user != "" {
		req = strings.Replace(req, "GET /ws ", "GET /ws?as="+user+" ", 1)
	}
	if edit != nil {
		req = edit(req)
	}
	return req
}

// TestRefusedByStatus checks that every refusal of an upgrade is counted in
// Stats.Refused by the status the client got, on every door: OnUpgrade's
// UpgradeErrors and plain errors, the origin check, malformed requests
// (the hub's and gobwas's answers), 426 and the 503 of MaxConns, which
// alone is counted in Rejected too.
func TestRefusedByStatus(t *testing.T) {
	t.Parallel()
	for _, d := range doors {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			h, addr := startHub(t, refusingOptions(), d)
			want := map[int]uint64{}
			refuse := func(req string, status int) {
				t.Helper()
				c := dial(t, addr)
				c.write([]byte(req))
				if got := c.readResponse(); got != status {
					t.Fatalf("status %d, want %d, for\n%s", got, status, req)
				}
				c.nc.Close()
				want[status]++
			}
			noKey := func(s string) string { return strings.Replace(s, "Sec-WebSocket-Key: "+testKey+"\r\n", "", 1) }
			version8 := func(s string) string {
				return strings.Replace(s, "Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8", 1)
			}
			noUpgrade := func(s string) string { return strings.Replace(s, "Upgrade: websocket\r\n", "", 1) }

			refuse(request(addr, "", nil), http.StatusUnauthorized)                                // OnUpgrade's UpgradeError
			refuse(request(addr, "busy", nil), http.StatusTooManyRequests)                         // the same, another status
			refuse(request(addr, "banned", nil), http.StatusForbidden)                             // OnUpgrade's plain error
			refuse(request(addr, "ann", nil, "Origin: http://evil.example"), http.StatusForbidden) // the origin check
			refuse(request(addr, "ann", noKey), http.StatusBadRequest)                             // gobwas: no key
			refuse(request(addr, "ann", version8), http.StatusUpgradeRequired)                     // gobwas: version 8
			refuse(request(addr, "ann", noUpgrade), http.StatusUpgradeRequired)                    // the hub: no Upgrade
			if d.own {
				// Requests the hub parses itself: a line ended by LF alone.
				refuse("GET /ws HTTP/1.1\nHost: "+addr+"\n\n", http.StatusBadRequest)
			}
			c := dial(t, addr)
			c.write([]byte(request(addr, "ann", nil)))
			if got := c.readResponse(); got != http.StatusSwitchingProtocols {
				t.Fatalf("ann's upgrade: status %d, want 101", got)
			}
			refuse(request(addr, "bob", nil), http.StatusServiceUnavailable) // MaxConns

			// gobwas answers before the hub counts on the net/http doors:
			// wait for the count to catch up with what the client read.
			deadline := time.Now().Add(10 * time.Second)
			for !maps.Equal(h.Stats().Refused, want) && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			st := h.Stats()
			if !maps.Equal(st.Refused, want) {
				t.Errorf("Stats.Refused = %v, want %v", st.Refused, want)
			}
			if st.Rejected != 1 {
				t.Errorf("Stats.Rejected = %d, want 1: the 503 of MaxConns only", st.Rejected)
			}
			b, err := json.Marshal(st)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), `"refused":{"400":`) || !strings.Contains(string(b), `"401":1`) {
				t.Errorf("Stats JSON has no refusals by status: %s", b)
			}
		})
	}
}

// TestRefusedShuttingDown checks that the 503 of a hub shutting down is
// counted in Refused but not in Rejected, which counts the hub's limits.
func TestRefusedShuttingDown(t *testing.T) {
	t.Parallel()
	h, addr := startHub(t, nil, door{name: "http"})
	c := dial(t, addr) // connected before Close, requested after
	h.Close()
	c.write([]byte(upgradeRequest(addr)))
	if got := c.readResponse(); got != http.StatusServiceUnavailable {
		t.Fatalf("status %d after Close, want 503", got)
	}
	st := h.Stats()
	if st.Refused[http.StatusServiceUnavailable] != 1 || st.Rejected != 0 {
		t.Errorf("Refused = %v, Rejected = %d; want one 503, not rejected for a limit", st.Refused, st.Rejected)
	}
}
