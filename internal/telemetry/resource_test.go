package telemetry

import (
	"testing"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

func TestResourceServiceName(t *testing.T) {
	for _, tc := range []struct {
		name            string
		env             map[string]string
		version         string
		wantName, wantV string
	}{
		{"default", nil, "1.0.0", "flashsale", "1.0.0"},
		{"OTEL_SERVICE_NAME", map[string]string{"OTEL_SERVICE_NAME": "a"}, "1.0.0", "a", "1.0.0"},
		{"attributes", map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "service.name=b,service.version=9"}, "", "b", "9"},
		{"the environment wins", map[string]string{"OTEL_SERVICE_NAME": "a", "OTEL_RESOURCE_ATTRIBUTES": "service.name=b,service.version=9"}, "1.0.0", "a", "9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"} {
				t.Setenv(k, tc.env[k])
			}
			res, err := newResource(t.Context(), Build{Version: tc.version})
			if err != nil {
				t.Fatal(err)
			}
			set := res.Set()
			if v, _ := set.Value(semconv.ServiceNameKey); v.AsString() != tc.wantName {
				t.Errorf("service.name = %q, want %q", v.AsString(), tc.wantName)
			}
			if v, _ := set.Value(semconv.ServiceVersionKey); v.AsString() != tc.wantV {
				t.Errorf("service.version = %q, want %q", v.AsString(), tc.wantV)
			}
			for _, key := range []string{"host.name", "process.pid", "process.runtime.name", "telemetry.sdk.version", "service.instance.id"} {
				if _, ok := set.Value(attribute.Key(key)); !ok {
					t.Errorf("resource lacks %s", key)
				}
			}
		})
	}
}

func TestResourceInstanceID(t *testing.T) {
	ids := map[string]bool{}
	for _, attrs := range []string{"", "", "service.instance.id=pod-7"} {
		t.Setenv("OTEL_RESOURCE_ATTRIBUTES", attrs)
		res, err := newResource(t.Context(), Build{})
		if err != nil {
			t.Fatal(err)
		}
		v, _ := res.Set().Value(semconv.ServiceInstanceIDKey)
		ids[v.AsString()] = true
	}
	if !ids["pod-7"] || len(ids) != 3 {
		t.Errorf("service.instance.id values %v: want two distinct random ids and the configured pod-7", ids)
	}
}
