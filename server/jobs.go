package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/store"

	"github.com/hibiken/asynq"
	"github.com/labstack/echo/v4"

	"github.com/staged-dev/staged/tasks"
)

// submitJob is POST /v1/jobs: validate everything before touching Redis,
// honour Idempotency-Key, create the record, enqueue generation 1, answer
// 202 (or, with ?wait, 200 once finished).
func (s *Server) submitJob(c echo.Context) error {
	wait, err := s.waitParam(c)
	if err != nil {
		return err
	}
	body, err := s.readSubmitBody(c.Request())
	if err != nil {
		return err
	}
	// One Redis deadline, from the body's end, for the submit's Redis
	// calls (the catalogue's, when its cache must be read, and the create).
	ctx := s.submitCtx(c.Request().Context())
	sub, err := s.readSubmission(ctx, body)
	if err != nil {
		return err
	}
	key, err := idempotencyKey(c.Request())
	if err != nil {
		return err
	}
	tenant := tenantOf(c)
	if wait > 0 {
		release, err := s.waits.take(c)
		if err != nil {
			return err
		}
		defer release()
	}

	j := store.NewJobWith(sub.pipeline.Name, sub.stages, sub.opts.Queue, time.Now().UTC())
	j.Digest = sub.digest
	if key != "" {
		prev, same, created, err := s.store.Idempotent(ctx, tenant, key, j.ID, sub.sum())
		if err != nil {
			return err
		}
		if !created {
			handled, err := s.repeatSubmit(ctx, c, prev, tenant, key, j.ID, sub.sum(), same, wait)
			if handled || err != nil {
				return err
			}
			// The key named a job that does not exist: it is j's now.
		}
	}
	var w *watcher
	if wait > 0 {
		w = s.hub.watch(j.ID)
		defer w.stop()
	}
	rec, err := s.create(ctx, j, tenant, key, sub)
	if err != nil {
		return err
	}
	s.metrics.jobSubmitted(j.Type)
	c.Response().Header()[echo.HeaderLocation] = []string{j.Links.Self} // the name is canonical
	if wait > 0 {
		raw, done, err := s.waitFinished(c.Request().Context(), w, j.ID, tenant, wait)
		switch {
		case done:
			return writeJSON(c, http.StatusOK, raw)
		case err == nil:
			return writeJSON(c, http.StatusAccepted, withWarnings(raw, sub.warnings))
		}
		// The job exists: a failed wait must not look like a failed submit.
		s.log.Warn("waiting for a submitted job", "job", j.ID, "err", err)
	}
	return writeJSON(c, http.StatusAccepted, withWarnings(rec, sub.warnings))
}

// withWarnings returns the job record rec with a "warnings" array of
// strings first, when there are any (w, a JSON array, is not nil): what
// the client should know about an accepted job (no live worker runs its
// pipeline yet). The record itself is unchanged; GET never shows warnings.
func withWarnings(rec []byte, w []byte) []byte {
	if len(w) == 0 || len(rec) < 2 || rec[0] != '{' {
		return rec
	}
	out := make([]byte, 0, len(rec)+len(w)+16)
	out = append(out, `{"warnings":`...)
	out = append(out, w...)
	if len(bytes.TrimSpace(rec[1:])) > 1 { // not "{}"
		out = append(out, ',')
	}
	return append(out, rec[1:]...)
}

