#!/bin/sh
# Regenerates the fault tables of the broker adapters, broker/nats/FAULTS.md
# and broker/redis/FAULTS.md: a real nats-server and redis-server killed and
# frozen under a stream of publishes (brokertest.Faults). About three
# minutes; needs redis-server (./test.sh installs it).
set -e
cd "$(dirname "$0")"
(cd nats && go test -count=1 -run TestFaultTable -faults-md FAULTS.md)
(cd redis && go test -count=1 -run TestFaultTable -faults-md FAULTS.md)
