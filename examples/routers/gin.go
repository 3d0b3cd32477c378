package routers

import (
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/wshub/wshub"
)

// Gin mounts hub on a gin engine. The middleware aborts with 401 or puts the
// session in the request's context (not gin's own c.Set, which the hub
// cannot see); gin.WrapH hands the request, and gin's writer, which can be
// hijacked, to the hub.
func Gin(hub *wshub.Hub, users Users) http.Handler {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	auth := func(c *gin.Context) {
		user, ok := users.Authenticate(c.Request)
		if !ok {
			c.Header("WWW-Authenticate", `Bearer realm="rooms"`)
			c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": "log in"})
			return
		}
		c.Request = WithSession(c.Request, &Session{User: user, Room: c.Param("room")})
		c.Next()
	}
	r.GET("/rooms/:room/ws", auth, gin.WrapH(hub))
	return r
}
