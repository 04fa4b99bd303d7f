//go:build unix

package execstage

import (
	"os"
	"os/exec"
	"runtime"
	"syscall"
)

// proc is a started command: its pipes and its end.
type proc struct {
	cmd    *exec.Cmd
	stdout *os.File // read ends
	stderr *os.File
	stdin  *os.File   // write end; closed after the input is written
	exited chan error // cmd.Wait's answer, once
}

// start starts cmd in its own process group with pipes for its standard
// streams, and writes in to its stdin in the background.
//
// On Linux the child also gets SIGKILL when the thread that started it
// exits (Pdeathsig). Go may end a thread only when a goroutine locked to it
// exits, so the goroutine that starts the command stays locked to its
// thread until the command has exited: the signal then comes only when the
// whole worker dies (kill -9 included). See golang.org/issue/27505.
func start(cmd *exec.Cmd, in []byte) (*proc, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		closeAll(inR, inW)
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		closeAll(inR, inW, outR, outW)
		return nil, err
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	cmd.SysProcAttr = sysProcAttr()
	p := &proc{cmd: cmd, stdout: outR, stderr: errR, stdin: inW, exited: make(chan error, 1)}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.exited <- cmd.Wait()
	}()
	err = <-started
	closeAll(inR, outW, errW) // the child has its own copies
	if err != nil {
		closeAll(inW, outR, errR)
		return nil, err
	}
	go func() {
		// A command that never reads its stdin gets EPIPE here once it
		// exits (or os.ErrClosed when the session closes the pipe): fine.
		_, _ = inW.Write(in)
		_ = inW.Close()
	}()
	return p, nil
}

// signal sends sig to the command's whole process group. After the group
// is gone it does nothing.
func (p *proc) signal(sig syscall.Signal) {
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
}

// closePipes closes the parent's ends, which unblocks readers and the
// input writer.
func (p *proc) closePipes() {
	closeAll(p.stdin, p.stdout, p.stderr)
}

func closeAll(fs ...*os.File) {
	for _, f := range fs {
		_ = f.Close()
	}
}
