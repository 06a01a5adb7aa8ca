package core

import (
	"net"
	"syscall"
)

// freezeAccepts stops the kernel from completing new connections on ln,
// without resetting those it has already queued: a socket filter that
// drops every packet makes it ignore new SYNs (their clients retry after
// a second and then find the listener closed: refused at connect) and the
// last ACK of handshakes under way. What is queued can then be accepted
// to the last connection, so that closing the listener resets no client
// that had connected. Where the kernel has no socket filters, it shrinks
// the accept queue to one connection instead: the kernel then drops the
// SYNs and last ACKs of the others while one is queued, which narrows the
// window without closing it. It reports whether the filter is attached.
func freezeAccepts(ln *net.TCPListener) bool {
	rc, err := ln.SyscallConn()
	if err != nil {
		return false
	}
	dropAll := []syscall.SockFilter{{Code: syscall.BPF_RET | syscall.BPF_K, K: 0}}
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		if ferr = syscall.AttachLsf(int(fd), dropAll); ferr != nil {
			_ = syscall.Listen(int(fd), 0)
		}
	}); err != nil {
		return false
	}
	return ferr == nil
}
