package routers

import (
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/wshub/wshub"
)

// Echo mounts hub on an echo server. The route's middleware sees the path
// parameter; it returns echo's 401 error or passes the session on in the
// request's context, and echo.WrapHandler hands the request to the hub,
// with echo's response, which can be hijacked.
func Echo(hub *wshub.Hub, users Users) http.Handler {
	e := echo.New()
	e.HideBanner = true
	auth := func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			user, ok := users.Authenticate(c.Request())
			if !ok {
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="rooms"`)
				return echo.NewHTTPError(http.StatusUnauthorized, "log in")
			}
			c.SetRequest(WithSession(c.Request(), &Session{User: user, Room: c.Param("room")}))
			return next(c)
		}
	}
	e.GET("/rooms/:room/ws", echo.WrapHandler(hub), auth)
	return e
}
