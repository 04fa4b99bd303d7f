package server

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/store"
	"github.com/staged-dev/staged/tasks"
)

// idemReclaimAfter is how old an Idempotency-Key naming a job that does not
// exist must be before a repeat takes it over (store.ReclaimIdempotent):
// longer than a submit can take between taking the key and writing the
// record, which its Redis deadline bounds.
func (s *Server) idemReclaimAfter() time.Duration {
	return max(2*s.cfg.RedisTimeout, 5*time.Second)
}

// repeatSubmit answers a submit whose Idempotency-Key was used before:
// 200 with the first job when the body is the same (after waiting, as
// asked, for it to finish), 409 otherwise. It never answers 200 for a job
// that will not run: a job still queued has its task enqueued again
// (a no-op when the task exists; it is missing when the first submit's
// enqueue failed in an outage).
//
// When the key names a job that does not exist, because the submit that
// took it failed before writing the record, or the job has expired, the
// key is handed to the new job id (once it is old enough that no submit
// can still be creating the job) and handled is false: the caller creates
// the job as a first submit. A younger key is a 409 to retry shortly.
func (s *Server) repeatSubmit(ctx context.Context, c echo.Context, prev, tenant, key, id, sum string, same bool, wait time.Duration) (handled bool, err error) {
	if !same {
		return true, tasks.Errorf(tasks.ECONFLICT, "this Idempotency-Key was already used with a different request body; use a new key for a different job")
	}
	var w *watcher
	if wait > 0 {
		w = s.hub.watch(prev) // before the read: no change is missed
		defer w.stop()
	}
	raw, err := s.store.GetRaw(ctx, prev, tenant)
	if tasks.ErrorCode(err) == tasks.ENOTFOUND {
		ok, err := s.store.ReclaimIdempotent(ctx, tenant, key, prev, id, sum, s.idemReclaimAfter())
		if err != nil {
			return true, err
		}
		if ok {
			s.log.Info("Idempotency-Key named a job that does not exist; it names the new job now", "job", id, "was", prev)
			return false, nil
		}
		c.Response().Header().Set(echo.HeaderRetryAfter, strconv.Itoa(ceilSeconds(s.idemReclaimAfter())))
		return true, tasks.Errorf(tasks.ECONFLICT, "this Idempotency-Key belongs to job %s, which is still being created; retry shortly", prev)
	}
	if err != nil {
		return true, err
	}
	if recordState(raw) == api.StateQueued {
		if err := s.ensureQueued(ctx, raw); err != nil {
			return true, err
		}
	}
	if wait > 0 {
		var werr error
		if raw, _, werr = s.waitFinished(c.Request().Context(), w, prev, tenant, wait); werr != nil {
			return true, werr
		}
	}
	c.Response().Header().Set(echo.HeaderLocation, api.LinksFor(prev).Self)
	return true, c.Blob(http.StatusOK, echo.MIMEApplicationJSON, raw)
}

// ensureQueued enqueues the first task of the queued job raw again, with
// the options it was submitted with. asynq refuses a second task with the
// same id, so this only adds the task when it is missing.
func (s *Server) ensureQueued(ctx context.Context, raw []byte) error {
	j, err := api.DecodeJob(raw)
	if err != nil {
		return err
	}
	bk, err := s.store.Bookkeeping(ctx, j.ID)
	if err != nil {
		return err
	}
	o := bk.Options
	if err := store.Enqueue(ctx, s.client, j, 1, o.MaxRetries, o.Timeout, o.Retention); err != nil {
		return &tasks.Error{Code: tasks.EUNAVAILABLE, Err: err,
			Message: "job " + j.ID + " exists but its task could not be queued; repeat the request with the same Idempotency-Key shortly"}
	}
	return nil
}

// testHook, when set by a test, is called at the named points of a submit
// ("create": the key is taken and the record about to be written;
// "enqueue": the record is written and the task about to be enqueued), so
// that a test can stop Redis exactly there.
func (s *Server) testHook(point string) {
	if s.hook != nil {
		s.hook(point)
	}
}
