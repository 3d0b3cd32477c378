package load

import (
	"context"
	"crypto/tls"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gobwas/ws"
	"github.com/wshub/wshub"
)

func TestDialTLS(t *testing.T) {
	hub, err := wshub.New(&wshub.Options{
		OnMessage: func(c *wshub.Conn, typ wshub.MessageType, p []byte) { c.WriteMessage(typ, p) },
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(hub) // its own self-signed certificate
	defer func() { srv.Close(); hub.Close() }()
	url := "wss" + strings.TrimPrefix(srv.URL, "https")
	conns, lat, err := DialTLS(context.Background(), url, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer CloseAll(conns)
	for i, c := range conns {
		if _, ok := c.Conn.(*tls.Conn); !ok || lat[i] <= 0 {
			t.Fatalf("conn %d: %T, %v", i, c.Conn, lat[i])
		}
		c.Write(Frame(ws.OpText, []byte("over tls")))
		p, err := c.ReadMessage(nil)
		if err != nil || string(p) != "over tls" {
			t.Fatalf("conn %d: %q %v", i, p, err)
		}
	}
	// The dialer refuses a ws:// server for a wss:// URL.
	plain := httptest.NewServer(hub)
	defer plain.Close()
	if _, _, err := DialTLS(context.Background(), "wss"+strings.TrimPrefix(plain.URL, "http"), 1, nil); err == nil {
		t.Error("DialTLS upgraded without TLS")
	}
}
