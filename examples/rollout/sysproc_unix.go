//go:build unix

package main

import "syscall"

// sysProcAttr puts a backend in its own process group, so that a Ctrl-C
// in the terminal reaches the demo only; the demo then kills its
// backends.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
