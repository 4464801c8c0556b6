package telemetry

import (
	"fmt"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Protocols accepted for OTLP export.
const (
	protocolGRPC         = "grpc"
	protocolHTTPProtobuf = "http/protobuf"
)

// config is the telemetry configuration read from the environment.
type config struct {
	disabled      bool
	serviceName   string
	resourceAttrs []attribute.KeyValue
	propagators   []string
	sampler       sdktrace.Sampler
	prometheus    bool
	tracesOTLP    *otlpConfig // nil when spans are not exported
	metricsOTLP   *otlpConfig // nil when metrics are not pushed over OTLP
	// metricInterval and metricTimeout are the OTLP metric export period and
	// its timeout (0: the SDK's defaults of 60 s and 30 s).
	metricInterval, metricTimeout time.Duration
}

// otlpConfig describes one signal's OTLP exporter.
type otlpConfig struct {
	protocol string
	// endpoint is the URL to export to, or "" for the exporter's default.
	endpoint string
	// headers are sent with every export request; nil leaves the exporter's
	// own choice.
	headers map[string]string
}

// loadConfig reads the configuration from the environment variables listed in
// the package documentation.
func loadConfig(getenv func(string) string) (config, error) {
	var cfg config
	env := func(key string) string { return strings.TrimSpace(getenv(key)) }

	cfg.disabled = strings.EqualFold(env("OTEL_SDK_DISABLED"), "true")
	cfg.serviceName = env("OTEL_SERVICE_NAME")

	attrs, err := parseKeyValues(env("OTEL_RESOURCE_ATTRIBUTES"))
	if err != nil {
		return config{}, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	for k, v := range attrs {
		cfg.resourceAttrs = append(cfg.resourceAttrs, attribute.String(k, v))
	}

	cfg.propagators = []string{"tracecontext", "baggage"}
	if v := env("OTEL_PROPAGATORS"); v != "" {
		cfg.propagators = splitList(v)
	}

	cfg.sampler, err = parseSampler(env("OTEL_TRACES_SAMPLER"), env("OTEL_TRACES_SAMPLER_ARG"))
	if err != nil {
		return config{}, err
	}

	generalEndpoint := env("OTEL_EXPORTER_OTLP_ENDPOINT") != ""

	traces, err := parseExporters("OTEL_TRACES_EXPORTER", env("OTEL_TRACES_EXPORTER"), "otlp")
	if err != nil {
		return config{}, err
	}
	if traces == nil && (generalEndpoint || env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "") {
		traces = map[string]bool{"otlp": true}
	}

	metrics, err := parseExporters("OTEL_METRICS_EXPORTER", env("OTEL_METRICS_EXPORTER"), "prometheus", "otlp")
	if err != nil {
		return config{}, err
	}
	if metrics == nil {
		metrics = map[string]bool{"prometheus": true}
		if generalEndpoint || env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") != "" {
			metrics["otlp"] = true
		}
	}
	cfg.prometheus = metrics["prometheus"]

	if cfg.disabled {
		return cfg, nil
	}
	if traces["otlp"] {
		c, err := loadOTLPConfig(env, "TRACES", "/v1/traces")
		if err != nil {
			return config{}, err
		}
		cfg.tracesOTLP = &c
	}
	if metrics["otlp"] {
		c, err := loadOTLPConfig(env, "METRICS", "/v1/metrics")
		if err != nil {
			return config{}, err
		}
		cfg.metricsOTLP = &c
		if cfg.metricInterval, err = parseMillis(env, "OTEL_METRIC_EXPORT_INTERVAL"); err != nil {
			return config{}, err
		}
		if cfg.metricTimeout, err = parseMillis(env, "OTEL_METRIC_EXPORT_TIMEOUT"); err != nil {
			return config{}, err
		}
	}
	return cfg, nil
}

// parseMillis parses a positive duration in milliseconds; "" gives 0.
func parseMillis(env func(string) string, key string) (time.Duration, error) {
	v := env(key)
	if v == "" {
		return 0, nil
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms <= 0 {
		return 0, fmt.Errorf("%s: want a positive number of milliseconds, got %q", key, v)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// parseExporters parses an OTEL_*_EXPORTER list. It returns nil when the
// variable is unset and an empty map when it contains "none".
func parseExporters(key, value string, allowed ...string) (map[string]bool, error) {
	if value == "" {
		return nil, nil
	}
	set := make(map[string]bool)
	for _, name := range splitList(strings.ToLower(value)) {
		switch {
		case name == "none":
			return map[string]bool{}, nil
		case slices.Contains(allowed, name):
			set[name] = true
		default:
			return nil, fmt.Errorf("%s: unsupported exporter %q (supported: %s, none)",
				key, name, strings.Join(allowed, ", "))
		}
	}
	return set, nil
}

// loadOTLPConfig reads the protocol, endpoint and headers of one signal,
// where signal is "TRACES" or "METRICS" and signalPath the path appended to
// a general HTTP endpoint.
func loadOTLPConfig(env func(string) string, signal, signalPath string) (otlpConfig, error) {
	perSignal := func(name string) (key, value string) {
		key = "OTEL_EXPORTER_OTLP_" + signal + "_" + name
		if v := env(key); v != "" {
			return key, v
		}
		key = "OTEL_EXPORTER_OTLP_" + name
		return key, env(key)
	}

	var c otlpConfig
	key, protocol := perSignal("PROTOCOL")
	switch protocol {
	case "", protocolHTTPProtobuf:
		c.protocol = protocolHTTPProtobuf
	case protocolGRPC:
		c.protocol = protocolGRPC
	default:
		return otlpConfig{}, fmt.Errorf("%s: unsupported protocol %q (supported: %s, %s)",
			key, protocol, protocolHTTPProtobuf, protocolGRPC)
	}

	key, endpoint := perSignal("ENDPOINT")
	if endpoint != "" {
		u, err := url.Parse(endpoint)
		if err != nil {
			return otlpConfig{}, fmt.Errorf("%s: %w", key, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return otlpConfig{}, fmt.Errorf("%s: %q is not an http or https URL", key, endpoint)
		}
		// A general endpoint is a base URL for OTLP/HTTP; a per-signal one
		// is used as given.
		if key == "OTEL_EXPORTER_OTLP_ENDPOINT" && c.protocol == protocolHTTPProtobuf {
			u.Path = path.Join("/", u.Path, signalPath)
		}
		c.endpoint = u.String()
	}

	key, headers := perSignal("HEADERS")
	if headers != "" {
		h, err := parseKeyValues(headers)
		if err != nil {
			return otlpConfig{}, fmt.Errorf("%s: %w", key, err)
		}
		c.headers = h
	}
	return c, nil
}

// parseSampler returns the sampler named by OTEL_TRACES_SAMPLER, mirroring
// the names and defaults of the SDK.
func parseSampler(name, arg string) (sdktrace.Sampler, error) {
	ratio := func() (float64, error) {
		if arg == "" {
			return 1, nil
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil {
			return 0, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG: %q is not a number: %w", arg, err)
		}
		if r < 0 || r > 1 {
			return 0, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG: ratio %v is outside [0, 1]", r)
		}
		return r, nil
	}

	switch strings.ToLower(name) {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		return sdktrace.TraceIDRatioBased(r), nil
	case "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), nil
	default:
		return nil, fmt.Errorf("OTEL_TRACES_SAMPLER: unsupported sampler %q", name)
	}
}

// parseKeyValues parses a comma-separated list of key=value pairs whose
// values are percent-encoded, the format of OTEL_RESOURCE_ATTRIBUTES and
// OTEL_EXPORTER_OTLP_HEADERS.
func parseKeyValues(s string) (map[string]string, error) {
	if s == "" {
		return nil, nil
	}
	kv := make(map[string]string)
	for _, pair := range strings.Split(s, ",") {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not a key=value pair", pair)
		}
		value, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("value of %q: %w", k, err)
		}
		kv[k] = value
	}
	return kv, nil
}

// splitList splits a comma-separated list, trimming blanks and dropping empty
// items.
func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
