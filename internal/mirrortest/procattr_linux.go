package mirrortest

import "syscall"

// serverProcAttr puts a server in its own process group, so a Ctrl-C
// meant for the test reaches it only through cleanup, and has the kernel
// kill it if the test binary dies without cleaning up (a -timeout panic).
func serverProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
