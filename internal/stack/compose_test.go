// Package stack checks the docker-compose stack (docker-compose.yml, Dockerfile,
// .dockerignore) against the repository and the observability configs it mounts, without
// a container engine: every image is pinned, every bind-mounted path exists, service names
// and ports agree between compose, prometheus/prometheus.yml, otel-collector/config.yaml
// and grafana/provisioning, and the image build only needs what the build context sends.
//
// The files are read from the repository root (the nearest go.mod above the working
// directory). STACK_ROOT=/some/copy points the checks at another tree, e.g. a copy with a
// deliberately broken file to see a check fail. Compose variables take their defaults
// (${VAR:-default}) as they would with an empty environment; the real environment is not
// read, so the result does not depend on the shell.
package stack

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// Files of the documented stack layout, relative to the repository root.
const (
	composePath        = "docker-compose.yml"
	dockerfilePath     = "Dockerfile"
	dockerignorePath   = ".dockerignore"
	prometheusPath     = "prometheus/prometheus.yml"
	prometheusOTLPPath = "prometheus/prometheus-otlp.yml"
	collectorPath      = "otel-collector/config.yaml"
	collectorBuildPath = "otel-collector/builder-config.yaml"
	datasourcesPath    = "grafana/provisioning/datasources/datasources.yml"
	dashboardsPath     = "grafana/provisioning/dashboards/dashboards.yml"
)

// Service names of the documented stack layout.
const (
	svcApp        = "flashsale"
	svcPostgres   = "postgres"
	svcRedis      = "redis"
	svcCollector  = "otel-collector"
	svcPrometheus = "prometheus"
	// svcPrometheusOTLP stores the metrics pushed over OTLP, through the Collector.
	svcPrometheusOTLP = "prometheus-otlp"
	svcGrafana        = "grafana"
	svcJaeger         = "jaeger"
)

// ---------------------------------------------------------------------------
// Tests

func TestComposeServices(t *testing.T) {
	s := loadStack(t)
	if s.interpolateErr != nil {
		t.Errorf("%s: %v: give it a default (${VAR:-default}) so the stack starts with an empty environment", composePath, s.interpolateErr)
	}
	for _, name := range []string{svcApp, svcPostgres, svcRedis, svcCollector, svcPrometheus, svcPrometheusOTLP, svcGrafana, svcJaeger} {
		if s.compose.Services[name] == nil {
			t.Errorf("%s: service %q of the documented stack layout is missing", composePath, name)
		}
	}
	for _, name := range s.serviceNames() {
		svc := s.compose.Services[name]
		if svc.Image == "" && svc.Build == nil {
			t.Errorf("%s: service %q has neither image nor build", composePath, name)
		}
		if svc.Restart == "" {
			t.Errorf("%s: service %q has no restart policy", composePath, name)
		}
	}
}

// TestComposeKeys catches misspelt keys, which a YAML decoder silently ignores and an
// engine-less test would otherwise never notice (a subset of the compose-spec schema).
func TestComposeKeys(t *testing.T) {
	s := loadStack(t)
	var doc yaml.Node
	if err := yaml.Unmarshal(s.composeText, &doc); err != nil {
		t.Fatalf("%s: %v", composePath, err)
	}
	top := mappingKeys(doc.Content[0])
	for _, k := range top {
		if !topLevelKeys[k] && !strings.HasPrefix(k, "x-") {
			t.Errorf("%s: unknown top-level key %q", composePath, k)
		}
	}
	services := mappingValue(doc.Content[0], "services")
	if services == nil {
		t.Fatalf("%s: no services", composePath)
	}
	for i := 0; i+1 < len(services.Content); i += 2 {
		name := services.Content[i].Value
		for _, k := range mappingKeys(services.Content[i+1]) {
			if !serviceKeys[k] && !strings.HasPrefix(k, "x-") {
				t.Errorf("%s: service %q: unknown key %q", composePath, name, k)
			}
		}
	}
}

func TestComposeImagesPinned(t *testing.T) {
	s := loadStack(t)
	for _, name := range s.serviceNames() {
		svc := s.compose.Services[name]
		if svc.Build != nil {
			continue // built here; its image is the local tag of the build
		}
		if err := checkPinned(svc.Image); err != nil {
			t.Errorf("%s: service %q: %v", composePath, name, err)
		}
	}
}

func TestComposeCollectorMatchesBuilderManifest(t *testing.T) {
	s := loadStack(t)
	svc := s.service(t, svcCollector)
	_, tag, _ := parseImageRef(svc.Image)
	text := s.read(t, collectorBuildPath)
	var manifest struct {
		Receivers  []struct{ Gomod string } `yaml:"receivers"`
		Processors []struct{ Gomod string } `yaml:"processors"`
		Exporters  []struct{ Gomod string } `yaml:"exporters"`
		Extensions []struct{ Gomod string } `yaml:"extensions"`
		Connectors []struct{ Gomod string } `yaml:"connectors"`
	}
	if err := yaml.Unmarshal(text, &manifest); err != nil {
		t.Fatalf("%s: %v", collectorBuildPath, err)
	}
	versions := map[string]bool{}
	for _, list := range [][]struct{ Gomod string }{manifest.Receivers, manifest.Processors, manifest.Exporters, manifest.Extensions, manifest.Connectors} {
		for _, c := range list {
			if f := strings.Fields(c.Gomod); len(f) == 2 {
				versions[strings.TrimPrefix(f[1], "v")] = true
			}
		}
	}
	if len(versions) == 0 {
		t.Fatalf("%s: no component versions found", collectorBuildPath)
	}
	if !versions[tag] {
		t.Errorf("%s: service %q runs %s, but %s builds components at %v: use the same collector release",
			composePath, svcCollector, svc.Image, collectorBuildPath, sortedKeys(versions))
	}
}

func TestComposeBindMountsExist(t *testing.T) {
	s := loadStack(t)
	for _, name := range s.serviceNames() {
		for _, v := range s.compose.Services[name].Volumes {
			switch {
			case v.Type == "bind":
				if !strings.HasPrefix(v.Source, "./") && !strings.HasPrefix(v.Source, "../") && v.Source != "." {
					t.Errorf("%s: service %q mounts %q: bind mounts must be relative to the repository (./...)", composePath, name, v.Source)
					continue
				}
				if _, err := os.Stat(filepath.Join(s.root, filepath.FromSlash(v.Source))); err != nil {
					t.Errorf("%s: service %q mounts %s at %s, but %s does not exist in the repository", composePath, name, v.Source, v.Target, v.Source)
				}
			case v.Type == "volume" && v.Source != "":
				if _, ok := s.compose.Volumes[v.Source]; !ok {
					t.Errorf("%s: service %q uses volume %q, which the top-level volumes section does not declare", composePath, name, v.Source)
				}
			}
		}
	}
}

func TestComposeBuildContext(t *testing.T) {
	s := loadStack(t)
	built := 0
	for _, name := range s.serviceNames() {
		b := s.compose.Services[name].Build
		if b == nil {
			continue
		}
		built++
		dir := filepath.Join(s.root, filepath.FromSlash(b.Context))
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			t.Errorf("%s: service %q: build context %q is not a directory of the repository", composePath, name, b.Context)
			continue
		}
		df := b.Dockerfile
		if df == "" {
			df = "Dockerfile"
		}
		if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(df))); err != nil {
			t.Errorf("%s: service %q: build context %q has no %s", composePath, name, b.Context, df)
		}
	}
	if s.service(t, svcApp).Build == nil {
		t.Errorf("%s: service %q must be built from this repository (build: .)", composePath, svcApp)
	}
	if built == 0 {
		t.Errorf("%s: no service is built from the repository", composePath)
	}
}

