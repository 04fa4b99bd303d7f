package server

import (
	"fmt"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
)

// monitoringPath is where the asynqmon dashboard is mounted.
const monitoringPath = "/monitoring"

// newMonitor builds the asynqmon dashboard, read-only unless write is
// true. asynqmon panics on a connection option it does not support; that
// becomes an error here. Who may open it is decided by requireAdmin
// (auth.go).
//
// asynqmon shows every task's payload; staged's payloads are only the job
// id and its task generation (store.Payload), never the job's input.
func newMonitor(opt asynq.RedisConnOpt, write bool) (h *asynqmon.HTTPHandler, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("server: asynqmon: %v", r)
		}
	}()
	return asynqmon.New(asynqmon.Options{RootPath: monitoringPath, RedisConnOpt: opt, ReadOnly: !write}), nil
}