// create writes the new job and enqueues its first task, and returns the
// record as written. On one node both are one script (the job is recorded
// and enqueued, or neither); on a Cluster the enqueue is asynq's own call
// after the record is written. When that enqueue fails, the record and
// the idempotency key are removed again: the client gets 503 and nothing
// was created. When the removal fails too (Redis is down), the client is
// told the job may still run: the record was indexed for the reconciler,
// which enqueues it (see store.Store.Create).
func (s *Server) create(ctx context.Context, j *api.Job, tenant, key string, sub *submission) ([]byte, error) {
	s.testHook("create")
	rec, enqueued, err := s.store.CreateQueued(ctx, j, tenant, sub.input, sub.opts)
	if err != nil {
		if key != "" {
			s.cleanup(func(ctx context.Context) { s.store.ForgetIdempotent(ctx, tenant, key) })
		}
		return nil, err
	}
	if !enqueued {
		s.testHook("enqueue")
		err = store.Enqueue(ctx, s.client, j, 1, sub.opts.MaxRetries, sub.opts.Timeout, sub.opts.Retention)
	}
	if err == nil {
		s.waker.Wake(store.TaskQueue(j))
		if n := s.cfg.WaitReplicas; n > 0 {
			// 202 only once a replica has the job: a failover cannot lose it.
			if err := s.store.WaitReplicated(ctx, j.ID, n, s.cfg.WaitTimeout); err != nil {
				return nil, err
			}
		}
		return rec, nil
	}
	msg := "the job could not be queued, so it was not created; try again shortly"
	s.cleanup(func(ctx context.Context) {
		if derr := s.store.Delete(ctx, j.ID); derr != nil {
			// The record stays, queued and without a task: a worker's
			// reconciler enqueues it within store.OrphanAfterDefault
			// (Store.Create indexed it), and a repeat with the same
			// Idempotency-Key enqueues it at once (repeatSubmit).
			s.log.Warn("deleting a job that could not be enqueued; a reconciler will enqueue it", "job", j.ID, "err", derr)
			msg = "the job could not be queued; it may still run once the job store is back: repeat the request with the same Idempotency-Key to learn its fate"
			if key == "" {
				msg = "the job could not be queued; it may still run once the job store is back (job " + j.ID + "): send an Idempotency-Key to make retries safe"
			}
			return
		}
		if derr := s.store.Untrack(ctx, j.ID); derr != nil {
			s.log.Debug("untracking a job that could not be enqueued", "job", j.ID, "err", derr)
		}
		if derr := s.store.Unindex(ctx, j, tenant); derr != nil {
			s.log.Warn("unlisting a job that could not be enqueued", "job", j.ID, "err", derr)
		}
		s.store.Unadmit(ctx, tenant, j.ID)
		if key != "" {
			s.store.ForgetIdempotent(ctx, tenant, key)
		}
	})
	return nil, &tasks.Error{Code: tasks.EUNAVAILABLE, Message: msg, Err: err}
}

// cleanup runs f with a fresh bounded context: the request's may be spent.
func (s *Server) cleanup(f func(ctx context.Context)) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RedisTimeout)
	defer cancel()
	f(ctx)
}

// getJob is GET /v1/jobs/:id: one HMGET, and the stored record written as
// it is. With ?wait it long-polls until the job is finished.
func (s *Server) getJob(c echo.Context) error {
	id := c.Param("id")
	if !api.ValidID(id) {
		return notFound(id)
	}
	if c.Request().URL.RawQuery != "" {
		wait, err := s.waitParam(c)
		if err != nil {
			return err
		}
		if wait > 0 {
			return s.getJobWait(c, id, wait)
		}
	}
	// The store's reader bounds the read by RedisTimeout (StartReads).
	ctx := c.Request().Context()
	if err := redisSpent(ctx); err != nil {
		return store.RedisError("store.Get "+id, err)
	}
	rec, err := s.store.GetRecord(ctx, id, tenantOf(c))
	if err != nil {
		return err
	}
	return writeJSONString(c, http.StatusOK, rec)
}

// jsonType is the Content-Type of a JSON answer, as writeJSON puts it in
// the header map: one slice shared by every answer (net/http only reads it).
var jsonType = []string{echo.MIMEApplicationJSON}

// writeJSON answers code with the JSON body b, as c.Blob does but without
// its Get and Set of the Content-Type (a canonicalisation and an
// allocation per answer): for the hot reads.
func writeJSON(c echo.Context, code int, b []byte) error {
	res := c.Response()
	res.Header()[echo.HeaderContentType] = jsonType // the name is canonical
	res.WriteHeader(code)
	_, err := res.Write(b)
	return err
}

// writeJSONString is writeJSON for a body held in a string (a record as
// the store read it): net/http's ResponseWriter writes a string as it is
// (io.StringWriter), where Echo's Response would need a []byte copy.
func writeJSONString(c echo.Context, code int, body string) error {
	res := c.Response()
	res.Header()[echo.HeaderContentType] = jsonType
	res.WriteHeader(code)
	n, err := io.WriteString(res.Writer, body)
	res.Size += int64(n)
	return err
}