func TestComposeDependsOn(t *testing.T) {
	s := loadStack(t)
	for _, name := range s.serviceNames() {
		deps := s.compose.Services[name].DependsOn
		for _, dep := range sortedKeys(deps) {
			cond := deps[dep]
			target := s.compose.Services[dep]
			switch {
			case dep == name:
				t.Errorf("%s: service %q depends on itself", composePath, name)
			case target == nil:
				t.Errorf("%s: service %q depends on %q, which is not a service of this file", composePath, name, dep)
			case cond == "service_healthy" && !target.hasHealthcheck():
				t.Errorf("%s: service %q waits for %q to be healthy, but %q has no healthcheck (it would never start)", composePath, name, dep, dep)
			case cond != "service_started" && cond != "service_healthy" && cond != "service_completed_successfully":
				t.Errorf("%s: service %q depends on %q with unknown condition %q", composePath, name, dep, cond)
			}
		}
	}
	if cycle := s.dependencyCycle(); cycle != nil {
		t.Errorf("%s: depends_on cycle: %s", composePath, strings.Join(cycle, " -> "))
	}
	app := s.service(t, svcApp)
	for _, dep := range []string{svcPostgres, svcRedis} {
		if app.DependsOn[dep] != "service_healthy" {
			t.Errorf("%s: service %q must wait for %q with condition service_healthy", composePath, svcApp, dep)
		}
	}
}

func TestComposeHealthchecks(t *testing.T) {
	s := loadStack(t)
	for _, name := range s.serviceNames() {
		hc := s.compose.Services[name].Healthcheck
		if hc == nil || hc.Disable {
			continue
		}
		if len(hc.Test) == 0 {
			t.Errorf("%s: service %q: healthcheck without test", composePath, name)
			continue
		}
		switch hc.Test[0] {
		case "CMD", "CMD-SHELL":
			if len(hc.Test) < 2 {
				t.Errorf("%s: service %q: healthcheck %q has no command", composePath, name, hc.Test[0])
			}
		case "NONE":
		default:
			if len(hc.Test) > 1 {
				t.Errorf("%s: service %q: healthcheck test list must start with CMD, CMD-SHELL or NONE, got %q", composePath, name, hc.Test[0])
			}
		}
	}
	// The ones the stack relies on (depends_on service_healthy and the docs).
	for _, name := range []string{svcPostgres, svcRedis} {
		if !s.service(t, name).hasHealthcheck() {
			t.Errorf("%s: service %q needs a healthcheck", composePath, name)
		}
	}
}

func TestComposeAppEnvironment(t *testing.T) {
	s := loadStack(t)
	app := s.service(t, svcApp)
	env := app.Environment

	// DATABASE_URL names the postgres service, its port and its credentials.
	pg := s.service(t, svcPostgres)
	if u, err := url.Parse(env["DATABASE_URL"]); err != nil || u.Host == "" {
		t.Errorf("%s: service %q: DATABASE_URL %q is not a postgres:// URL", composePath, svcApp, env["DATABASE_URL"])
	} else {
		s.checkHostPort(t, svcApp+" DATABASE_URL", u.Host, svcPostgres, "5432")
		pass, _ := u.User.Password()
		if want := pg.Environment["POSTGRES_USER"]; u.User.Username() != want {
			t.Errorf("%s: DATABASE_URL user %q differs from postgres POSTGRES_USER %q", composePath, u.User.Username(), want)
		}
		if want := pg.Environment["POSTGRES_PASSWORD"]; pass != want {
			t.Errorf("%s: DATABASE_URL password differs from postgres POSTGRES_PASSWORD", composePath)
		}
		if db, want := strings.TrimPrefix(u.Path, "/"), pg.Environment["POSTGRES_DB"]; db != want {
			t.Errorf("%s: DATABASE_URL database %q differs from postgres POSTGRES_DB %q", composePath, db, want)
		}
	}
	if u, err := url.Parse(env["REDIS_URL"]); err != nil || u.Host == "" {
		t.Errorf("%s: service %q: REDIS_URL %q is not a redis:// URL", composePath, svcApp, env["REDIS_URL"])
	} else {
		s.checkHostPort(t, svcApp+" REDIS_URL", u.Host, svcRedis, "6379")
	}

	// The listener the Dockerfile documents and compose publishes.
	port := s.appMetricsPort()
	if _, ok := s.declaredPorts(svcApp)[port]; !ok {
		t.Errorf("%s: service %q serves on %s (HTTP_ADDR/METRICS_ADDR) but neither ports nor expose lists it", composePath, svcApp, port)
	}

	if tok := env["ADMIN_TOKEN"]; len(tok) < 8 {
		t.Errorf("%s: service %q: ADMIN_TOKEN default %q is shorter than 8 characters: the service refuses to start", composePath, svcApp, tok)
	}

	// Memory: a container limit, which sets the Go memory limit the memory alert uses
	// (90% of it); GOMEMLIMIT, when set instead, must be below it.
	limit, err := parseBytes(app.Deploy.Resources.Limits.Memory)
	if err != nil {
		t.Errorf("%s: service %q: deploy.resources.limits.memory %q: %v", composePath, svcApp, app.Deploy.Resources.Limits.Memory, err)
	}
	if env["GOMEMLIMIT"] == "" {
		return
	}
	soft, err := parseGoMemLimit(env["GOMEMLIMIT"])
	if err != nil {
		t.Errorf("%s: service %q: GOMEMLIMIT %q: %v", composePath, svcApp, env["GOMEMLIMIT"], err)
	}
	if limit > 0 && soft > 0 && soft >= limit {
		t.Errorf("%s: service %q: GOMEMLIMIT (%d bytes) must be below the memory limit (%d bytes)", composePath, svcApp, soft, limit)
	}
}

// TestComposeAppExportsToCollector: flashsale's OTLP endpoint is the collector, on the
// port of the protocol it uses, which the collector's OTLP receiver listens on.
func TestComposeAppExportsToCollector(t *testing.T) {
	s := loadStack(t)
	env := s.service(t, svcApp).Environment
	endpoint := env["OTEL_EXPORTER_OTLP_ENDPOINT"]
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		t.Fatalf("%s: service %q: OTEL_EXPORTER_OTLP_ENDPOINT %q is not an http(s):// URL", composePath, svcApp, endpoint)
	}
	proto := env["OTEL_EXPORTER_OTLP_PROTOCOL"]
	if proto == "" {
		proto = "http/protobuf" // the service's default (README)
	}
	want := map[string]string{"grpc": "4317", "http/protobuf": "4318"}[proto]
	if want == "" {
		t.Fatalf("%s: service %q: OTEL_EXPORTER_OTLP_PROTOCOL %q is neither grpc nor http/protobuf", composePath, svcApp, proto)
	}
	s.checkHostPort(t, svcApp+" OTEL_EXPORTER_OTLP_ENDPOINT", u.Host, svcCollector, want)

	_, port, _ := net.SplitHostPort(u.Host)
	col := s.collector(t)
	receiverProto := map[string]string{"4317": "grpc", "4318": "http"}[want]
	l, ok := col.otlpReceivers[receiverProto]
	switch {
	case !ok:
		t.Errorf("%s: no otlp receiver with protocols.%s, which flashsale exports to (%s)", collectorPath, receiverProto, endpoint)
	case l.port != port:
		t.Errorf("%s: the otlp receiver's %s endpoint is %s, flashsale exports to port %s", collectorPath, receiverProto, l, port)
	case isLoopback(l.host):
		t.Errorf("%s: the otlp receiver's %s endpoint %s listens on loopback only: other containers cannot reach it (use 0.0.0.0:%s)", collectorPath, receiverProto, l, l.port)
	}
	// The service exports every signal it has over OTLP once an endpoint is set.
	for _, signal := range []string{"traces", "metrics", "logs"} {
		if !col.receives(signal, "otlp") {
			t.Errorf("%s: no %s pipeline receives from an otlp receiver", collectorPath, signal)
		}
	}
}

// promServers are the stack's two Prometheus servers: the service's /metrics and the
// Collector's own telemetry in one, the metrics pushed over OTLP (the Collector's
// prometheus exporter) in the other, so that each stores one copy of each series. jobs
// are the documented job -> target of each config; honorLabels the jobs that keep the
// scraped series' own job/instance.
var promServers = []promServer{
	{svcPrometheus, prometheusPath, func(s *stackFiles) map[string]string {
		return map[string]string{"flashsale": svcApp + ":" + s.appMetricsPort(), "otel-collector": svcCollector + ":8888"}
	}, nil},
	{svcPrometheusOTLP, prometheusOTLPPath, func(s *stackFiles) map[string]string {
		return map[string]string{"otel-collector-exporter": svcCollector + ":8889"}
	}, []string{"otel-collector-exporter"}},
}

