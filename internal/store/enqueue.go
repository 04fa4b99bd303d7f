package store

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/catalog"
	"github.com/staged-dev/staged/tasks"

	"github.com/hibiken/asynq"
	"google.golang.org/protobuf/encoding/protowire"
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
// (On one node, Store.CreateQueued writes the first task itself, in the
// create script: see taskMessage.)
func Enqueue(ctx context.Context, c *asynq.Client, j *api.Job, gen int64, maxRetry int, timeout, retention time.Duration) error {
	maxRetry, timeout = taskLimits(maxRetry, timeout)
	t := asynq.NewTaskWithHeaders(j.Type, payload(j.ID, gen), map[string]string{retriesHeader: strconv.Itoa(maxRetry)})
	_, err := c.EnqueueContext(ctx, t,
		asynq.TaskID(TaskID(j.ID, gen)), asynq.Queue(TaskQueue(j)), asynq.MaxRetry(maxRetry+spareRetries),
		// The runner enforces the timeout itself, naming the stage; asynq's
		// deadline is only the backstop.
		asynq.Timeout(timeout+time.Minute), asynq.Retention(RetentionOr(retention)))
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		return nil
	}
	return redisErr("tasks.Enqueue "+j.ID, err)
}

// taskLimits resolves Enqueue's maxRetry (no fewer than 0) and timeout (0
// is tasks.DefaultJobTimeout).
func taskLimits(maxRetry int, timeout time.Duration) (int, time.Duration) {
	if timeout <= 0 {
		timeout = tasks.DefaultJobTimeout
	}
	return max(maxRetry, 0), timeout
}

// payload is the task payload of generation gen of job id, as
// json.Marshal(Payload{id, gen}) writes it (id is a UUID: nothing to
// escape).
func payload(id string, gen int64) []byte {
	return appendPayload(make([]byte, 0, 64), id, gen)
}

// appendPayload appends payload(id, gen) to b.
func appendPayload(b []byte, id string, gen int64) []byte {
	b = append(b, `{"id":"`...)
	b = append(b, id...)
	b = append(b, `","gen":`...)
	b = strconv.AppendInt(b, gen, 10)
	return append(b, '}')
}

// taskMessage returns the task message that asynq.Client.Enqueue writes
// for Enqueue's arguments: asynq's TaskMessage (the protobuf message of its
// internal/proto/asynq.proto, which an outside package cannot import),
// encoded field by field. Proto3 leaves out fields of zero value; the
// deadline is asynq's "none" (Unix 0), so it is one of them. asynq's
// Inspector and servers decode it as they decode their own
// (TestTaskMessageAsAsynqWrites compares the two).
func taskMessage(j *api.Job, gen int64, maxRetry int, timeout, retention time.Duration) []byte {
	maxRetry, timeout = taskLimits(maxRetry, timeout)
	const (
		fType      = 1
		fPayload   = 2
		fID        = 3
		fQueue     = 4
		fRetry     = 5
		fTimeout   = 8
		fRetention = 12
		fHeaders   = 15
	)
	b := make([]byte, 0, 256)
	str := func(num protowire.Number, v string) {
		if v != "" {
			b = protowire.AppendTag(b, num, protowire.BytesType)
			b = protowire.AppendString(b, v)
		}
	}
	varint := func(num protowire.Number, v int64) {
		if v != 0 {
			b = protowire.AppendTag(b, num, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(v))
		}
	}
	str(fType, j.Type)
	b = protowire.AppendTag(b, fPayload, protowire.BytesType)
	var pb [64]byte // on the stack
	b = protowire.AppendBytes(b, appendPayload(pb[:0], j.ID, gen))
	str(fID, TaskID(j.ID, gen))
	str(fQueue, TaskQueue(j))
	varint(fRetry, int64(int32(maxRetry+spareRetries)))
	varint(fTimeout, int64((timeout + time.Minute).Seconds()))
	varint(fRetention, int64(RetentionOr(retention).Seconds()))
	// headers: map<string, string>, one entry {1: key, 2: value}.
	v := strconv.Itoa(maxRetry)
	entry := protowire.SizeTag(1) + protowire.SizeBytes(len(retriesHeader)) + protowire.SizeTag(2) + protowire.SizeBytes(len(v))
	b = protowire.AppendTag(b, fHeaders, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(entry))
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, retriesHeader)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	return protowire.AppendString(b, v)
}

// asynqTaskKey, asynqPendingKey and asynqQueuesKey are asynq's keys of a
// task, of a queue's pending list and of the set of all queues (asynq's
// internal/base), which CreateQueued writes as asynq's enqueue does.
func asynqTaskKey(queue, id string) string { return "asynq:{" + queue + "}:t:" + id }
func asynqPendingKey(queue string) string  { return "asynq:{" + queue + "}:pending" }

// appendAsynqTaskKey appends asynqTaskKey(queue, id) to b.
func appendAsynqTaskKey(b []byte, queue, id string) []byte {
	b = append(b, "asynq:{"...)
	b = append(b, queue...)
	b = append(b, "}:t:"...)
	return append(b, id...)
}

const asynqQueuesKey = "asynq:queues"

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
	k := queueNameKey{q, j.Type, j.Digest}
	queueNames.RLock()
	name, ok := queueNames.m[k]
	queueNames.RUnlock()
	if !ok {
		name = catalog.QueueName(q, j.Type, j.Digest)
		queueNames.Lock()
		if len(queueNames.m) >= queueNamesMax {
			clear(queueNames.m)
		}
		queueNames.m[k] = name
		queueNames.Unlock()
	}
	return name
}

// queueNames remembers TaskQueue's names, which a submit needs three times
// and every submit of a pipeline shares: a name each time is an allocation.
// Its entries are the queues, pipelines and definitions in use, a few; it
// starts afresh should they ever pass queueNamesMax.
var queueNames = struct {
	sync.RWMutex
	m map[queueNameKey]string
}{m: map[queueNameKey]string{}}

const queueNamesMax = 1024

type queueNameKey struct{ queue, typ, digest string }