func (s *Server) getJobWait(c echo.Context, id string, wait time.Duration) error {
	release, err := s.waits.take(c)
	if err != nil {
		return err
	}
	defer release()
	w := s.hub.watch(id)
	defer w.stop()
	raw, _, err := s.waitFinished(c.Request().Context(), w, id, tenantOf(c), wait)
	if err != nil {
		return err
	}
	return writeJSON(c, http.StatusOK, raw)
}

// cancelJob is POST /v1/jobs/:id/cancel: 202 with the record (canceled at
// once when it was queued or retrying, cancel_requested when running), 409
// when finished, 404 when unknown.
func (s *Server) cancelJob(c echo.Context) error {
	id := c.Param("id")
	if !api.ValidID(id) {
		return notFound(id)
	}
	ctx, cancel := s.redisCtx(c.Request().Context())
	defer cancel()
	res, err := s.store.Cancel(ctx, id, tenantOf(c))
	if err != nil {
		return err
	}
	s.metrics.jobCanceled(res.Job.Type)
	if res.Idle {
		s.deleteTask(res.Job, res.Gen)
	}
	rec, err := api.Marshal(res.Job)
	if err != nil {
		return err
	}
	return c.Blob(http.StatusAccepted, echo.MIMEApplicationJSON, rec)
}

// deleteTask removes a canceled job's pending asynq task in the background,
// best effort: if the task runs anyway, its claim finds the job done. (The
// inspector takes no context, so the response does not wait for it.)
func (s *Server) deleteTask(j *api.Job, gen int64) {
	q := store.TaskQueue(j)
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		err := s.inspector.DeleteTask(q, store.TaskID(j.ID, gen))
		if err != nil && !errors.Is(err, asynq.ErrTaskNotFound) && !errors.Is(err, asynq.ErrQueueNotFound) {
			s.log.Debug("deleting a canceled job's task", "job", j.ID, "err", err)
		}
	}()
}

// waitParam parses ?wait: a Go duration, 0 when absent, at most
// Config.MaxWait.
func (s *Server) waitParam(c echo.Context) (time.Duration, error) {
	if c.Request().URL.RawQuery == "" {
		return 0, nil // and echo parses no query into a map
	}
	v := c.QueryParam("wait")
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, invalid("wait", "wait must be a non-negative duration like \"10s\" (at most %s), not %q", s.cfg.MaxWait, v)
	}
	if d > s.cfg.MaxWait {
		d = s.cfg.MaxWait
	}
	return d, nil
}

// waitFinished returns the record of job id as soon as it is terminal
// (done=true), or the latest record when d has passed, the client has gone
// or the server is stopping. w must have been registered before the call,
// so no change is missed; each signal costs one read.
func (s *Server) waitFinished(ctx context.Context, w *watcher, id, tenant string, d time.Duration) (raw []byte, done bool, err error) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	after := s.hub.seq(id) // w is registered: a read from now on misses nothing
	for {
		rctx, cancel := s.redisCtx(ctx)
		spent := context.Cause(rctx) // set only when the limiter spent the budget
		cancel()
		if spent != nil {
			return nil, false, store.RedisError("wait "+id, spent)
		}
		var owner string
		raw, owner, err = s.reads.get(ctx, id, after)
		if err == nil && tenant != "" && owner != tenant {
			err = notFound(id)
		}
		if err != nil {
			return nil, false, err
		}
		if recordState(raw).Terminal() {
			return raw, true, nil
		}
		select {
		case <-w.C:
			after = s.hub.seq(id)
		case <-timer.C:
			select {
			case <-w.C: // a change raced with the timer: read it once more
				after = s.hub.seq(id)
				timer.Reset(0)
				continue
			default:
			}
			return raw, false, nil
		case <-ctx.Done():
			return raw, false, nil
		case <-s.stopping:
			return raw, false, nil
		}
	}
}

// recordState returns the state of a stored record.
func recordState(raw []byte) api.State {
	var r struct {
		State api.State `json:"state"`
	}
	_ = json.Unmarshal(raw, &r)
	return r.State
}