// promServer is one Prometheus of the stack layout.
type promServer struct {
	service, config string
	jobs            func(s *stackFiles) map[string]string
	honorLabels     []string
}

// promConfig is the part of a Prometheus config the checks read.
type promConfig struct {
	RuleFiles     []string `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		HonorLabels   bool   `yaml:"honor_labels"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

// TestPrometheusTargets: for each of the stack's Prometheus servers, every scrape target
// names a compose service and a port it listens on; the documented jobs scrape the
// documented targets and nothing else; rule files resolve; the compose service runs that
// config with exemplar storage.
func TestPrometheusTargets(t *testing.T) {
	s := loadStack(t)
	col := s.collector(t)
	for _, srv := range promServers {
		t.Run(srv.service, func(t *testing.T) {
			var cfg promConfig
			if err := yaml.Unmarshal(s.read(t, srv.config), &cfg); err != nil {
				t.Fatalf("%s: %v", srv.config, err)
			}
			jobs := map[string][]string{}
			for _, sc := range cfg.ScrapeConfigs {
				if sc.HonorLabels != slices.Contains(srv.honorLabels, sc.JobName) {
					t.Errorf("%s: job %q has honor_labels %v, expected %v", srv.config, sc.JobName, sc.HonorLabels, !sc.HonorLabels)
				}
				for _, st := range sc.StaticConfigs {
					for _, target := range st.Targets {
						jobs[sc.JobName] = append(jobs[sc.JobName], target)
						s.checkPromTarget(t, col, srv.service, srv.config, sc.JobName, target)
					}
				}
			}
			want := srv.jobs(s)
			for job, target := range want {
				if !slices.Equal(jobs[job], []string{target}) {
					t.Errorf("%s: job %q must scrape %s only (stack layout), has %v", srv.config, job, target, jobs[job])
				}
			}
			for job := range jobs {
				if _, ok := want[job]; !ok {
					t.Errorf("%s: job %q is not in the stack layout (%v)", srv.config, job, sortedKeys(want))
				}
			}
			s.checkPromService(t, srv.service, srv.config, cfg.RuleFiles)
		})
	}
	if l, ok := col.listeners["8889"]; ok && l.what != "prometheus exporter" {
		t.Errorf("%s: port 8889 is the %s, expected the prometheus exporter (stack layout)", collectorPath, l.what)
	}
	if l, ok := col.listeners["8888"]; ok && l.what != "telemetry metrics" {
		t.Errorf("%s: port 8888 is the %s, expected the collector's own telemetry (stack layout)", collectorPath, l.what)
	}
}

// TestPrometheusStoresOnce: no target is scraped by two Prometheus servers of the stack,
// and no server scrapes both the service's /metrics and the Collector's prometheus
// exporter, which re-exposes the same series pushed over OTLP: each series is stored
// once per database.
func TestPrometheusStoresOnce(t *testing.T) {
	s := loadStack(t)
	scrapedBy := map[string][]string{} // target -> configs
	for _, srv := range promServers {
		var cfg promConfig
		if err := yaml.Unmarshal(s.read(t, srv.config), &cfg); err != nil {
			t.Fatalf("%s: %v", srv.config, err)
		}
		both := map[string]bool{}
		for _, sc := range cfg.ScrapeConfigs {
			for _, st := range sc.StaticConfigs {
				for _, target := range st.Targets {
					scrapedBy[target] = append(scrapedBy[target], srv.config)
					switch target {
					case svcApp + ":" + s.appMetricsPort():
						both["the service's /metrics"] = true
					case svcCollector + ":8889":
						both["the Collector's prometheus exporter"] = true
					}
				}
			}
		}
		if len(both) == 2 {
			t.Errorf("%s scrapes %v: every series of the service would be stored twice", srv.config, sortedKeys(both))
		}
	}
	for target, configs := range scrapedBy {
		if len(configs) > 1 {
			t.Errorf("%s is scraped by %v: its series would be stored twice", target, configs)
		}
	}
	// Every Prometheus of the compose file is one of the documented ones.
	for _, name := range s.serviceNames() {
		repo, _, _ := parseImageRef(s.compose.Services[name].Image)
		if strings.HasSuffix(repo, "prom/prometheus") && !slices.ContainsFunc(promServers, func(p promServer) bool { return p.service == name }) {
			t.Errorf("%s: service %q runs Prometheus but is not in the stack layout's servers", composePath, name)
		}
	}
}

// checkPromTarget: one scrape target of config (run by the compose service promSvc)
// names a compose service and a port it listens on.
func (s *stackFiles) checkPromTarget(t *testing.T, col *collectorConfig, promSvc, config, job, target string) {
	t.Helper()
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		t.Errorf("%s: job %q: target %q is not host:port", config, job, target)
		return
	}
	if isLoopback(host) { // Prometheus scraping itself
		if _, ok := s.declaredPorts(promSvc)[port]; !ok {
			t.Errorf("%s: job %q: target %q: %s does not listen on %s", config, job, target, promSvc, port)
		}
		return
	}
	s.checkHostPort(t, config+" job "+strconv.Quote(job)+" target", target, "", "")
	switch host {
	case svcApp:
		if want := s.appMetricsPort(); port != want {
			t.Errorf("%s: job %q scrapes %s, but flashsale serves /metrics on port %s (HTTP_ADDR/METRICS_ADDR)", config, job, target, want)
		}
	case svcCollector:
		l, ok := col.listeners[port]
		switch {
		case !ok:
			t.Errorf("%s: job %q scrapes %s, but %s configures no listener on port %s (listeners: %s)", config, job, target, collectorPath, port, col.describeListeners())
		case isLoopback(l.host):
			t.Errorf("%s: job %q scrapes %s, but %s binds the %s to loopback, %s: prometheus cannot reach it", config, job, target, collectorPath, l.what, l)
		}
	}
}

// checkPromService: the compose service name runs config (its --config.file is that
// file through a bind mount), its rule files resolve inside its mounts, and it stores
// exemplars.
func (s *stackFiles) checkPromService(t *testing.T, name, config string, ruleFiles []string) {
	t.Helper()
	prom := s.service(t, name)
	configFile := flagValue(prom.Command, "--config.file")
	if configFile == "" {
		configFile = "/etc/prometheus/prometheus.yml" // the image's default
	}
	hostConfig, ok := prom.hostPath(configFile)
	if !ok {
		t.Fatalf("%s: %s --config.file %s is not inside a bind mount of the repository", composePath, name, configFile)
	}
	if filepath.Clean(hostConfig) != filepath.Clean("./"+config) {
		t.Errorf("%s: %s --config.file %s is %s in the repository, expected %s", composePath, name, configFile, hostConfig, config)
	}
	for _, rf := range ruleFiles {
		containerGlob := rf
		if !path.IsAbs(rf) {
			containerGlob = path.Join(path.Dir(configFile), rf)
		}
		hostGlob, ok := prom.hostPath(containerGlob)
		if !ok {
			t.Errorf("%s: rule_files %q (%s in the container) is outside the bind mounts of the %s service", config, rf, containerGlob, name)
			continue
		}
		matches, _ := filepath.Glob(filepath.Join(s.root, filepath.FromSlash(hostGlob)))
		if len(matches) == 0 {
			t.Errorf("%s: rule_files %q matches no file (%s in the repository)", config, rf, hostGlob)
		}
	}
	for _, want := range []string{"--enable-feature=exemplar-storage", "--web.enable-lifecycle"} {
		if !slices.Contains(prom.Command, want) {
			t.Errorf("%s: %s command lacks %s", composePath, name, want)
		}
	}
}

