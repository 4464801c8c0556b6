package stack

// Prometheus for the end-to-end test: the config overlay derived from
// prometheus/prometheus.yml, and a small client of its HTTP API.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// promOverlay says how the test's Prometheus config differs from prometheus/prometheus.yml.
type promOverlay struct {
	// Targets maps each job_name to the one host:port it scrapes in the test. Every job of
	// prometheus.yml must be in it and vice versa.
	Targets map[string]string
	// ScrapeInterval replaces global.scrape_interval and any job's own scrape_interval,
	// except for the jobs of JobScrapeInterval.
	ScrapeInterval string
	// JobScrapeInterval sets the scrape_interval of these jobs (whether or not they set one).
	JobScrapeInterval map[string]string
	// EvaluationInterval replaces global.evaluation_interval.
	EvaluationInterval string
	// RuleDir is the directory rule_files are relative to in prometheus.yml (its own
	// directory); relative entries become absolute paths (globs included) under it.
	RuleDir string
}

// derivePrometheusConfig returns prometheus.yml (src) with the overlay applied, and
// nothing else changed:
//
//   - global.scrape_interval and global.evaluation_interval: replaced;
//   - each job's scrape_interval: replaced when the job sets one (or is listed in
//     JobScrapeInterval);
//   - each job's static_configs[0].targets: replaced by the job's one test target;
//   - rule_files: made absolute, pointing at the repository's own rule files (not copies).
//
// Job names, metrics paths, honor_labels, labels and the rules themselves stay as they
// are. As prometheus/README.md allows, the file must stay flat: a job with service
// discovery, relabel_configs or more than one static_config, a job without a test target
// (or a test target without a job), or a scrape_timeout anywhere (it may not exceed the
// shortened intervals) is an error that names the job, rather than a silently different
// stack.
func derivePrometheusConfig(src []byte, o promOverlay) ([]byte, error) {
	var cfg map[string]any
	if err := yaml.Unmarshal(src, &cfg); err != nil {
		return nil, err
	}
	global, _ := cfg["global"].(map[string]any)
	if global == nil {
		global = map[string]any{}
		cfg["global"] = global
	}
	if _, ok := global["scrape_timeout"]; ok {
		return nil, fmt.Errorf("global.scrape_timeout is set: the overlay shortens scrape_interval below it (prometheus/README.md: do not set it)")
	}
	global["scrape_interval"] = o.ScrapeInterval
	global["evaluation_interval"] = o.EvaluationInterval

	rules, _ := cfg["rule_files"].([]any)
	for i, r := range rules {
		s, ok := r.(string)
		if !ok {
			return nil, fmt.Errorf("rule_files[%d] is not a string", i)
		}
		if !filepath.IsAbs(s) {
			rules[i] = filepath.Join(o.RuleDir, filepath.FromSlash(s))
		}
	}

	jobs, _ := cfg["scrape_configs"].([]any)
	seen := map[string]bool{}
	for i, j := range jobs {
		job, _ := j.(map[string]any)
		name, _ := job["job_name"].(string)
		if name == "" {
			return nil, fmt.Errorf("scrape_configs[%d] has no job_name", i)
		}
		seen[name] = true
		target, ok := o.Targets[name]
		if !ok {
			return nil, fmt.Errorf("job %q: the end-to-end test has no local process for it (add it to the overlay's targets)", name)
		}
		for k := range job {
			if strings.HasSuffix(k, "_sd_configs") || k == "relabel_configs" || k == "scrape_timeout" {
				return nil, fmt.Errorf("job %q uses %s: the overlay only rewrites flat static_configs (prometheus/README.md)", name, k)
			}
		}
		statics, _ := job["static_configs"].([]any)
		if len(statics) != 1 {
			return nil, fmt.Errorf("job %q has %d static_configs, the overlay expects exactly one", name, len(statics))
		}
		sc, _ := statics[0].(map[string]any)
		if sc == nil {
			return nil, fmt.Errorf("job %q: static_configs[0] is not a mapping", name)
		}
		sc["targets"] = []any{target}
		if iv, ok := o.JobScrapeInterval[name]; ok {
			job["scrape_interval"] = iv
		} else if _, ok := job["scrape_interval"]; ok {
			job["scrape_interval"] = o.ScrapeInterval
		}
	}
	for name := range o.Targets {
		if !seen[name] {
			return nil, fmt.Errorf("job %q is not in prometheus.yml any more (the overlay has a target for it)", name)
		}
	}
	return yaml.Marshal(cfg)
}

