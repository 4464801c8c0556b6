package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/flashsale/flashsale/internal/testenv"
)

// acceptPrometheus is the Accept header of a Prometheus 3 scrape with its
// default scrape_protocols: OpenMetrics first, the only format with
// exemplars.
const acceptPrometheus = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5," +
	"application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3," +
	"text/plain;version=0.0.4;q=0.2,*/*;q=0.1"

// TestExposition parses the service's full exposition, after traffic that
// touches every instrument, with strict parsers in both formats, and lints
// it as promtool check metrics does.
func TestExposition(t *testing.T) {
	inst := MustStart(t, MustEnv(t, nil))
	sale := MustCreateSale(t, inst.URL, 3, time.Hour)
	c, st, _ := checkout(t, inst.URL, "expo1", sale.ID*1_000_000+1)
	if st != http.StatusOK {
		t.Fatalf("checkout: %d", st)
	}
	checkout(t, inst.URL, "expo1", sale.ID*1_000_000+999) // not in the sale: a failure reason
	purchase(t, inst.URL, c.Code)
	purchase(t, inst.URL, "not-a-code")
	call(t, http.MethodGet, inst.URL+"/sales/active", nil, nil)
	fetchMetrics(t, inst.URL, acceptText) // the scrape counters exist from now on

	t.Run("text", func(t *testing.T) {
		body, header := fetchMetrics(t, inst.URL, acceptText)
		if f := expfmt.ResponseFormat(header); f.FormatType() != expfmt.TypeTextPlain {
			t.Fatalf("format %s, want the text format", f)
		}
		parser := expfmt.NewTextParser(model.LegacyValidation)
		families, err := parser.TextToMetricFamilies(strings.NewReader(body))
		if err != nil {
			t.Fatalf("text parser: %v", err)
		}
		for name := range catalog {
			if families[name] == nil {
				t.Errorf("family %s missing", name)
			}
		}
		problems, err := promlint.New(strings.NewReader(body)).Lint()
		if err != nil {
			t.Fatalf("promlint: %v", err)
		}
		for _, p := range problems {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
	})

	t.Run("OpenMetrics", func(t *testing.T) {
		body, header := fetchMetrics(t, inst.URL, acceptPrometheus)
		if f := expfmt.ResponseFormat(header); f.FormatType() != expfmt.TypeOpenMetrics {
			t.Fatalf("format %s for Prometheus's Accept header, want OpenMetrics", f)
		}
		exemplars, err := testenv.ParseOpenMetrics(t, body)
		if err != nil {
			t.Fatal(err)
		}
		if exemplars == 0 {
			t.Error("no sample carries an exemplar")
		}
	})
}

// TestClientsMintNoSeries sends requests whose every client-chosen part is
// made up (Host, method, path, query, headers): after a first round has
// created whatever series such requests create, a second round with new
// values adds none, and no made-up value appears in the exposition.
func TestClientsMintNoSeries(t *testing.T) {
	inst := MustStart(t, MustEnv(t, nil))
	round := func(r int) {
		for i := range 20 {
			marker := fmt.Sprintf("mint%dx%d", r, i)
			for _, tc := range []struct{ method, path string }{
				{http.MethodGet, "/sales/active?" + marker + "=1"},
				{http.MethodPost, "/checkout?user_id=" + marker + "&id=1"},
				{"BREW" + marker, "/sales/active"},
				{http.MethodGet, "/" + marker},
			} {
				req, err := http.NewRequest(tc.method, inst.URL+tc.path, nil)
				if err != nil {
					t.Fatal(err)
				}
				req.Host = marker + ".example:" + fmt.Sprint(1000+i)
				req.Header.Set("User-Agent", marker)
				req.Header.Set("X-Forwarded-For", "192.0.2."+fmt.Sprint(i))
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
			}
		}
	}
	series := func() (int, string) {
		body, _ := fetchMetrics(t, inst.URL, acceptText)
		n := 0
		for _, line := range strings.Split(body, "\n") {
			if line != "" && !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "go_") &&
				!strings.HasPrefix(line, "process_") && !strings.HasPrefix(line, "promhttp_") {
				n++
			}
		}
		return n, body
	}

	round(0)
	before, _ := series()
	round(1)
	after, body := series()
	if after != before {
		t.Errorf("made-up requests added %d series", after-before)
	}
	var leaks []string
	for _, line := range strings.Split(body, "\n") {
		if strings.Contains(line, "mint") || strings.Contains(line, ".example") {
			leaks = append(leaks, line)
		}
	}
	if len(leaks) > 0 {
		t.Errorf("made-up values reached the labels of %d lines, as in\n%s", len(leaks), leaks[0])
	}
}