// TestCollectorExportsTracesToJaeger: the traces pipeline's OTLP exporter endpoint (its
// ${env:VAR:-default} default, or the value compose sets) names the jaeger service on the
// port of the exporter's protocol.
func TestCollectorExportsTracesToJaeger(t *testing.T) {
	s := loadStack(t)
	col := s.collector(t)
	colEnv := s.service(t, svcCollector).Environment
	found := 0
	for _, name := range col.tracesExporters() {
		typ, _, _ := strings.Cut(name, "/")
		if !strings.HasPrefix(typ, "otlp") {
			continue // debug, ...
		}
		found++
		ex := col.exporters[name]
		raw, _ := ex["endpoint"].(string)
		if raw == "" {
			t.Errorf("%s: traces exporter %q has no endpoint", collectorPath, name)
			continue
		}
		endpoint, err := resolveCollectorEnv(raw, colEnv)
		if err != nil {
			t.Errorf("%s: traces exporter %q endpoint %q: %v", collectorPath, name, raw, err)
			continue
		}
		hostPort := endpoint
		if u, err := url.Parse(endpoint); err == nil && u.Host != "" && (u.Scheme == "http" || u.Scheme == "https") {
			hostPort = u.Host
		}
		want := "4317"
		if strings.Contains(typ, "http") {
			want = "4318"
		}
		s.checkHostPort(t, fmt.Sprintf("%s traces exporter %q endpoint %q (resolved %q)", collectorPath, name, raw, endpoint), hostPort, svcJaeger, want)
	}
	if found == 0 {
		t.Errorf("%s: no OTLP exporter in a traces pipeline: traces never reach jaeger (exporters: %v)", collectorPath, col.tracesExporters())
	}
}

// TestGrafanaDatasources: the provisioned datasource URLs name the prometheus and jaeger
// services on their ports, with the agreed uids and the exemplar link to Jaeger.
func TestGrafanaDatasources(t *testing.T) {
	s := loadStack(t)
	var cfg struct {
		Datasources []struct {
			Name     string         `yaml:"name"`
			UID      string         `yaml:"uid"`
			Type     string         `yaml:"type"`
			URL      string         `yaml:"url"`
			JSONData map[string]any `yaml:"jsonData"`
		} `yaml:"datasources"`
	}
	if err := yaml.Unmarshal(s.read(t, datasourcesPath), &cfg); err != nil {
		t.Fatalf("%s: %v", datasourcesPath, err)
	}
	uids := map[string]bool{}
	want := map[string]struct{ typ, service, port string }{
		"prometheus":      {"prometheus", svcPrometheus, "9090"},
		"prometheus-otlp": {"prometheus", svcPrometheusOTLP, "9090"},
		"jaeger":          {"jaeger", svcJaeger, "16686"},
	}
	for _, ds := range cfg.Datasources {
		uids[ds.UID] = true
		u, err := url.Parse(ds.URL)
		if ds.URL != "" && (err != nil || u.Host == "") {
			t.Errorf("%s: datasource %q: url %q is not an absolute URL", datasourcesPath, ds.Name, ds.URL)
			continue
		}
		w, known := want[ds.UID]
		if ds.URL != "" {
			port := u.Port()
			if port == "" {
				port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
			}
			service, wantPort := "", ""
			if known {
				service, wantPort = w.service, w.port
			}
			s.checkHostPort(t, fmt.Sprintf("%s datasource %q url", datasourcesPath, ds.Name), net.JoinHostPort(u.Hostname(), port), service, wantPort)
		}
		if known && ds.Type != w.typ {
			t.Errorf("%s: datasource uid %q has type %q, expected %q", datasourcesPath, ds.UID, ds.Type, w.typ)
		}
	}
	for uid := range want {
		if !uids[uid] {
			t.Errorf("%s: no datasource with uid %q (dashboards and exemplar links refer to it)", datasourcesPath, uid)
		}
	}
	// Exemplars: trace_id label, linked to the jaeger datasource, on both Prometheus.
	for _, ds := range cfg.Datasources {
		if ds.Type != "prometheus" {
			continue
		}
		dests, _ := ds.JSONData["exemplarTraceIdDestinations"].([]any)
		ok := false
		for _, d := range dests {
			m, _ := d.(map[string]any)
			if m["name"] == "trace_id" && m["datasourceUid"] == "jaeger" {
				ok = true
			}
		}
		if !ok {
			t.Errorf("%s: datasource %q needs jsonData.exemplarTraceIdDestinations {name: trace_id, datasourceUid: jaeger}", datasourcesPath, ds.Name)
		}
	}
}

