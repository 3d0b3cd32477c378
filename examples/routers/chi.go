package routers

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/wshub/wshub"
)

// Chi mounts hub on a chi router. chi's middlewares are net/http ones; one
// added with With runs after routing, so the room's URL parameter is known.
func Chi(hub *wshub.Hub, users Users) http.Handler {
	r := chi.NewRouter()
	r.With(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			user, ok := users.Authenticate(r)
			if !ok {
				w.Header().Set("WWW-Authenticate", `Bearer realm="rooms"`)
				http.Error(w, "log in", http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, WithSession(r, &Session{User: user, Room: chi.URLParam(r, "room")}))
		})
	}).Get("/rooms/{room}/ws", hub.ServeHTTP)
	return r
}
