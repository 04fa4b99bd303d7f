package server

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/store"
	"github.com/staged-dev/staged/tasks"
)

// retryJob is POST /v1/jobs/:id/retry: a failed or canceled job runs again
// from its first stage that did not succeed, as a new attempt of the same
// job (same id, record, event stream and listing entry). 202 with the
// queued record; 409 for a queued, running, retrying or succeeded job; 404
// for an unknown, expired or other tenant's one. If the new task cannot be
// enqueued, the job is put back as it was and the answer is 503.
//
// This is an explicit request by the job's owner: "cancel is final" holds
// for asynq's own retries, which never bring a canceled job back.
func (s *Server) retryJob(c echo.Context) error {
	id := c.Param("id")
	if !api.ValidID(id) {
		return notFound(id)
	}
	ctx, cancel := s.redisCtx(c.Request().Context())
	defer cancel()
	r, err := s.store.Rerun(ctx, id, tenantOf(c))
	if err != nil {
		return err
	}
	err = store.Enqueue(ctx, s.client, r.Job, r.Gen, r.Options.MaxRetries, r.Options.Timeout, r.Options.Retention)
	if err != nil {
		s.cleanup(func(ctx context.Context) {
			if rerr := s.store.Restore(ctx, r); rerr != nil {
				s.log.Warn("putting back a job whose rerun could not be enqueued", "job", id, "err", rerr)
			}
		})
		return &tasks.Error{Code: tasks.EUNAVAILABLE, Message: "the job could not be queued again; it is as it was; try again shortly", Err: err}
	}
	s.waker.Wake(store.TaskQueue(r.Job))
	s.log.Info("job queued again", "job", id, "gen", r.Gen, "was", string(r.Previous.State))
	rec, err := api.Marshal(r.Job)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, r.Job.Links.Self)
	return c.Blob(http.StatusAccepted, echo.MIMEApplicationJSON, rec)
}