// TestGrafanaDashboardDatasource: each dashboard reads Prometheus through its
// ${datasource} variable (type datasource, plugin prometheus), never a fixed uid, so it
// imports into another Grafana unchanged and switches between the stack's two
// Prometheus servers.
func TestGrafanaDashboardDatasource(t *testing.T) {
	s := loadStack(t)
	files, _ := filepath.Glob(filepath.Join(s.root, "grafana", "dashboards", "*.json"))
	if len(files) == 0 {
		t.Fatal("no grafana/dashboards/*.json")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Templating struct {
				List []struct {
					Name  string `json:"name"`
					Type  string `json:"type"`
					Query any    `json:"query"`
				} `json:"list"`
			} `json:"templating"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		ok := false
		for _, v := range d.Templating.List {
			ok = ok || (v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus")
		}
		if !ok {
			t.Errorf("%s: no template variable datasource {type: datasource, query: prometheus}", f)
		}
		var doc any
		_ = json.Unmarshal(b, &doc)
		refs := 0
		var walk func(at string, v any)
		walk = func(at string, v any) {
			switch v := v.(type) {
			case map[string]any:
				if ds, ok := v["datasource"].(map[string]any); ok && ds["type"] == "prometheus" {
					refs++
					if ds["uid"] != "${datasource}" {
						t.Errorf("%s: %s: datasource uid %v, want ${datasource}", filepath.Base(f), at, ds["uid"])
					}
				}
				for _, k := range sortedKeys(v) {
					walk(at+"."+k, v[k])
				}
			case []any:
				for i, e := range v {
					walk(fmt.Sprintf("%s[%d]", at, i), e)
				}
			}
		}
		walk("", doc)
		if refs == 0 {
			t.Errorf("%s: no Prometheus datasource reference", f)
		}
	}
}

// TestGrafanaDashboardsMounted: the dashboard provider's path is a bind mount of a
// repository folder that holds dashboards.
func TestGrafanaDashboardsMounted(t *testing.T) {
	s := loadStack(t)
	var cfg struct {
		Providers []struct {
			Name    string `yaml:"name"`
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	if err := yaml.Unmarshal(s.read(t, dashboardsPath), &cfg); err != nil {
		t.Fatalf("%s: %v", dashboardsPath, err)
	}
	g := s.service(t, svcGrafana)
	if hp, ok := g.hostPath("/etc/grafana/provisioning/datasources/datasources.yml"); !ok || filepath.Clean(hp) != filepath.Clean("./"+datasourcesPath) {
		t.Errorf("%s: grafana must mount ./grafana/provisioning at /etc/grafana/provisioning (got %q)", composePath, hp)
	}
	if len(cfg.Providers) == 0 {
		t.Fatalf("%s: no dashboard providers", dashboardsPath)
	}
	for _, p := range cfg.Providers {
		if p.Type != "" && p.Type != "file" {
			continue
		}
		hp, ok := g.hostPath(p.Options.Path)
		if !ok {
			t.Errorf("%s: provider %q reads %q, which is not a bind mount of the grafana service", dashboardsPath, p.Name, p.Options.Path)
			continue
		}
		matches, _ := filepath.Glob(filepath.Join(s.root, filepath.FromSlash(hp), "*.json"))
		if len(matches) == 0 {
			t.Errorf("%s: provider %q reads %s (%s in the repository), which holds no *.json dashboard", dashboardsPath, p.Name, p.Options.Path, hp)
		}
	}
}

// TestDockerfile: pinned base images, the builder's Go version is go.mod's (its
// toolchain line, which the Makefile and CI use too), a static non-root image exposing
// the service's port.
func TestDockerfile(t *testing.T) {
	s := loadStack(t)
	df := parseDockerfile(string(s.read(t, dockerfilePath)))
	if len(df.stages) == 0 {
		t.Fatalf("%s: no FROM", dockerfilePath)
	}
	goVersion := goModVersion(s.read(t, "go.mod"))
	for _, f := range []string{"Makefile", ".ci/run"} {
		if want := "go" + goVersion; !strings.Contains(string(s.read(t, f)), "GOTOOLCHAIN") || !strings.Contains(string(s.read(t, f)), want) {
			t.Errorf("%s does not build with GOTOOLCHAIN %s, the release go.mod names", f, want)
		}
	}
	stageNames := map[string]bool{}
	builtWithGo := false
	for _, st := range df.stages {
		img := st.image
		switch {
		case img == "scratch" || stageNames[img]:
		default:
			if err := checkPinned(img); err != nil {
				t.Errorf("%s: FROM %s: %v", dockerfilePath, img, err)
			}
			name, tag, _ := parseImageRef(img)
			if path.Base(name) == "golang" {
				builtWithGo = true
				if v, _, _ := strings.Cut(tag, "-"); v != goVersion {
					t.Errorf("%s: builder %s is Go %s, go.mod builds with go%s: keep them equal", dockerfilePath, img, v, goVersion)
				}
			}
		}
		if st.name != "" {
			stageNames[st.name] = true
		}
	}
	if !builtWithGo {
		t.Errorf("%s: no golang builder stage", dockerfilePath)
	}

	// The build: static (CGO_ENABLED=0), of ./cmd/flashsale.
	cgoOff, builds := false, false
	for _, st := range df.stages[:len(df.stages)-1] {
		for _, in := range st.instructions {
			if (in.cmd == "ENV" || in.cmd == "RUN") && regexp.MustCompile(`\bCGO_ENABLED=0\b`).MatchString(in.args) {
				cgoOff = true
			}
			if in.cmd == "RUN" && regexp.MustCompile(`\bgo build\b.*\./cmd/flashsale\b`).MatchString(in.args) {
				builds = true
			}
		}
	}
	if !cgoOff {
		t.Errorf("%s: the build must set CGO_ENABLED=0 (a static binary for the final image)", dockerfilePath)
	}
	if !builds {
		t.Errorf("%s: no `go build ... ./cmd/flashsale` step", dockerfilePath)
	}

	final := df.stages[len(df.stages)-1]
	user, exposed, entrypoint := "", []string{}, false
	for _, in := range final.instructions {
		switch in.cmd {
		case "USER":
			user = strings.TrimSpace(in.args)
		case "EXPOSE":
			for _, p := range strings.Fields(in.args) {
				exposed = append(exposed, strings.TrimSuffix(p, "/tcp"))
			}
		case "ENTRYPOINT", "CMD":
			entrypoint = true
		}
	}
	if u, _, _ := strings.Cut(user, ":"); u == "" || u == "0" || u == "root" {
		t.Errorf("%s: the final stage must run as a non-root USER, has %q", dockerfilePath, user)
	}
	if port := s.appMetricsPort(); !slices.Contains(exposed, port) {
		t.Errorf("%s: the final stage exposes %v, but the service listens on %s in compose", dockerfilePath, exposed, port)
	}
	if !entrypoint {
		t.Errorf("%s: the final stage has no ENTRYPOINT", dockerfilePath)
	}
}

// TestDockerignore: the build context keeps every file the build reads (go.mod, go.sum,
// the Go and embedded files of ./cmd/flashsale's packages in this module) and leaves out
// the local state (.git, .dev, bin).
func TestDockerignore(t *testing.T) {
	s := loadStack(t)
	m, err := parseDockerignore(string(s.read(t, dockerignorePath)))
	if err != nil {
		t.Fatalf("%s: %v", dockerignorePath, err)
	}
	for _, p := range []string{".git", ".dev", "bin"} {
		if !m.excluded(p + "/x") {
			t.Errorf("%s: %s/ is sent in the build context; exclude it", dockerignorePath, p)
		}
	}
	needed := []string{"go.mod", "go.sum"}
	files, err := buildFiles(s.root)
	if err != nil {
		t.Fatalf("listing the files of ./cmd/flashsale: %v", err)
	}
	needed = append(needed, files...)
	var dropped []string
	for _, f := range needed {
		if m.excluded(f) {
			dropped = append(dropped, f)
		}
	}
	if len(dropped) > 0 {
		more := ""
		if len(dropped) > 8 {
			more = fmt.Sprintf(" and %d more", len(dropped)-8)
			dropped = dropped[:8]
		}
		t.Errorf("%s leaves out of the build context files that `go build ./cmd/flashsale` reads: %s%s",
			dockerignorePath, strings.Join(dropped, ", "), more)
	}
}

// ---------------------------------------------------------------------------
// The stack: repository root and the parsed compose file

type stackFiles struct {
	root           string
	composeText    []byte // after variable interpolation
	interpolateErr error  // required variables (${VAR:?msg}), which have no default
	compose        *composeFile
	col            *collectorConfig
}

func loadStack(t *testing.T) *stackFiles {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	s := &stackFiles{root: root}
	s.composeText, s.interpolateErr = interpolate(s.read(t, composePath))
	s.compose = new(composeFile)
	if err := yaml.Unmarshal(s.composeText, s.compose); err != nil {
		t.Fatalf("%s: %v", composePath, err)
	}
	if len(s.compose.Services) == 0 {
		t.Fatalf("%s: no services", composePath)
	}
	for name, svc := range s.compose.Services {
		if svc == nil {
			t.Fatalf("%s: service %q is empty", composePath, name)
		}
	}
	return s
}

// repoRoot is $STACK_ROOT, or the nearest directory above the working directory that
// holds a go.mod.
func repoRoot() (string, error) {
	if r := os.Getenv("STACK_ROOT"); r != "" {
		return filepath.Abs(r)
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// read returns a repository file; a missing one fails the test, naming it.
func (s *stackFiles) read(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.root, filepath.FromSlash(rel)))
	if errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s is missing (documented stack layout); this check cannot run without it", rel)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (s *stackFiles) serviceNames() []string { return sortedKeys(s.compose.Services) }

func (s *stackFiles) service(t *testing.T, name string) *service {
	t.Helper()
	svc := s.compose.Services[name]
	if svc == nil {
		t.Fatalf("%s: no service %q (documented stack layout)", composePath, name)
	}
	return svc
}

// declaredPorts are the container ports a service publishes or exposes.
func (s *stackFiles) declaredPorts(name string) map[string]bool {
	ports := map[string]bool{}
	svc := s.compose.Services[name]
	if svc == nil {
		return ports
	}
	for _, p := range svc.Ports {
		ports[p.target] = true
	}
	for _, p := range svc.Expose {
		ports[strings.TrimSuffix(p, "/tcp")] = true
	}
	return ports
}

// listenPorts are the ports a service is known to listen on: the declared ones, plus
// what flashsale's environment and the collector's config say.
func (s *stackFiles) listenPorts(t *testing.T, name string) map[string]bool {
	ports := s.declaredPorts(name)
	switch name {
	case svcApp:
		ports[s.appMetricsPort()] = true
		if _, p, err := net.SplitHostPort(s.compose.Services[name].Environment["HTTP_ADDR"]); err == nil {
			ports[p] = true
		}
	case svcCollector:
		for p := range s.collector(t).listeners {
			ports[p] = true
		}
	}
	return ports
}

// appMetricsPort is the port of flashsale's /metrics: METRICS_ADDR's, else HTTP_ADDR's.
func (s *stackFiles) appMetricsPort() string {
	env := map[string]string{}
	if svc := s.compose.Services[svcApp]; svc != nil {
		env = svc.Environment
	}
	addr := env["METRICS_ADDR"]
	if addr == "" {
		addr = env["HTTP_ADDR"]
	}
	if addr == "" {
		addr = ":8080" // the service's default
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return port
}

// checkHostPort checks that hostPort names a compose service (wantService, when given)
// and a port it listens on (wantPort, when given).
func (s *stackFiles) checkHostPort(t *testing.T, what, hostPort, wantService, wantPort string) {
	t.Helper()
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil {
		t.Errorf("%s: %q is not host:port", what, hostPort)
		return
	}
	if wantService != "" && host != wantService {
		t.Errorf("%s: %q names host %q, expected the compose service %q", what, hostPort, host, wantService)
		return
	}
	if s.compose.Services[host] == nil {
		t.Errorf("%s: %q names host %q, which is not a service of %s (services: %v)", what, hostPort, host, composePath, s.serviceNames())
		return
	}
	if wantPort != "" && port != wantPort {
		t.Errorf("%s: %q uses port %s, expected %s", what, hostPort, port, wantPort)
		return
	}
	if ports := s.listenPorts(t, host); !ports[port] {
		t.Errorf("%s: %q: service %q does not listen on %s in %s (ports/expose: %v)", what, hostPort, host, port, composePath, sortedKeys(ports))
	}
}

// dependencyCycle returns a depends_on cycle, or nil.
func (s *stackFiles) dependencyCycle() []string {
	state := map[string]int{} // 1 visiting, 2 done
	var stack []string
	var visit func(string) []string
	visit = func(n string) []string {
		switch state[n] {
		case 1:
			i := slices.Index(stack, n)
			return append(slices.Clone(stack[i:]), n)
		case 2:
			return nil
		}
		state[n] = 1
		stack = append(stack, n)
		if svc := s.compose.Services[n]; svc != nil {
			for _, d := range sortedKeys(svc.DependsOn) {
				if c := visit(d); c != nil {
					return c
				}
			}
		}
		stack = stack[:len(stack)-1]
		state[n] = 2
		return nil
	}
	for _, n := range s.serviceNames() {
		if c := visit(n); c != nil {
			return c
		}
	}
	return nil
}

// ---------------------------------------------------------------------------
// Compose file model (the subset the checks read; short and long syntaxes)

type composeFile struct {
	Services map[string]*service `yaml:"services"`
	Volumes  map[string]any      `yaml:"volumes"`
}

type service struct {
	Image       string       `yaml:"image"`
	Build       *buildSpec   `yaml:"build"`
	Restart     string       `yaml:"restart"`
	Command     strList      `yaml:"command"`
	Environment envMap       `yaml:"environment"`
	Ports       []portSpec   `yaml:"ports"`
	Expose      strList      `yaml:"expose"`
	Volumes     []volumeSpec `yaml:"volumes"`
	DependsOn   dependsOn    `yaml:"depends_on"`
	Healthcheck *struct {
		Test    strList `yaml:"test"`
		Disable bool    `yaml:"disable"`
	} `yaml:"healthcheck"`
	Deploy struct {
		Resources struct {
			Limits struct {
				Memory string `yaml:"memory"`
			} `yaml:"limits"`
		} `yaml:"resources"`
	} `yaml:"deploy"`
}

func (s *service) hasHealthcheck() bool {
	return s.Healthcheck != nil && !s.Healthcheck.Disable && len(s.Healthcheck.Test) > 0 && s.Healthcheck.Test[0] != "NONE"
}

// hostPath maps a container path to the repository path ("./...") of the bind mount
// that holds it. The deepest mount wins; when that is a volume, there is no host path.
func (s *service) hostPath(containerPath string) (string, bool) {
	best, bestLen, bind := "", -1, false
	for _, v := range s.Volumes {
		target := path.Clean(v.Target)
		rel, ok := strings.CutPrefix(path.Clean(containerPath), target)
		if !ok || (rel != "" && !strings.HasPrefix(rel, "/") && target != "/") || len(target) <= bestLen {
			continue
		}
		bestLen, bind = len(target), v.Type == "bind"
		best = path.Clean(v.Source + "/" + rel)
		if !strings.HasPrefix(best, ".") && !path.IsAbs(best) {
			best = "./" + best
		}
	}
	return best, bind
}

type buildSpec struct{ Context, Dockerfile string }

func (b *buildSpec) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		b.Context = n.Value
		return nil
	}
	m, err := scalars(n)
	b.Context, b.Dockerfile = m["context"], m["dockerfile"]
	if b.Context == "" {
		b.Context = "."
	}
	return err
}

type strList []string

func (s *strList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*s = strList(strings.Fields(n.Value))
		return nil
	case yaml.SequenceNode:
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: expected a string", c.Line)
			}
			*s = append(*s, c.Value)
		}
		return nil
	}
	return fmt.Errorf("line %d: expected a string or a list", n.Line)
}

type envMap map[string]string

func (e *envMap) UnmarshalYAML(n *yaml.Node) error {
	*e = envMap{}
	switch n.Kind {
	case yaml.MappingNode:
		m, err := scalars(n)
		for k, v := range m {
			(*e)[k] = v
		}
		return err
	case yaml.SequenceNode:
		for _, c := range n.Content {
			k, v, _ := strings.Cut(c.Value, "=")
			(*e)[k] = v
		}
		return nil
	}
	return fmt.Errorf("line %d: environment must be a mapping or a list", n.Line)
}

// portSpec is a ports entry; target is the container port.
type portSpec struct{ target, published, hostIP string }

func (p *portSpec) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		spec, _, _ := strings.Cut(n.Value, "/") // drop /tcp
		parts := strings.Split(spec, ":")
		p.target = parts[len(parts)-1]
		if len(parts) >= 2 {
			p.published = parts[len(parts)-2]
		}
		if len(parts) >= 3 {
			p.hostIP = strings.Join(parts[:len(parts)-2], ":")
		}
	case yaml.MappingNode:
		m, err := scalars(n)
		if err != nil {
			return err
		}
		p.target, p.published, p.hostIP = m["target"], m["published"], m["host_ip"]
	default:
		return fmt.Errorf("line %d: bad ports entry", n.Line)
	}
	if _, err := strconv.Atoi(p.target); err != nil {
		return fmt.Errorf("line %d: ports entry %q: container port %q is not a number (ranges are not supported here)", n.Line, n.Value, p.target)
	}
	return nil
}

type volumeSpec struct{ Type, Source, Target string }

func (v *volumeSpec) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		parts := strings.Split(n.Value, ":")
		switch len(parts) {
		case 1:
			v.Type, v.Target = "volume", parts[0] // anonymous
			return nil
		default:
			v.Source, v.Target = parts[0], parts[1]
		}
		v.Type = "volume"
		if strings.HasPrefix(v.Source, ".") || strings.HasPrefix(v.Source, "/") || strings.HasPrefix(v.Source, "~") {
			v.Type = "bind"
		}
		return nil
	case yaml.MappingNode:
		m, err := scalars(n)
		v.Type, v.Source, v.Target = m["type"], m["source"], m["target"]
		return err
	}
	return fmt.Errorf("line %d: bad volumes entry", n.Line)
}

// dependsOn maps a dependency to its condition.
type dependsOn map[string]string

func (d *dependsOn) UnmarshalYAML(n *yaml.Node) error {
	*d = dependsOn{}
	switch n.Kind {
	case yaml.SequenceNode:
		for _, c := range n.Content {
			(*d)[c.Value] = "service_started"
		}
		return nil
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			m, err := scalars(n.Content[i+1])
			if err != nil {
				return err
			}
			cond := m["condition"]
			if cond == "" {
				cond = "service_started"
			}
			(*d)[n.Content[i].Value] = cond
		}
		return nil
	}
	return fmt.Errorf("line %d: depends_on must be a list or a mapping", n.Line)
}

// scalars returns the scalar values of a mapping node (nested values are skipped).
func scalars(n *yaml.Node) (map[string]string, error) {
	if n.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: expected a mapping", n.Line)
	}
	m := map[string]string{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if v := n.Content[i+1]; v.Kind == yaml.ScalarNode && v.Tag != "!!null" {
			m[n.Content[i].Value] = v.Value
		}
	}
	return m, nil
}

func mappingKeys(n *yaml.Node) []string {
	var keys []string
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		keys = append(keys, n.Content[i].Value)
	}
	return keys
}

func mappingValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

var topLevelKeys = setOf("version", "name", "include", "services", "networks", "volumes", "configs", "secrets")

var serviceKeys = setOf("annotations", "attach", "build", "blkio_config", "cap_add", "cap_drop",
	"cgroup", "cgroup_parent", "command", "configs", "container_name", "cpu_count", "cpu_percent",
	"cpu_period", "cpu_quota", "cpu_rt_period", "cpu_rt_runtime", "cpu_shares", "cpus", "cpuset",
	"credential_spec", "depends_on", "deploy", "develop", "device_cgroup_rules", "devices", "dns",
	"dns_opt", "dns_search", "domainname", "entrypoint", "env_file", "environment", "expose",
	"extends", "external_links", "extra_hosts", "gpus", "group_add", "healthcheck", "hostname",
	"image", "init", "ipc", "isolation", "labels", "links", "logging", "mac_address",
	"mem_limit", "mem_reservation", "mem_swappiness", "memswap_limit", "network_mode", "networks",
	"oom_kill_disable", "oom_score_adj", "pid", "pids_limit", "platform", "ports", "post_start",
	"pre_stop", "privileged", "profiles", "pull_policy", "read_only", "restart", "runtime", "scale",
	"secrets", "security_opt", "shm_size", "stdin_open", "stop_grace_period", "stop_signal",
	"storage_opt", "sysctls", "tmpfs", "tty", "ulimits", "user", "userns_mode", "uts", "volumes",
	"volumes_from", "working_dir")

// interpolate resolves compose variables as with an empty environment: ${VAR:-default}
// and ${VAR-default} become the default, ${VAR} and $VAR the empty string, $$ a '$';
// ${VAR:?message} and ${VAR?message} are errors (a required variable).
func interpolate(b []byte) ([]byte, error) {
	re := regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)`)
	var errs []error
	out := re.ReplaceAllFunc(b, func(m []byte) []byte {
		sub := re.FindSubmatch(m)
		switch {
		case string(m) == "$$":
			return []byte("$")
		case len(sub[2]) > 0 && sub[2][len(sub[2])-1] == '?':
			errs = append(errs, fmt.Errorf("%s requires the variable %s to be set", m, sub[1]))
			return nil
		case len(sub[2]) > 0:
			return sub[3]
		}
		return nil
	})
	return out, errors.Join(errs...)
}

