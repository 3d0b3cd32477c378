package main

import (
	"encoding/json"
	"flag"
	"net/http"
	"time"

	"github.com/wshub/wshub"
)

// Presence: ws://ADDR/ws?room=R&user=U joins room R as user U (the user is
// optional: without one a connection counts as a connection only), and
// GET /presence?room=R answers who is in R on every node:
//
//	{"connections":3,"users":2,"members":["ann","bob"],"partial":false}
//
// A user with several tabs, on one node or several, is one user. A node
// that dies is forgotten by the others 15 ticks (-presence-tick, 1 s by
// default) after its last word; one that shuts down, at once.

// presenceTick is Options.PresenceInterval: how often the nodes tell each
// other who joined and left.
var presenceTick = flag.Duration("presence-tick", time.Second, "how often nodes tell each other who joined and left a room; a node silent for 15 ticks is forgotten")

// maxListed is how many users GET /presence lists per room; the counts are
// exact past it.
const maxListed = 100

// userOf returns the request's ?user=, "" if none, or an error for one
// longer than 64 bytes.
func userOf(r *http.Request) (string, error) {
	user := r.URL.Query().Get("user")
	if len(user) > 64 {
		return "", &wshub.UpgradeError{Status: http.StatusBadRequest, Reason: "?user= is at most 64 bytes"}
	}
	return user, nil
}

// roomPresence is Options.ChannelPresence: every room tracks who is in it.
func roomPresence(string) wshub.Presence { return wshub.Presence{MaxMembers: maxListed} }

// presenceHandler serves GET /presence?room=R.
func presenceHandler(hub *wshub.Hub) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		room := r.URL.Query().Get("room")
		if room == "" {
			http.Error(w, "GET /presence?room=NAME", http.StatusBadRequest)
			return
		}
		p := hub.Channel(room).Presence()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(struct {
			Connections int      `json:"connections"`
			Users       int      `json:"users"`
			Members     []string `json:"members"`
			Partial     bool     `json:"partial"`
		}{p.Connections, p.Users, p.Members, p.Partial})
	}
}
