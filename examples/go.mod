module github.com/wshub/wshub/examples

go 1.26.0

require (
	github.com/gorilla/websocket v1.5.3
	github.com/wshub/wshub v0.1.0
)

require (
	github.com/gobwas/httphead v0.1.0 // indirect
	github.com/gobwas/pool v0.2.1 // indirect
	github.com/gobwas/ws v1.5.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
)
