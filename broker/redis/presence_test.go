package redisbroker

import (
	"testing"

	"github.com/wshub/wshub/brokertest"
)

// TestPresence checks presence across hubs on a real redis-server.
func TestPresence(t *testing.T) { brokertest.RunPresence(t, harness(t)) }
