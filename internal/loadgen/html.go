package loadgen

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"os"
)

//go:embed report.html.tmpl
var reportHTML string

// reportTemplate renders the HTML report. It is self-contained: styles are
// inline and the charts are SVG drawn here, so the file opens anywhere,
// offline, and can be attached to an issue as it is.
var reportTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"ms":     func(v float64) string { return fmt.Sprintf("%.2f", v) },
	"f1":     func(v float64) string { return fmt.Sprintf("%.1f", v) },
	"counts": countsLine,
}).Parse(reportHTML))

// htmlChart is a chart and its legend, ready for the template.
type htmlChart struct {
	Title  string
	Note   string
	SVG    template.HTML
	Legend template.HTML
}

// WriteHTMLFile writes the report as HTML to path.
func WriteHTMLFile(path string, r *Report) error {
	var b bytes.Buffer
	if err := renderHTML(&b, r); err != nil {
		return err
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("html report: %w", err)
	}
	return nil
}

func renderHTML(b *bytes.Buffer, r *Report) error {
	return reportTemplate.Execute(b, struct {
		*Report
		Charts []htmlChart
	}{r, reportCharts(r)})
}

// reportCharts draws throughput and latency per endpoint and items sold
// over the run's timeline.
func reportCharts(r *Report) []htmlChart {
	colors := map[string]string{}
	for i, e := range r.Endpoints {
		colors[e.Endpoint] = palette[i%len(palette)]
	}
	throughput := chart{Title: "Throughput", XLabel: "seconds since start", YLabel: "requests completed per second"}
	latency := chart{Title: "Latency", XLabel: "seconds since start", YLabel: "latency (ms)"}
	for _, e := range r.Endpoints {
		ep := e.Endpoint
		rps := series{Name: ep, Color: colors[ep]}
		p50 := series{Name: ep + " p50", Color: colors[ep], Dashed: true}
		p99 := series{Name: ep + " p99", Color: colors[ep]}
		for _, s := range r.Timeline {
			x := float64(s.T)
			rps.Points = append(rps.Points, point{x, float64(s.Requests[ep])})
			if v, ok := s.P50Ms[ep]; ok {
				p50.Points = append(p50.Points, point{x, v})
				p99.Points = append(p99.Points, point{x, s.P99Ms[ep]})
			}
		}
		throughput.Series = append(throughput.Series, rps)
		latency.Series = append(latency.Series, p99, p50)
	}
	sold := chart{Title: "Items sold", XLabel: "seconds since start", YLabel: "items sold", YMin: float64(r.Sale.TotalItems)}
	soldSeries := series{Name: "items sold (GET /sales/{id})", Color: "#2ca02c"}
	for _, s := range r.Timeline {
		if s.ItemsSold != nil {
			soldSeries.Points = append(soldSeries.Points, point{float64(s.T), float64(*s.ItemsSold)})
		}
	}
	total := series{Name: "total items", Color: "#888888", Dashed: true,
		Points: []point{{0, float64(r.Sale.TotalItems)}, {float64(max(len(r.Timeline)-1, 1)), float64(r.Sale.TotalItems)}}}
	sold.Series = []series{soldSeries, total}
	soldNote := ""
	if len(soldSeries.Points) == 0 {
		soldNote = "This profile buys nothing: the sale was not watched."
	}
	return []htmlChart{
		{Title: throughput.Title, SVG: throughput.svg(), Legend: throughput.legend()},
		{Title: latency.Title + " (p99 solid, p50 dashed)", SVG: latency.svg(), Legend: latency.legend(),
			Note: "Per second of completion. Open loop: measured from each request's intended send time."},
		{Title: sold.Title, SVG: sold.svg(), Legend: sold.legend(), Note: soldNote},
	}
}
