// Package wshubfiber3 mounts a wshub.Hub on a Fiber v3 app:
//
//	app.Get("/ws", wshubfiber3.Handler(hub))
//
// It works as wshubfiber does for Fiber v2 (see there: the socket leaves
// fasthttp at once, Locals reach OnUpgrade through r.Context(), stop the app
// before the hub); only Fiber's handler type differs.
package wshubfiber3

import (
	"github.com/gofiber/fiber/v3"
	"github.com/wshub/wshub"
	wshubfiber "github.com/wshub/wshub/adapters/fiber"
)

// Handler returns a Fiber v3 handler that upgrades the request to a
// WebSocket connection of hub (see wshubfiber.Upgrade).
func Handler(hub *wshub.Hub) fiber.Handler {
	return func(c fiber.Ctx) error {
		wshubfiber.Upgrade(hub, c.RequestCtx())
		return nil
	}
}
