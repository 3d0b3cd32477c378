package main

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/wshub/wshub"
)

// Users and presence, for the presence scenario (wshub only): with -users,
// ws://ADDR/room?user=U and /probe?user=U join channel "room" or "probe"
// as user U (Conn.SetUser); with -presence too, every channel tracks who
// is in it, and GET /presence?channel=C answers {"connections":N,
// "users":N} for the whole cluster.

// presenceMember is what OnUpgrade keeps of a connection: its channel and
// its user.
type presenceMember struct{ channel, user string }

// withUsers has opts file each connection under its user, and presence
// track every channel with cfg.presence.
func withUsers(opts *wshub.Options, cfg config) {
	if cfg.presence {
		opts.ChannelPresence = func(string) wshub.Presence { return wshub.Presence{MaxMembers: 100} }
		opts.PresenceInterval = cfg.presenceTick
	}
	opts.OnUpgrade = func(r *http.Request) (any, error) {
		return presenceMember{strings.TrimPrefix(r.URL.Path, "/"), r.URL.Query().Get("user")}, nil
	}
	opts.OnOpen = func(c *wshub.Conn) {
		m := c.Data().(presenceMember)
		c.SetUser(m.user)
		c.Hub().Channel(m.channel).Subscribe(c)
	}
}

// presenceRoutes adds /probe and /presence to mux.
func (l *wshubLib) presenceRoutes(mux *http.ServeMux) {
	mux.Handle("/probe", l.hub)
	mux.HandleFunc("/presence", func(w http.ResponseWriter, r *http.Request) {
		conns, users := l.hub.Channel(r.URL.Query().Get("channel")).PresenceCount()
		json.NewEncoder(w).Encode(map[string]int{"connections": conns, "users": users})
	})
}