// ---------------------------------------------------------------------------
// Images

var (
	patchVersion = regexp.MustCompile(`^v?[0-9]+\.[0-9]+\.[0-9]+([-+._].*)?$`)
	// PostgreSQL numbers releases major.minor since 10: 15.19 is an exact release.
	minorVersion     = regexp.MustCompile(`^[0-9]+\.[0-9]+([-+_].*)?$`)
	twoPartVersioned = setOf("postgres")
	sha256Digest     = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
)

// parseImageRef splits [registry/]name[:tag][@digest].
func parseImageRef(ref string) (name, tag, digest string) {
	name, digest, _ = strings.Cut(ref, "@")
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name, tag = name[:i], name[i+1:]
	}
	return name, tag, digest
}

// checkPinned accepts an image pinned by digest, or by a tag with a patch-level version.
func checkPinned(ref string) error {
	if ref == "" {
		return errors.New("no image")
	}
	if strings.Contains(ref, "$") {
		return fmt.Errorf("image %q depends on a variable", ref)
	}
	name, tag, digest := parseImageRef(ref)
	if tag == "latest" {
		return fmt.Errorf("image %q uses the floating tag latest: pin an exact version", ref)
	}
	if digest != "" {
		if !sha256Digest.MatchString(digest) {
			return fmt.Errorf("image %q: malformed digest %q", ref, digest)
		}
		return nil
	}
	if tag == "" {
		return fmt.Errorf("image %q has no tag (means latest): pin an exact version", ref)
	}
	if twoPartVersioned[path.Base(name)] && minorVersion.MatchString(tag) {
		return nil
	}
	if !patchVersion.MatchString(tag) {
		return fmt.Errorf("image %q: tag %q is not an exact major.minor.patch version", ref, tag)
	}
	return nil
}

