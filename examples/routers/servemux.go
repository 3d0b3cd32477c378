package routers

import (
	"net/http"

	"github.com/wshub/wshub"
)

// ServeMux mounts hub on net/http's ServeMux. The pattern names the method
// and a path wildcard; the middleware reads it with r.PathValue, which the
// mux sets before it calls the handler.
func ServeMux(hub *wshub.Hub, users Users) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /rooms/{room}/ws", authenticate(users, hub))
	return mux
}

// authenticate is a net/http middleware, as chi uses too: it answers 401
// itself, or passes the request on with its session.
func authenticate(users Users, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, ok := users.Authenticate(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="rooms"`)
			http.Error(w, "log in", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, WithSession(r, &Session{User: user, Room: r.PathValue("room")}))
	})
}
