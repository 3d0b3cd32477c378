package routers_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/wshub/wshub"
	"github.com/wshub/wshub/examples/routers"
)

var recipes = []struct {
	name  string
	mount func(*wshub.Hub, routers.Users) http.Handler
}{
	{"servemux", routers.ServeMux},
	{"chi", routers.Chi},
	{"gin", routers.Gin},
	{"echo", routers.Echo},
}

var users = routers.Users{"t-ann": "ann", "t-bob": "bob", "t-cy": "cy"}

// TestRecipes mounts one hub under all four routers at once, each on its
// own server, and checks through each: the middleware's 401, the session it
// hands to OnUpgrade (user and room from the router's path parameter), and
// the room chat, with members connected through different routers.
func TestRecipes(t *testing.T) {
	t.Parallel()
	hub, err := routers.NewHub()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hub.Close() })
	urls := make(map[string]string)
	for _, r := range recipes {
		srv := httptest.NewServer(r.mount(hub, users))
		t.Cleanup(srv.Close)
		urls[r.name] = "ws" + strings.TrimPrefix(srv.URL, "http")
	}
	for _, r := range recipes {
		t.Run(r.name, func(t *testing.T) {
			base := urls[r.name]
			// No token, a wrong one: the middleware answers, not the hub.
			for _, u := range []string{base + "/rooms/a/ws", base + "/rooms/a/ws?token=nope"} {
				_, _, _, err := ws.Dial(context.Background(), u)
				var status ws.StatusError
				if !errors.As(err, &status) || int(status) != http.StatusUnauthorized {
					t.Errorf("%s: got %v, want 401", u, err)
				}
			}
			// ann and bob in room "lobby-<router>" through this router, cy
			// in the same room through the next router, and bob's message
			// reaching both, but not bob.
			room := "lobby-" + r.name
			other := urls[recipes[(indexOf(r.name)+1)%len(recipes)].name]
			ann := dial(t, base+"/rooms/"+room+"/ws", "t-ann", true)
			bob := dial(t, base+"/rooms/"+room+"/ws?token=t-bob", "", false)
			cy := dial(t, other+"/rooms/"+room+"/ws", "t-cy", true)
			elsewhere := dial(t, base+"/rooms/elsewhere-"+r.name+"/ws", "t-ann", true)
			waitFor(t, func() bool { return members(hub, room) == 3 })
			for c := range hub.Channel(room).All() {
				if s := c.Data().(*routers.Session); s.Room != room {
					t.Errorf("session %+v, want room %q from the path", s, room)
				}
			}
			if err := wsutil.WriteClientText(bob, []byte("hi")); err != nil {
				t.Fatal(err)
			}
			for _, c := range []net.Conn{ann, cy} {
				expect(t, c, "bob: hi")
			}
			wsutil.WriteClientText(ann, []byte("and you"))
			expect(t, bob, "ann: and you") // not "bob: hi", its own
			elsewhere.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if p, err := wsutil.ReadServerText(elsewhere); err == nil {
				t.Errorf("a member of another room got %q", p)
			}
		})
	}
}

// TestHubRefusesUnauthenticatedRoutes mounts the hub without the
// middleware: OnUpgrade refuses what no middleware vouched for.
func TestHubRefusesUnauthenticatedRoutes(t *testing.T) {
	t.Parallel()
	hub, err := routers.NewHub()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hub.Close() })
	srv := httptest.NewServer(hub)
	t.Cleanup(srv.Close)
	_, _, _, err = ws.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws?token=t-ann")
	var status ws.StatusError
	if !errors.As(err, &status) || int(status) != http.StatusUnauthorized {
		t.Errorf("got %v, want 401 from OnUpgrade", err)
	}
}

func indexOf(name string) int {
	for i, r := range recipes {
		if r.name == name {
			return i
		}
	}
	return -1
}

// dial upgrades to url with a bearer token, or with the token in the URL.
func dial(t *testing.T, url, token string, bearer bool) net.Conn {
	t.Helper()
	d := ws.Dialer{}
	if bearer {
		d.Header = ws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Bearer " + token}})
	}
	nc, _, _, err := d.Dial(context.Background(), url)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

func expect(t *testing.T, nc net.Conn, want string) {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	p, err := wsutil.ReadServerText(nc)
	if err != nil || string(p) != want {
		t.Fatalf("got %q, %v; want %q", p, err, want)
	}
}

func members(hub *wshub.Hub, room string) int {
	n := 0
	for range hub.Channel(room).All() {
		n++
	}
	return n
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
