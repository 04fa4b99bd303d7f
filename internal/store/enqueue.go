package store

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/catalog"
	"github.com/staged-dev/staged/tasks"

	"github.com/hibiken/asynq"
)

// DefaultQueue is the asynq queue jobs go to unless the submit names one.
const DefaultQueue = "default"

// Payload is the asynq task payload: which job, and which generation of its
// task this is. A task whose generation is no longer the job's is stale and
// finishes without doing anything.
type Payload struct {
	ID  string `json:"id"`
	Gen int64  `json:"gen"`
}

// DecodePayload parses a task payload. The form Enqueue writes,
// {"id":"UUID","gen":N}, is read without encoding/json (it was 4% of a
// worker's CPU in the drain bench); anything else goes through it.
func DecodePayload(b []byte) (Payload, error) {
	if p, ok := decodePayloadFast(b); ok {
		return p, nil
	}
	var p Payload
	err := json.Unmarshal(b, &p)
	if err == nil && !api.ValidID(p.ID) {
		err = errors.New("payload has no valid job id")
	}
	return p, err
}

// retriesHeader is the task header that holds the job's retries left when
// the task was enqueued (TaskRetries).
const retriesHeader = "retries"

// spareRetries is how many more retries asynq's MaxRetry gives a task than
// the job has left. asynq's recoverer archives a task whose worker died
// (its asynq lease expired) once the task's retry count reaches MaxRetry,
// and retries it otherwise; with the spare it always retries it, and that
// attempt finds the job taken over (superseded) or finished and completes,
// or resumes the job itself. The runner, not asynq, ends a job's retries:
// it fails the job for good, and asynq archives the task, after the last
// of the job's retries (TaskRetries); a worker that died or Redis trouble
// counts no retry.
const spareRetries = 1

// Enqueue puts generation gen of job j's task on its queue. maxRetry is the
// number of retries the job has left; timeout is the per-attempt job
// timeout. A task of that generation that exists already is not an error.
func Enqueue(ctx context.Context, c *asynq.Client, j *api.Job, gen int64, maxRetry int, timeout, retention time.Duration) error {
	b, _ := json.Marshal(Payload{ID: j.ID, Gen: gen})
	q := TaskQueue(j)
	if timeout <= 0 {
		timeout = tasks.DefaultJobTimeout
	}
	maxRetry = max(maxRetry, 0)
	t := asynq.NewTaskWithHeaders(j.Type, b, map[string]string{retriesHeader: strconv.Itoa(maxRetry)})
	_, err := c.EnqueueContext(ctx, t,
		asynq.TaskID(TaskID(j.ID, gen)), asynq.Queue(q), asynq.MaxRetry(maxRetry+spareRetries),
		// The runner enforces the timeout itself, naming the stage; asynq's
		// deadline is only the backstop.
		asynq.Timeout(timeout+time.Minute), asynq.Retention(RetentionOr(retention)))
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		return nil
	}
	return redisErr("tasks.Enqueue "+j.ID, err)
}

// TaskRetries returns the retries a task's job had left when Enqueue put
// the task on its queue: its header, or asynq's MaxRetry (maxRetry) for a
// task enqueued without it.
func TaskRetries(headers map[string]string, maxRetry int) int {
	if n, err := strconv.Atoi(headers[retriesHeader]); err == nil && n >= 0 {
		return n
	}
	return maxRetry
}

// decodePayloadFast parses exactly {"id":"<36-char id>","gen":<digits>}.
func decodePayloadFast(b []byte) (Payload, bool) {
	const pre, mid = `{"id":"`, `","gen":`
	n := len(pre) + 36 + len(mid)
	if len(b) < n+2 || len(b) > n+19 || string(b[:len(pre)]) != pre || string(b[len(pre)+36:n]) != mid || b[len(b)-1] != '}' {
		return Payload{}, false
	}
	id := string(b[len(pre) : len(pre)+36])
	digits := b[n : len(b)-1]
	if !api.ValidID(id) || (len(digits) > 1 && digits[0] == '0') {
		return Payload{}, false
	}
	var gen int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return Payload{}, false
		}
		gen = gen*10 + int64(c-'0')
	}
	return Payload{ID: id, Gen: gen}, true
}

// TaskQueue is the asynq queue of job j's tasks: one per queue, pipeline
// and definition digest (catalog.QueueName), so that only workers with the
// definition the job was accepted under take it. A job without a digest
// (created before the catalogue) uses its queue as it is.
func TaskQueue(j *api.Job) string {
	q := j.Queue
	if q == "" {
		q = DefaultQueue
	}
	if j.Digest == "" {
		return q
	}
	return catalog.QueueName(q, j.Type, j.Digest)
}