// ---------------------------------------------------------------------------
// The collector's config

type listener struct{ what, raw, host, port string }

// String is the configured endpoint, with its resolved value when it has variables.
func (l listener) String() string {
	hp := net.JoinHostPort(l.host, l.port)
	if l.raw == hp {
		return l.raw
	}
	return fmt.Sprintf("%s (= %s)", l.raw, hp)
}

type collectorConfig struct {
	exporters     map[string]map[string]any
	pipelines     map[string]struct{ receivers, exporters []string }
	listeners     map[string]listener // by port
	otlpReceivers map[string]listener // by protocol: grpc, http
}

func (c *collectorConfig) describeListeners() string {
	var parts []string
	for _, p := range sortedKeys(c.listeners) {
		parts = append(parts, c.listeners[p].what+" "+c.listeners[p].String())
	}
	return strings.Join(parts, ", ")
}

func (c *collectorConfig) tracesExporters() []string {
	var out []string
	for _, name := range sortedKeys(c.pipelines) {
		if name == "traces" || strings.HasPrefix(name, "traces/") {
			for _, e := range c.pipelines[name].exporters {
				if !slices.Contains(out, e) {
					out = append(out, e)
				}
			}
		}
	}
	return out
}

// receives reports whether a pipeline of signal (traces, metrics, logs) receives
// from a receiver of receiverType.
func (c *collectorConfig) receives(signal, receiverType string) bool {
	for name, p := range c.pipelines {
		if name != signal && !strings.HasPrefix(name, signal+"/") {
			continue
		}
		for _, r := range p.receivers {
			if typ, _, _ := strings.Cut(r, "/"); typ == receiverType {
				return true
			}
		}
	}
	return false
}

// collector parses otel-collector/config.yaml (once per stackFiles). ${env:VAR:-default}
// references resolve to the value the collector service's compose environment sets,
// else their default.
func (s *stackFiles) collector(t *testing.T) *collectorConfig {
	t.Helper()
	if s.col != nil {
		return s.col
	}
	var raw struct {
		Receivers  map[string]map[string]any `yaml:"receivers"`
		Exporters  map[string]map[string]any `yaml:"exporters"`
		Extensions map[string]map[string]any `yaml:"extensions"`
		Service    struct {
			Extensions []string `yaml:"extensions"`
			Pipelines  map[string]struct {
				Receivers []string `yaml:"receivers"`
				Exporters []string `yaml:"exporters"`
			} `yaml:"pipelines"`
			Telemetry struct {
				Metrics map[string]any `yaml:"metrics"`
			} `yaml:"telemetry"`
		} `yaml:"service"`
	}
	if err := yaml.Unmarshal(s.read(t, collectorPath), &raw); err != nil {
		t.Fatalf("%s: %v", collectorPath, err)
	}
	env := map[string]string{}
	if svc := s.compose.Services[svcCollector]; svc != nil {
		env = svc.Environment
	}
	c := &collectorConfig{
		exporters:     raw.Exporters,
		pipelines:     map[string]struct{ receivers, exporters []string }{},
		listeners:     map[string]listener{},
		otlpReceivers: map[string]listener{},
	}
	for name, p := range raw.Service.Pipelines {
		c.pipelines[name] = struct{ receivers, exporters []string }{p.Receivers, p.Exporters}
	}
	add := func(what, endpoint, defaultEndpoint string) (listener, bool) {
		if endpoint == "" {
			endpoint = defaultEndpoint
		}
		resolved, err := resolveCollectorEnv(endpoint, env)
		if err != nil {
			t.Errorf("%s: %s endpoint %q: %v", collectorPath, what, endpoint, err)
			return listener{}, false
		}
		host, port, err := net.SplitHostPort(resolved)
		if err != nil {
			t.Errorf("%s: %s endpoint %q is not host:port", collectorPath, what, resolved)
			return listener{}, false
		}
		l := listener{what: what, raw: endpoint, host: host, port: port}
		if prev, dup := c.listeners[port]; dup {
			t.Errorf("%s: %s and %s both listen on port %s", collectorPath, prev.what, what, port)
		}
		c.listeners[port] = l
		return l, true
	}
	// Receivers in use: otlp protocols (default endpoints are loopback since v0.104).
	used := map[string]bool{}
	for _, p := range raw.Service.Pipelines {
		for _, r := range p.Receivers {
			used[r] = true
		}
	}
	for _, name := range sortedKeys(raw.Receivers) {
		typ, _, _ := strings.Cut(name, "/")
		if typ != "otlp" || !used[name] {
			continue
		}
		protocols, _ := raw.Receivers[name]["protocols"].(map[string]any)
		for proto, def := range map[string]string{"grpc": "localhost:4317", "http": "localhost:4318"} {
			if _, ok := protocols[proto]; !ok {
				continue
			}
			cfg, _ := protocols[proto].(map[string]any)
			ep, _ := cfg["endpoint"].(string)
			if l, ok := add("otlp receiver "+name+" "+proto, ep, def); ok {
				c.otlpReceivers[proto] = l
			}
		}
	}
	for _, name := range sortedKeys(raw.Exporters) {
		if typ, _, _ := strings.Cut(name, "/"); typ == "prometheus" {
			ep, _ := raw.Exporters[name]["endpoint"].(string)
			add("prometheus exporter", ep, "")
		}
	}
	for _, name := range raw.Service.Extensions {
		typ, _, _ := strings.Cut(name, "/")
		def := map[string]string{"health_check": "localhost:13133", "zpages": "localhost:55679", "pprof": "localhost:1777"}[typ]
		if def == "" {
			continue
		}
		ep, _ := raw.Extensions[name]["endpoint"].(string)
		add(typ+" extension", ep, def)
	}
	// Own telemetry: readers[].pull.exporter.prometheus {host, port}, or the older
	// address; by default localhost:8888 (loopback: not scrapeable from another container).
	metrics := raw.Service.Telemetry.Metrics
	if lvl, _ := metrics["level"].(string); lvl != "none" {
		found := false
		readers, _ := metrics["readers"].([]any)
		for _, r := range readers {
			prom := dig(r, "pull", "exporter", "prometheus")
			if prom == nil {
				continue
			}
			found = true
			host, port := "localhost", fmt.Sprint(prom["port"])
			if prom["host"] != nil {
				host = fmt.Sprint(prom["host"])
			}
			add("telemetry metrics", host+":"+port, "")
		}
		if addr, ok := metrics["address"].(string); ok && !found {
			found = true
			add("telemetry metrics", addr, "")
		}
		if !found && len(readers) == 0 {
			add("telemetry metrics", "", "localhost:8888")
		}
	}
	s.col = c
	return c
}

