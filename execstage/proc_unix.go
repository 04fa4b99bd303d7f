//go:build unix && !linux

package execstage

import "syscall"

// sysProcAttr puts the command in its own process group. Only Linux can
// have the kernel kill it when the worker dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
