package worker

import (
	"context"
	"log/slog"
	"sync"
)

// jobLog returns the worker's logger with the job's id. slog's handlers
// format an attribute when it is added (Logger.With), not when a line is
// written; most attempts write no line at the warn level, so the id is
// added on the first line the handler is to write: two allocations per
// attempt, where With took six and formatted the id.
func (w *Worker) jobLog(id string) *slog.Logger {
	return slog.New(&lazyAttr{h: w.log.Handler(), attr: slog.String("job_id", id)})
}

// lazyAttr is h with attr, added to h when first needed.
type lazyAttr struct {
	h    slog.Handler
	attr slog.Attr
	once sync.Once
	with slog.Handler // h.WithAttrs(attr)
}

func (l *lazyAttr) handler() slog.Handler {
	l.once.Do(func() { l.with = l.h.WithAttrs([]slog.Attr{l.attr}) })
	return l.with
}

// Enabled implements slog.Handler.
func (l *lazyAttr) Enabled(ctx context.Context, level slog.Level) bool {
	return l.h.Enabled(ctx, level)
}

// Handle implements slog.Handler.
func (l *lazyAttr) Handle(ctx context.Context, r slog.Record) error {
	return l.handler().Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (l *lazyAttr) WithAttrs(attrs []slog.Attr) slog.Handler {
	return l.handler().WithAttrs(attrs)
}

// WithGroup implements slog.Handler.
func (l *lazyAttr) WithGroup(name string) slog.Handler {
	return l.handler().WithGroup(name)
}
