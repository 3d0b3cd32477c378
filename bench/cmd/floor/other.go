//go:build !linux

package main

import "log"

func main() { log.Fatal("floor: Linux only (epoll)") }
