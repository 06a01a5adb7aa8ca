//go:build linux

package core

import (
	"net"
	"syscall"
	"unsafe"
)

// Linux TCP states (include/net/tcp_states.h).
const (
	tcpFinWait1 = 4  // our FIN sent, not acknowledged
	tcpClose    = 7  // closed, reset included
	tcpLastAck  = 9  // as tcpFinWait1, the peer's FIN received first
	tcpClosing  = 11 // as tcpFinWait1, both FINs crossing
)

// unsent returns how many bytes c's socket still holds for the peer: sent
// but not acknowledged, or not sent yet. That is SIOCOUTQ (TIOCOUTQ, the
// same request), less a pending FIN, which is no byte; a reset connection,
// which delivers nothing more, has none. ok is false unless c is, or wraps
// through NetConn (as [*tls.Conn] and [sendConn] do), a [*net.TCPConn]
// whose socket is still open.
func unsent(c net.Conn) (n int, ok bool) {
	for range 8 { // unwrap, boundedly
		w, isWrapper := c.(interface{ NetConn() net.Conn })
		if !isWrapper {
			break
		}
		c = w.NetConn()
	}
	tc, isTCP := c.(*net.TCPConn)
	if !isTCP || tc == nil {
		return 0, false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var errno syscall.Errno
	cerr := rc.Control(func(fd uintptr) {
		var q int32
		if _, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCOUTQ, uintptr(unsafe.Pointer(&q))); errno != 0 {
			return
		}
		n = int(q)
		if n == 0 {
			return
		}
		// SIOCOUTQ counts an unacknowledged FIN as a byte, and after a
		// reset it stays where it was, forever, with the queue gone.
		var info syscall.TCPInfo
		size := uint32(syscall.SizeofTCPInfo)
		_, _, e := syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, syscall.IPPROTO_TCP, syscall.TCP_INFO,
			uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&size)), 0)
		if e != 0 || size < 1 {
			return
		}
		switch info.State {
		case tcpClose:
			n = 0
		case tcpFinWait1, tcpClosing, tcpLastAck: // our FIN is counted
			n--
		}
	})
	if cerr != nil || errno != 0 {
		return 0, false
	}
	return n, true
}
