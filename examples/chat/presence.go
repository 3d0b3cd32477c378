package main

import (
	"encoding/json"
	"strings"

	"github.com/wshub/wshub"
)

// Who is online: the global room and every room track their members'
// users (the chat names, Conn.SetUser), and once a second in which
// someone came, went or was renamed, the room gets an ONLINE event with
// who is in it:
//
//	{"event":"ONLINE","room":"go","online":2,"users":["ann","bob"]}
//
// The hub keeps the list; the chat keeps none of its own.

// maxListed is how many names an ONLINE event lists; "online" counts them
// all.
const maxListed = 100

// online is the ONLINE event.
type online struct {
	Event   string   `json:"event"`
	Room    string   `json:"room"`
	Online  int      `json:"online"`
	Users   []string `json:"users"`
	Partial bool     `json:"partial,omitempty"` // more than maxListed
}

// chatPresence is Options.ChannelPresence: the global room and every
// room; users' private channels have none.
func chatPresence(string) wshub.Presence { return wshub.Presence{MaxMembers: maxListed} }

// presence is Options.OnPresence: it tells the room who is in it now.
func (c *chat) presence(channel string, _, _ []string) {
	ch := c.hub.Channel(channel)
	p := ch.Presence()
	b, _ := json.Marshal(online{Event: "ONLINE", Room: strings.TrimPrefix(channel, "room:"), Online: p.Users, Users: p.Members, Partial: p.Partial})
	ch.Publish(wshub.Text, b)
}
