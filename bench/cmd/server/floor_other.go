//go:build !linux

package main

import (
	"log"
	"net/http"
)

// floorLib needs Linux's system calls; elsewhere -lib floor fails.
type floorLib struct{}

func newFloor() *floorLib {
	log.Fatal("-lib floor needs Linux")
	return nil
}

func (*floorLib) echo() http.Handler                       { return nil }
func (*floorLib) room() (http.Handler, func(bool, []byte)) { return nil, nil }
