package execstage

import "syscall"

// sysProcAttr puts the command in its own process group and has the kernel
// SIGKILL it if the worker dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