// resolveCollectorEnv replaces ${env:VAR:-default} / ${VAR:-default} / ${env:VAR} with
// the collector service's compose environment value, else the default.
func resolveCollectorEnv(s string, env map[string]string) (string, error) {
	re := regexp.MustCompile(`\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}`)
	var err error
	out := re.ReplaceAllStringFunc(s, func(m string) string {
		sub := re.FindStringSubmatch(m)
		if v, ok := env[sub[1]]; ok && v != "" {
			return v
		}
		if !strings.Contains(m, ":-") {
			err = fmt.Errorf("%s is not set by compose and has no default", sub[1])
		}
		return sub[2]
	})
	return out, err
}

func dig(v any, keys ...string) map[string]any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	m, _ := v.(map[string]any)
	return m
}

// ---------------------------------------------------------------------------
// Dockerfile and .dockerignore

type dockerInstruction struct{ cmd, args string }

type dockerStage struct {
	image, name  string
	instructions []dockerInstruction
}

type dockerfile struct{ stages []dockerStage }

// parseDockerfile reads instructions (continuations joined, comments dropped) into
// stages; ARGs declared before the first FROM are substituted in FROM lines.
func parseDockerfile(text string) dockerfile {
	var df dockerfile
	args := map[string]string{}
	var logical []string
	var cur strings.Builder
	for _, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		logical = append(logical, cur.String())
		cur.Reset()
	}
	argRef := regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`)
	for _, l := range logical {
		cmd, rest, _ := strings.Cut(l, " ")
		cmd, rest = strings.ToUpper(cmd), strings.TrimSpace(rest)
		switch {
		case cmd == "ARG" && len(df.stages) == 0:
			k, v, _ := strings.Cut(rest, "=")
			args[k] = strings.Trim(v, `"`)
		case cmd == "FROM":
			f := strings.Fields(argRef.ReplaceAllStringFunc(rest, func(m string) string {
				return args[argRef.FindStringSubmatch(m)[1]]
			}))
			f = slices.DeleteFunc(f, func(s string) bool { return strings.HasPrefix(s, "--") })
			st := dockerStage{}
			if len(f) > 0 {
				st.image = f[0]
			}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			df.stages = append(df.stages, st)
		case len(df.stages) > 0:
			last := &df.stages[len(df.stages)-1]
			last.instructions = append(last.instructions, dockerInstruction{cmd, rest})
		}
	}
	return df
}

type ignorePattern struct {
	re     *regexp.Regexp
	negate bool
}

type dockerignore []ignorePattern

// parseDockerignore follows the builder's rules: patterns in order, the last match
// wins, '!' re-includes, a pattern matching a directory matches everything below it,
// '*' and '?' stay within a path segment and '**' spans any number of segments.
func parseDockerignore(text string) (dockerignore, error) {
	var d dockerignore
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		p := ignorePattern{}
		if strings.HasPrefix(line, "!") {
			p.negate, line = true, strings.TrimSpace(line[1:])
		}
		line = strings.TrimPrefix(path.Clean("/"+line), "/")
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(line); i++ {
			switch c := line[i]; {
			case strings.HasPrefix(line[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(line[i:], "**"):
				re.WriteString(".*")
				i++
			case c == '*':
				re.WriteString("[^/]*")
			case c == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(string(c)))
			}
		}
		re.WriteString("$")
		var err error
		if p.re, err = regexp.Compile(re.String()); err != nil {
			return nil, fmt.Errorf("pattern %q: %v", line, err)
		}
		d = append(d, p)
	}
	return d, nil
}

// excluded reports whether the slash-separated path is left out of the build context.
func (d dockerignore) excluded(file string) bool {
	var prefixes []string
	parts := strings.Split(file, "/")
	for i := range parts {
		prefixes = append(prefixes, strings.Join(parts[:i+1], "/"))
	}
	excluded := false
	for _, p := range d {
		for _, pre := range prefixes {
			if p.re.MatchString(pre) {
				excluded = !p.negate
				break
			}
		}
	}
	return excluded
}

// buildFiles lists, relative to root, the Go and embedded files of the packages of this
// module that `go build ./cmd/flashsale` compiles.
func buildFiles(root string) ([]string, error) {
	cmd := exec.Command("go", "list", "-deps",
		"-f", `{{if .Module}}{{if .Module.Main}}{{.Dir}}{{range .GoFiles}} {{.}}{{end}}{{range .EmbedFiles}} {{.}}{{end}}{{"\n"}}{{end}}{{end}}`,
		"./cmd/flashsale")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %v: %s", err, stderr.String())
	}
	var files []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		rel, err := filepath.Rel(root, f[0])
		if err != nil {
			return nil, err
		}
		for _, name := range f[1:] {
			files = append(files, filepath.ToSlash(filepath.Join(rel, name)))
		}
	}
	if len(files) == 0 {
		return nil, errors.New("go list found no files")
	}
	return files, nil
}

// goModVersion is the go directive of go.mod.
// goModVersion returns the Go release go.mod builds with: its toolchain line
// (without the "go" prefix) when there is one, else its go line.
func goModVersion(b []byte) string {
	if m := regexp.MustCompile(`(?m)^toolchain\s+go(\S+)\s*$`).FindSubmatch(b); m != nil {
		return string(m[1])
	}
	m := regexp.MustCompile(`(?m)^go\s+(\S+)\s*$`).FindSubmatch(b)
	if m == nil {
		return ""
	}
	return string(m[1])
}

// ---------------------------------------------------------------------------
// Small helpers

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// flagValue returns the value of --name=value or "--name value" in args.
func flagValue(args []string, name string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// parseBytes reads compose byte sizes (512m, 1g, 1024k, 536870912) and Go's GOMEMLIMIT
// form (400MiB).
func parseBytes(s string) (int64, error) {
	if s == "" {
		return 0, errors.New("not set")
	}
	m := regexp.MustCompile(`^([0-9]+)\s*([A-Za-z]*)$`).FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("%q is not a byte size", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, err
	}
	unit := map[string]int64{
		"": 1, "b": 1,
		"k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
		"m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
		"g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
	}
	mul, ok := unit[strings.ToLower(m[2])]
	if !ok {
		return 0, fmt.Errorf("%q: unknown unit %q", s, m[2])
	}
	return n * mul, nil
}

// parseGoMemLimit reads GOMEMLIMIT as the Go runtime does: a number with an optional
// B, KiB, MiB, GiB or TiB suffix (case-sensitive; MB or M is rejected at start-up).
func parseGoMemLimit(s string) (int64, error) {
	m := regexp.MustCompile(`^([0-9]+)(B|KiB|MiB|GiB|TiB)?$`).FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a GOMEMLIMIT value (a number with B, KiB, MiB, GiB or TiB)", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	shift := map[string]uint{"": 0, "B": 0, "KiB": 10, "MiB": 20, "GiB": 30, "TiB": 40}[m[2]]
	return n << shift, err
}

func setOf(items ...string) map[string]bool {
	m := map[string]bool{}
	for _, i := range items {
		m[i] = true
	}
	return m
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
