package telemetry

import (
	"context"
	"io"
	"log/slog"
	"slices"

	"go.opentelemetry.io/contrib/bridges/otelslog"
	"go.opentelemetry.io/otel/trace"
)

// Log attribute keys that link a log record to its span.
const (
	LogKeyTraceID = "trace_id"
	LogKeySpanID  = "span_id"
)

// NewLogger returns a logger writing JSON lines to w at level and above. When
// a record's context carries a valid span context, the top-level attributes
// "trace_id" and "span_id" (lowercase hex) are added, so that a request's
// logs lead to its trace. Use the Context variants (InfoContext, ...) to pass
// the context.
func NewLogger(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(&traceHandler{next: slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})})
}

// Logger returns l when logs are not exported. Otherwise it returns a logger
// that also sends every record l would write to the OpenTelemetry logs
// bridge, which exports it with its span context, its attributes and the
// service's resource.
func (t *Telemetry) Logger(l *slog.Logger) *slog.Logger {
	if t.loggerProvider == nil {
		return l
	}
	bridge := otelslog.NewHandler(instrumentationName, otelslog.WithLoggerProvider(t.loggerProvider))
	return slog.New(slog.NewMultiHandler(l.Handler(), leveled{Handler: bridge, by: l.Handler()}))
}

// instrumentationName names this package as the scope of the log records it
// bridges.
const instrumentationName = "github.com/flashsale/flashsale/internal/telemetry"

// leveled is a handler enabled at the levels another handler, by, is.
type leveled struct {
	slog.Handler
	by slog.Handler
}

// Enabled reports whether by handles records at level.
func (h leveled) Enabled(ctx context.Context, level slog.Level) bool {
	return h.by.Enabled(ctx, level)
}

// WithAttrs returns the handler with attrs, at the same levels.
func (h leveled) WithAttrs(attrs []slog.Attr) slog.Handler {
	return leveled{Handler: h.Handler.WithAttrs(attrs), by: h.by}
}

// WithGroup returns the handler with the group opened, at the same levels.
func (h leveled) WithGroup(name string) slog.Handler {
	return leveled{Handler: h.Handler.WithGroup(name), by: h.by}
}

// traceHandler adds the span context to records before passing them to next.
// It keeps the attributes and groups added after the first WithGroup itself,
// so that trace_id and span_id stay at the top level of the output.
type traceHandler struct {
	next   slog.Handler
	groups []group
}

// group is a group opened with WithGroup and the attributes added inside it.
type group struct {
	name  string
	attrs []slog.Attr
}

// Enabled reports whether next handles records at level.
func (h *traceHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

// Handle adds trace_id and span_id, nests the record's attributes in the open
// groups and passes the record on.
func (h *traceHandler) Handle(ctx context.Context, r slog.Record) error {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() && len(h.groups) == 0 {
		return h.next.Handle(ctx, r)
	}

	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	if sc.IsValid() {
		out.AddAttrs(
			slog.String(LogKeyTraceID, sc.TraceID().String()),
			slog.String(LogKeySpanID, sc.SpanID().String()),
		)
	}
	if len(h.groups) == 0 {
		r.Attrs(func(a slog.Attr) bool { out.AddAttrs(a); return true })
		return h.next.Handle(ctx, out)
	}

	// Build the groups from the innermost outwards.
	var inner []slog.Attr
	r.Attrs(func(a slog.Attr) bool { inner = append(inner, a); return true })
	for i := len(h.groups) - 1; i >= 0; i-- {
		g := h.groups[i]
		attrs := append(slices.Clip(g.attrs), inner...)
		inner = []slog.Attr{{Key: g.name, Value: slog.GroupValue(attrs...)}}
	}
	out.AddAttrs(inner...)
	return h.next.Handle(ctx, out)
}

// WithAttrs returns a handler that adds attrs to every record, inside the
// innermost open group.
func (h *traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	if len(h.groups) == 0 {
		return &traceHandler{next: h.next.WithAttrs(attrs)}
	}
	groups := slices.Clone(h.groups)
	last := &groups[len(groups)-1]
	last.attrs = append(slices.Clip(last.attrs), attrs...)
	return &traceHandler{next: h.next, groups: groups}
}

// WithGroup returns a handler that nests later attributes in the group name.
func (h *traceHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &traceHandler{next: h.next, groups: append(slices.Clip(h.groups), group{name: name})}
}