// ruleNames reads the names of the recording and alerting rules of Prometheus rule files.
func ruleNames(files ...[]byte) (recording, alerting []string, err error) {
	for _, b := range files {
		var rf struct {
			Groups []struct {
				Rules []struct {
					Record string `yaml:"record"`
					Alert  string `yaml:"alert"`
				} `yaml:"rules"`
			} `yaml:"groups"`
		}
		if err := yaml.Unmarshal(b, &rf); err != nil {
			return nil, nil, err
		}
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				if r.Record != "" {
					recording = append(recording, r.Record)
				}
				if r.Alert != "" {
					alerting = append(alerting, r.Alert)
				}
			}
		}
	}
	sort.Strings(recording)
	sort.Strings(alerting)
	return recording, alerting, nil
}

// ---------------------------------------------------------------------------
// HTTP API client

type promClient struct {
	base string // http://host:port
	hc   *http.Client
}

type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// value is the sample's value as a float (NaN and ±Inf included).
func (s promSample) value() float64 {
	str, _ := s.Value[1].(string)
	v, err := strconv.ParseFloat(str, 64)
	if err != nil {
		panic(fmt.Sprintf("sample value %v: %v", s.Value[1], err))
	}
	return v
}

func (s promSample) String() string {
	return fmt.Sprintf("%v => %s", s.Metric, s.Value[1])
}

// get calls an API endpoint and decodes its data into out.
func (c *promClient) get(path string, params url.Values, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path+"?"+params.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var env struct {
		Status    string          `json:"status"`
		Data      json.RawMessage `json:"data"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return fmt.Errorf("%s: HTTP %d, undecodable body %.200q", path, resp.StatusCode, body)
	}
	if env.Status != "success" {
		return fmt.Errorf("%s: %s: %s", path, env.ErrorType, env.Error)
	}
	return json.Unmarshal(env.Data, out)
}

// query evaluates expr now and returns its vector (a scalar becomes one sample).
func (c *promClient) query(expr string) ([]promSample, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := c.get("/api/v1/query", url.Values{"query": {expr}}, &data); err != nil {
		return nil, fmt.Errorf("query %s: %w", expr, err)
	}
	switch data.ResultType {
	case "vector":
		var v []promSample
		err := json.Unmarshal(data.Result, &v)
		return v, err
	case "scalar":
		var s promSample
		err := json.Unmarshal(data.Result, &s.Value)
		return []promSample{s}, err
	default:
		return nil, fmt.Errorf("query %s: result type %q", expr, data.ResultType)
	}
}

type promRule struct {
	Name           string    `json:"name"`
	Type           string    `json:"type"` // recording | alerting
	Health         string    `json:"health"`
	LastError      string    `json:"lastError"`
	LastEvaluation time.Time `json:"lastEvaluation"`
	State          string    `json:"state"` // alerting rules: inactive | pending | firing
}

type promRuleGroup struct {
	Name           string     `json:"name"`
	File           string     `json:"file"`
	Interval       float64    `json:"interval"`
	LastEvaluation time.Time  `json:"lastEvaluation"`
	Rules          []promRule `json:"rules"`
}

func (c *promClient) rules() ([]promRuleGroup, error) {
	var data struct {
		Groups []promRuleGroup `json:"groups"`
	}
	err := c.get("/api/v1/rules", url.Values{}, &data)
	return data.Groups, err
}

type promTarget struct {
	Labels     map[string]string `json:"labels"`
	ScrapeURL  string            `json:"scrapeUrl"`
	Health     string            `json:"health"`
	LastError  string            `json:"lastError"`
	LastScrape time.Time         `json:"lastScrape"`
}

func (c *promClient) targets() (active []promTarget, dropped int, err error) {
	var data struct {
		Active  []promTarget `json:"activeTargets"`
		Dropped []any        `json:"droppedTargets"`
	}
	err = c.get("/api/v1/targets", url.Values{}, &data)
	return data.Active, len(data.Dropped), err
}

type promExemplarSeries struct {
	SeriesLabels map[string]string `json:"seriesLabels"`
	Exemplars    []struct {
		Labels    map[string]string `json:"labels"`
		Value     string            `json:"value"`
		Timestamp float64           `json:"timestamp"`
	} `json:"exemplars"`
}

func (c *promClient) exemplars(expr string, start, end time.Time) ([]promExemplarSeries, error) {
	var data []promExemplarSeries
	err := c.get("/api/v1/query_exemplars", url.Values{
		"query": {expr},
		"start": {strconv.FormatInt(start.Unix(), 10)},
		"end":   {strconv.FormatInt(end.Unix()+1, 10)},
	}, &data)
	return data, err
}
