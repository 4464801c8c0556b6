package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/flashsale/flashsale/internal/telemetry"
)

// decodeLines decodes every JSON line in buf.
func decodeLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func spanContext(t *testing.T) (context.Context, trace.SpanContext) {
	t.Helper()
	tid, _ := trace.TraceIDFromHex("0102030405060708090a0b0c0d0e0f10")
	sid, _ := trace.SpanIDFromHex("a1a2a3a4a5a6a7a8")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled})
	return trace.ContextWithSpanContext(context.Background(), sc), sc
}

func TestLoggerAddsSpanContext(t *testing.T) {
	var buf bytes.Buffer
	log := telemetry.NewLogger(&buf, slog.LevelInfo)
	ctx, sc := spanContext(t)

	log.InfoContext(ctx, "checkout", "sale_id", "s1")
	log.InfoContext(context.Background(), "no span")
	log.Info("no context")
	log.DebugContext(ctx, "filtered out")

	lines := decodeLines(t, &buf)
	if len(lines) != 3 {
		t.Fatalf("got %d lines, want 3:\n%s", len(lines), buf.String())
	}
	first := lines[0]
	if first["trace_id"] != sc.TraceID().String() || first["span_id"] != sc.SpanID().String() {
		t.Errorf("trace_id, span_id = %v, %v, want %s, %s", first["trace_id"], first["span_id"], sc.TraceID(), sc.SpanID())
	}
	if first["msg"] != "checkout" || first["sale_id"] != "s1" || first["level"] != "INFO" {
		t.Errorf("record = %v", first)
	}
	for _, l := range lines[1:] {
		if _, ok := l["trace_id"]; ok {
			t.Errorf("record without span has trace_id: %v", l)
		}
	}
}

func TestLoggerGroupsKeepTraceAtTopLevel(t *testing.T) {
	var buf bytes.Buffer
	log := telemetry.NewLogger(&buf, slog.LevelDebug).
		With("service", "flashsale").
		WithGroup("http").With("method", "POST").
		WithGroup("resp")
	ctx, sc := spanContext(t)

	log.DebugContext(ctx, "done", "status", 200)
	log.Debug("no span", "status", 500)

	lines := decodeLines(t, &buf)
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2:\n%s", len(lines), buf.String())
	}
	got := lines[0]
	delete(got, "time")
	want := map[string]any{
		"level": "DEBUG", "msg": "done", "service": "flashsale",
		"trace_id": sc.TraceID().String(), "span_id": sc.SpanID().String(),
		"http": map[string]any{"method": "POST", "resp": map[string]any{"status": 200}},
	}
	if g, w := mustJSON(got), mustJSON(want); g != w {
		t.Errorf("record = %s, want %s", g, w)
	}
	if http, _ := lines[1]["http"].(map[string]any); http["method"] != "POST" {
		t.Errorf("record without span lost its group: %v", lines[1])
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v) // maps marshal with sorted keys
	return string(b)
}
