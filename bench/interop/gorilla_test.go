package interop

import (
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/wshub/wshub"
)

// TestGorillaCompression: gorilla's client, with compression enabled (no
// context takeover either way, as gorilla does it), negotiates
// permessage-deflate with a wshub echo through both doors and gets its
// compressed messages back.
func TestGorillaCompression(t *testing.T) {
	for _, own := range []bool{false, true} {
		t.Run(map[bool]string{false: "net/http", true: "own listener"}[own], func(t *testing.T) {
			hub, err := wshub.New(&wshub.Options{
				Compression: &wshub.Compression{},
				OnMessage:   func(c *wshub.Conn, typ wshub.MessageType, p []byte) { c.WriteMessage(typ, p) },
			})
			if err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			srv := &http.Server{Handler: hub}
			if own {
				go func() { done <- hub.Serve(ln) }()
			} else {
				go func() { done <- srv.Serve(ln) }()
			}
			defer func() {
				srv.Close()
				hub.Close()
				if err := <-done; err != nil && !errors.Is(err, wshub.ErrHubClosed) && !errors.Is(err, http.ErrServerClosed) {
					t.Errorf("serve: %v", err)
				}
			}()
			d := websocket.Dialer{EnableCompression: true}
			conn, resp, err := d.Dial("ws://"+ln.Addr().String()+"/ws", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if ext := resp.Header.Get("Sec-WebSocket-Extensions"); !strings.Contains(ext, "permessage-deflate") {
				t.Fatalf("no permessage-deflate negotiated: %q", ext)
			}
			for _, msg := range []string{strings.Repeat("a compressed echo, ", 200), "short"} {
				if err := conn.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
					t.Fatal(err)
				}
				_, got, err := conn.ReadMessage()
				if err != nil || string(got) != msg {
					t.Fatalf("echo of %d bytes: got %d bytes, %v", len(msg), len(got), err)
				}
			}
			if st := hub.Stats(); st.Deflating != 1 || st.Compressed == 0 {
				t.Errorf("stats: %d deflating, %d compressed", st.Deflating, st.Compressed)
			}
		})
	}
}
