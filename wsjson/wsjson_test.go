package wsjson_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/wshub/wshub"
	"github.com/wshub/wshub/wsjson"
)

type tick struct {
	Symbol string  `json:"symbol"`
	Price  float64 `json:"price"`
}

// serve starts a hub whose connections join "prices" and are handed to
// opened, and returns it with n connected clients.
func serve(t testing.TB, n int) (*wshub.Hub, []*wshub.Conn, []net.Conn) {
	opened := make(chan *wshub.Conn, n)
	hub, err := wshub.New(&wshub.Options{OnOpen: func(c *wshub.Conn) {
		c.Hub().Channel("prices").Subscribe(c)
		opened <- c
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(hub)
	t.Cleanup(func() {
		srv.Close()
		hub.Close()
	})
	var conns []*wshub.Conn
	var clients []net.Conn
	for range n {
		nc, _, _, err := ws.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		clients = append(clients, nc)
		conns = append(conns, <-opened)
	}
	return hub, conns, clients
}

func read(t testing.TB, nc net.Conn) string {
	t.Helper()
	b, err := wsutil.ReadServerText(nc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestWriteAndPublish(t *testing.T) {
	hub, conns, clients := serve(t, 3)
	const want = `{"symbol":"ACME","price":12.5}`
	if err := wsjson.Write(conns[0], tick{"ACME", 12.5}); err != nil {
		t.Fatal(err)
	}
	if got := read(t, clients[0]); got != want {
		t.Errorf("Write: got %s, want %s", got, want)
	}
	n, err := wsjson.Publish(hub.Channel("prices"), tick{"ACME", 12.5})
	if err != nil || n != 3 {
		t.Fatalf("Publish: %d, %v; want 3, nil", n, err)
	}
	for i, nc := range clients {
		if got := read(t, nc); got != want {
			t.Errorf("client %d: got %s, want %s", i, got, want)
		}
	}
	if n, _ := wsjson.PublishExcept(hub.Channel("prices"), "hi", conns[0]); n != 2 {
		t.Errorf("PublishExcept reached %d, want 2", n)
	}
	if n, _ := wsjson.Broadcast(hub, []int{1, 2}); n != 3 {
		t.Errorf("Broadcast reached %d, want 3", n)
	}
	if got := read(t, clients[0]); got != "[1,2]" {
		t.Errorf("the excepted client got %s first, want the broadcast", got)
	}
	if got := read(t, clients[1]); got != `"hi"` {
		t.Errorf("got %s, want \"hi\"", got)
	}
}

func TestEncodingErrorSendsNothing(t *testing.T) {
	hub, conns, clients := serve(t, 1)
	if err := wsjson.Write(conns[0], make(chan int)); err == nil {
		t.Error("Write of a channel: no error")
	}
	if n, err := wsjson.Publish(hub.Channel("prices"), func() {}); err == nil || n != 0 {
		t.Errorf("Publish of a func: %d, %v", n, err)
	}
	wsjson.Write(conns[0], "after")
	if got := read(t, clients[0]); got != `"after"` {
		t.Errorf("the first message is %s: something was sent for the errors", got)
	}
}

func BenchmarkPublish(b *testing.B) {
	hub, _, clients := serve(b, 10)
	for _, nc := range clients {
		go func() {
			for {
				if _, err := wsutil.ReadServerText(nc); err != nil {
					return
				}
			}
		}()
	}
	ch := hub.Channel("prices")
	v := tick{"ACME", 12.5}
	b.ReportAllocs()
	for b.Loop() {
		wsjson.Publish(ch, v)
	}
}

func ExamplePublish() {
	joined := make(chan struct{})
	hub, err := wshub.New(&wshub.Options{OnOpen: func(c *wshub.Conn) {
		c.Hub().Channel("prices").Subscribe(c)
		close(joined)
	}})
	if err != nil {
		log.Fatal(err)
	}
	defer hub.Close()
	srv := httptest.NewServer(hub)
	defer srv.Close()
	nc, _, _, err := ws.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	<-joined

	wsjson.Publish(hub.Channel("prices"), tick{Symbol: "ACME", Price: 12.5})
	msg, _ := wsutil.ReadServerText(nc)
	fmt.Println(string(msg))
	// Output: {"symbol":"ACME","price":12.5}
}
