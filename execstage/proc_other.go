//go:build !unix

package execstage

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
)

type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *os.File
	exited         chan error
}

func start(cmd *exec.Cmd, in []byte) (*proc, error) {
	return nil, errors.New("exec stages need Linux or another Unix")
}

func (p *proc) signal(sig syscall.Signal) {}

func (p *proc) closePipes() {}
