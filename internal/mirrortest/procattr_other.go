//go:build !linux

package mirrortest

import "syscall"

// serverProcAttr: elsewhere, only the process group; a server outlives a
// test binary that dies without cleaning up.
func serverProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
