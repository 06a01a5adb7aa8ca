//go:build !linux

package core

import "net"

// freezeAccepts cannot stop new connections here: see the Linux version.
func freezeAccepts(*net.TCPListener) bool { return false }
