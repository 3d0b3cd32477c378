package main

import (
	"encoding/json"
	"slices"
	"testing"
	"time"
)

// onlineIn reads until an ONLINE event of room that lists want.
func (c *client) onlineIn(room string, want ...string) {
	c.t.Helper()
	c.onlineAll(map[string][]string{room: want})
}

// onlineAll reads until each room of want has had an ONLINE event that
// lists its users, in any order: the rooms of one tick come in no order.
func (c *client) onlineAll(want map[string][]string) {
	c.t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for len(want) > 0 {
		_, b, err := c.ReadMessage()
		if err != nil {
			c.t.Fatalf("no ONLINE event for %q: %v", want, err)
		}
		var e online
		if json.Unmarshal(b, &e) == nil && e.Event == "ONLINE" && slices.Equal(e.Users, want[e.Room]) && e.Online == len(want[e.Room]) {
			delete(want, e.Room)
		}
	}
}

// TestOnline: each room hears who is in it, by name, after joins, renames
// and leaves.
func TestOnline(t *testing.T) {
	url := startChat(t)
	ann := dial(t, url)
	ann.expect("NAME_SET", "name", "guest-")
	ann.send(`{"event":"SET_NAME","new_name":"ann"}`)
	ann.onlineIn("global", "ann")
	bob := dial(t, url)
	bob.expect("NAME_SET", "name", "guest-")
	bob.send(`{"event":"SET_NAME","new_name":"bob"}`)
	ann.onlineIn("global", "ann", "bob")
	ann.send(`{"event":"JOIN","room":"go"}`)
	ann.onlineIn("go", "ann")
	bob.send(`{"event":"JOIN","room":"go"}`)
	bob.onlineIn("go", "ann", "bob")
	bob.Close()
	ann.onlineAll(map[string][]string{"go": {"ann"}, "global": {"ann"}})
}
