package natsbroker

import (
	"testing"

	"github.com/wshub/wshub/brokertest"
)

// TestPresence checks presence across hubs on a real nats-server.
func TestPresence(t *testing.T) { brokertest.RunPresence(t, harness(t)) }
