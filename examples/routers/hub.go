// Package routers shows one wshub hub mounted under the common Go routers,
// each recipe in its own file, each with an authentication middleware that
// runs before the hub's OnUpgrade:
//
//   - servemux.go: net/http's ServeMux with a method and path pattern
//   - chi.go:      github.com/go-chi/chi/v5
//   - gin.go:      github.com/gin-gonic/gin
//   - echo.go:     github.com/labstack/echo/v4
//
// Every recipe serves GET /rooms/{room}/ws. Its middleware authenticates
// the request (a bearer token, or ?token= for browsers, which cannot set
// headers on a WebSocket), answers 401 itself when that fails, and stores a
// *Session with the user and the room, read from the router's path
// parameter, in the request's context. The hub's OnUpgrade takes the
// session from there and returns it as the connection's data; it never
// needs to know which router ran. routers_test.go runs the four of them
// against one hub.
package routers

import (
	"context"
	"net/http"
	"strings"

	"github.com/wshub/wshub"
)

// Session is what the middleware learned about an upgrade request, kept as
// the connection's data (Conn.Data).
type Session struct {
	User string
	Room string
}

type sessionKey struct{}

// WithSession returns r with s in its context.
func WithSession(r *http.Request, s *Session) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), sessionKey{}, s))
}

// SessionFrom returns the session the middleware stored, or nil.
func SessionFrom(ctx context.Context) *Session {
	s, _ := ctx.Value(sessionKey{}).(*Session)
	return s
}

// Users maps tokens to user names: the application's own authentication.
type Users map[string]string

// Authenticate returns the user of the request's bearer token, or of its
// token query parameter.
func (u Users) Authenticate(r *http.Request) (string, bool) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		token = r.URL.Query().Get("token")
	}
	user, ok := u[token]
	return user, ok && token != ""
}

// NewHub returns a room chat hub: OnUpgrade takes the middleware's session
// (and refuses a request that has none, which means a route was mounted
// without the middleware), OnOpen joins the session's room, and a message
// goes to everyone else in the room, prefixed with its sender's name.
func NewHub() (*wshub.Hub, error) {
	return wshub.New(&wshub.Options{
		OnUpgrade: func(r *http.Request) (any, error) {
			s := SessionFrom(r.Context())
			if s == nil {
				return nil, &wshub.UpgradeError{Status: http.StatusUnauthorized, Reason: "not authenticated"}
			}
			return s, nil
		},
		OnOpen: func(c *wshub.Conn) {
			c.Hub().Channel(c.Data().(*Session).Room).Subscribe(c)
		},
		OnMessage: func(c *wshub.Conn, typ wshub.MessageType, data []byte) {
			s := c.Data().(*Session)
			msg := append([]byte(s.User+": "), data...)
			c.Hub().Channel(s.Room).PublishExcept(typ, msg, c)
		},
	})
}
