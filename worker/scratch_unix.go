//go:build unix

package worker

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// killLeftovers SIGKILLs every process (of this user) whose environment
// has STAGED_SCRATCH in one of dirs.
func killLeftovers(dirs []string) {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile("/proc/" + p.Name() + "/environ")
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			v, ok := bytes.CutPrefix(kv, []byte("STAGED_SCRATCH="))
			if !ok {
				continue
			}
			for _, d := range dirs {
				if strings.HasPrefix(string(v), d+string(filepath.Separator)) {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
	}
}
