// Package harness is what every bench measurement shares: it starts the
// server under test in a process of its own and stops it (Start), reads
// what that process uses from /proc (CPU, RSS, WriteCalls) and what it
// holds from its /stats route or its -stats lines (Server.Memory), runs
// several servers in turn over several runs (Interleave), reduces the runs
// and the samples (Median, Slope), and says what machine it ran on
// (Machine, LoadAverage).
//
// The /proc readers are Linux's, as is every figure they feed.
package harness
