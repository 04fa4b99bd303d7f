package cli

import (
	"strconv"
	"strings"

	"github.com/staged-dev/staged/internal/store"

	"github.com/staged-dev/staged/server"
)

// STAGED_QUEUES / --queues: the asynq queues, for the API (the queues a
// submit may name) and the worker (the queues it takes jobs from, by
// weight). Both must be given the same value.
var setQueues = setting{"queues", "STAGED_QUEUES"}

// Queue is one STAGED_QUEUES entry: a queue and its weight. A worker takes
// jobs from each queue in proportion to its weight (asynq's weighted
// priority; a lower-weight queue is never starved).
type Queue struct {
	Name   string
	Weight int
}

const (
	// QueuesDefault is STAGED_QUEUES when it is unset.
	QueuesDefault = store.DefaultQueue + "=1"
	// maxQueueWeight is the largest weight: asynq builds a list of
	// sum(weights) names on every dequeue, so weights are kept small.
	maxQueueWeight = 100
	// maxQueues is the most queues: a worker polls every one of them.
	maxQueues = 64
	// queuesExample is shown in the error messages.
	queuesExample = "critical=6,default=3,low=1"
)

func init() {
	flagHelp[setQueues] = "queues and their weights, name=weight,... (a bare name weighs 1); " +
		"the API accepts only these, the worker serves them (default " + QueuesDefault + ")"
}

// defaultQueues is the value of an unset STAGED_QUEUES.
func defaultQueues() []Queue { return []Queue{{Name: store.DefaultQueue, Weight: 1}} }

// parseQueues parses "name=weight,name2,..." (a bare name has weight 1),
// keeping the order given. Errors start with from.
func parseQueues(from, v string) ([]Queue, error) {
	var qs []Queue
	seen := map[string]bool{}
	for i, entry := range strings.Split(v, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue // "a,b," and "a, ,b" are fine
		}
		name, weight, hasWeight := strings.Cut(entry, "=")
		name, weight = strings.TrimSpace(name), strings.TrimSpace(weight)
		q := Queue{Name: name, Weight: 1}
		if !server.ValidQueueName(name) {
			return nil, invalid(from, "entry %d (%q): a queue name is 1 to 64 characters of a-z, 0-9, _ and -, as in %s",
				i+1, entry, queuesExample)
		}
		if hasWeight {
			n, err := strconv.Atoi(weight)
			if err != nil || n < 1 || n > maxQueueWeight {
				return nil, invalid(from, "queue %q: weight %q is not a whole number from 1 to %d, as in %s",
					name, weight, maxQueueWeight, queuesExample)
			}
			q.Weight = n
		}
		if seen[name] {
			return nil, invalid(from, "queue %q appears twice", name)
		}
		seen[name] = true
		qs = append(qs, q)
	}
	switch {
	case len(qs) == 0:
		return nil, invalid(from, "no queues: use name=weight,... as in %s, or leave it unset for %s",
			queuesExample, QueuesDefault)
	case len(qs) > maxQueues:
		return nil, invalid(from, "%d queues: at most %d", len(qs), maxQueues)
	}
	return qs, nil
}

// queueNames returns the queues' names, in order (server.Config.Queues).
func queueNames(qs []Queue) []string {
	names := make([]string, len(qs))
	for i, q := range qs {
		names[i] = q.Name
	}
	return names
}

// queueWeights returns the queues by name with their weights
// (worker.Config.Queues).
func queueWeights(qs []Queue) map[string]int {
	m := make(map[string]int, len(qs))
	for _, q := range qs {
		m[q.Name] = q.Weight
	}
	return m
}

// hasDefaultQueue reports whether qs holds the queue of submits that name
// none.
func hasDefaultQueue(qs []Queue) bool {
	for _, q := range qs {
		if q.Name == store.DefaultQueue {
			return true
		}
	}
	return false
}
