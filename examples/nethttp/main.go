// Command nethttp mounts a wshub hub in an existing net/http service, next
// to its REST routes, behind the service's own authentication:
//
//	go run ./examples/nethttp -addr 127.0.0.1:8081
//
// POST /login?user=ann sets a session cookie; GET /api/me tells who you
// are; GET /api/online counts connected users; POST /api/notify?user=ann
// sends ann's connections a message. /ws upgrades only authenticated
// requests, from the session cookie (browsers) or an "Authorization: Bearer"
// token (other clients): 401 without credentials, 403 with unknown ones or
// from another site. SIGTERM or Ctrl-C shuts the HTTP server and the hub
// down gracefully.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wshub/wshub"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8081", "address to listen on")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("service on http://%s", ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, ln); err != nil {
		log.Fatal(err)
	}
}

// sessions maps session tokens, from cookies or bearer headers, to users.
type sessions struct {
	mu      sync.Mutex
	byToken map[string]string
}

func (s *sessions) create(user string) string {
	b := make([]byte, 16)
	rand.Read(b)
	token := hex.EncodeToString(b)
	s.mu.Lock()
	s.byToken[token] = user
	s.mu.Unlock()
	return token
}

// user returns the user a request is authenticated as; ok is false when it
// carries no credentials at all.
func (s *sessions) user(r *http.Request) (user string, ok bool) {
	token := ""
	if ck, err := r.Cookie("session"); err == nil {
		token = ck.Value
	} else if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
		token = strings.TrimPrefix(h, "Bearer ")
	} else {
		return "", false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byToken[token], true
}

// newService returns the service's routes, the hub at /ws among them, and
// the hub, for the caller to shut down.
func newService() (http.Handler, *wshub.Hub, error) {
	auth := &sessions{byToken: make(map[string]string)}
	hub, err := wshub.New(&wshub.Options{
		// The hub's default origin check (same origin only) stays on: a
		// page of another site cannot use the visitor's cookie here.
		OnUpgrade: func(r *http.Request) (any, error) {
			user, ok := auth.user(r)
			switch {
			case !ok:
				return nil, &wshub.UpgradeError{Status: http.StatusUnauthorized, Reason: "log in first"}
			case user == "":
				return nil, &wshub.UpgradeError{Status: http.StatusForbidden, Reason: "unknown session"}
			}
			return user, nil
		},
		OnOpen: func(c *wshub.Conn) {
			c.SetUser(c.Data().(string))
			c.WriteMessage(wshub.Text, []byte(`{"event":"WELCOME","user":"`+c.Data().(string)+`"}`))
		},
	})
	if err != nil {
		return nil, nil, err
	}

	mux := http.NewServeMux()
	mux.Handle("GET /ws", hub)
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		user := r.URL.Query().Get("user")
		if user == "" {
			http.Error(w, "user required", http.StatusBadRequest)
			return
		}
		token := auth.create(user)
		http.SetCookie(w, &http.Cookie{Name: "session", Value: token, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
		writeJSON(w, map[string]string{"user": user, "token": token})
	})
	mux.HandleFunc("GET /api/me", func(w http.ResponseWriter, r *http.Request) {
		user, _ := auth.user(r)
		if user == "" {
			http.Error(w, "log in first", http.StatusUnauthorized)
			return
		}
		writeJSON(w, map[string]any{"user": user, "connections": hub.User(user).Len()})
	})
	mux.HandleFunc("GET /api/online", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]int{"connections": hub.Len()})
	})
	mux.HandleFunc("POST /api/notify", func(w http.ResponseWriter, r *http.Request) {
		msg, _ := json.Marshal(map[string]string{"event": "NOTICE", "message": r.URL.Query().Get("message")})
		n, _ := hub.User(r.URL.Query().Get("user")).Publish(wshub.Text, msg)
		writeJSON(w, map[string]int{"delivered_to": n})
	})
	return mux, hub, nil
}

// serve runs the service on ln until ctx ends, then shuts down gracefully.
func serve(ctx context.Context, ln net.Listener) error {
	handler, hub, err := newService()
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler: handler,
		// Bounded headers and header time: net/http's defaults let a
		// client hold a 1 MiB header for as long as it likes.
		MaxHeaderBytes:    16 << 10,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		hub.Close()
		return err
	case <-ctx.Done():
	}
	// Stop taking requests first, then close the WebSockets with 1001 and
	// wait for the peers, within one deadline.
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	if err := hub.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
