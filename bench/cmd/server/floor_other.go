//go:build !linux

package main

import (
	"errors"
	"net/http"
)

// floorLib needs Linux's system calls; elsewhere -lib floor fails.
type floorLib struct{}

func newFloor() (*floorLib, error) { return nil, errors.New("-lib floor needs Linux") }

func (*floorLib) echo() http.Handler                       { return nil }
func (*floorLib) raw() http.Handler                        { return nil }
func (*floorLib) room() (http.Handler, func(bool, []byte)) { return nil, nil }
