package loadgen

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"strings"
)

// A line chart drawn as inline SVG, so that the HTML report needs nothing
// from the network. It is small on purpose: lines, a grid, axis labels and
// a tooltip per point.

type point struct{ X, Y float64 }

type series struct {
	Name   string
	Color  string
	Dashed bool
	Points []point
}

type chart struct {
	Title, XLabel, YLabel string
	Series                []series
	YMin                  float64 // the y axis reaches at least this high
}

// Geometry of a chart, in SVG user units.
const (
	chartW, chartH      = 900, 300
	padLeft, padRight   = 64, 16
	padTop, padBottom   = 16, 44
	maxMarkersPerSeries = 400 // beyond that, points get no marker and no tooltip
)

// palette gives series distinct colours that stay readable on white.
var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"}

// svg renders the chart. Names are escaped: the result is safe to insert
// into the report as is.
func (c chart) svg() template.HTML {
	xMax, yMax := 1.0, c.YMin
	for _, s := range c.Series {
		for _, p := range s.Points {
			xMax, yMax = math.Max(xMax, p.X), math.Max(yMax, p.Y)
		}
	}
	yStep := niceStep(yMax, 5)
	yTop := math.Max(yStep, math.Ceil(yMax/yStep)*yStep)
	xStep := niceStep(xMax, 10)
	xEnd := math.Max(xStep, math.Ceil(xMax/xStep)*xStep)
	plotW, plotH := float64(chartW-padLeft-padRight), float64(chartH-padTop-padBottom)
	px := func(x float64) float64 { return padLeft + x/xEnd*plotW }
	py := func(y float64) float64 { return padTop + plotH - y/yTop*plotH }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="%s">`, chartW, chartH, html.EscapeString(c.Title))
	for y := 0.0; y <= yTop+yStep/2; y += yStep {
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" class="grid"/>`, padLeft, chartW-padRight, py(y), py(y))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" class="tick" text-anchor="end">%s</text>`, padLeft-6, py(y)+4, formatTick(y))
	}
	for x := 0.0; x <= xEnd+xStep/2; x += xStep {
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" class="grid"/>`, px(x), px(x), padTop, chartH-padBottom)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="tick" text-anchor="middle">%s</text>`, px(x), chartH-padBottom+16, formatTick(x))
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="label" text-anchor="middle">%s</text>`,
		padLeft+plotW/2, chartH-6, html.EscapeString(c.XLabel))
	fmt.Fprintf(&b, `<text transform="translate(14 %.1f) rotate(-90)" class="label" text-anchor="middle">%s</text>`,
		padTop+plotH/2, html.EscapeString(c.YLabel))
	for i, s := range c.Series {
		color := s.Color
		if color == "" {
			color = palette[i%len(palette)]
		}
		if len(s.Points) == 0 {
			continue
		}
		coords := make([]string, len(s.Points))
		for j, p := range s.Points {
			coords[j] = fmt.Sprintf("%.1f,%.1f", px(p.X), py(p.Y))
		}
		dash := ""
		if s.Dashed {
			dash = ` stroke-dasharray="6 4"`
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"><title>%s</title></polyline>`,
			color, dash, strings.Join(coords, " "), html.EscapeString(s.Name))
		if len(s.Points) <= maxMarkersPerSeries {
			for _, p := range s.Points {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"><title>%s at %s: %s</title></circle>`,
					px(p.X), py(p.Y), color, html.EscapeString(s.Name), formatTick(p.X), formatTick(p.Y))
			}
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// legend renders the chart's series names with their colours, as HTML.
func (c chart) legend() template.HTML {
	var b strings.Builder
	b.WriteString(`<div class="legend">`)
	for i, s := range c.Series {
		color := s.Color
		if color == "" {
			color = palette[i%len(palette)]
		}
		style := "solid"
		if s.Dashed {
			style = "dashed"
		}
		fmt.Fprintf(&b, `<span><i style="border-top:3px %s %s"></i>%s</span>`, style, color, html.EscapeString(s.Name))
	}
	b.WriteString(`</div>`)
	return template.HTML(b.String())
}

// niceStep returns a step of 1, 2 or 5 times a power of ten that divides
// [0, top] into about n intervals.
func niceStep(top float64, n int) float64 {
	if top <= 0 {
		return 1
	}
	raw := top / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*mag {
			return m * mag
		}
	}
	return 10 * mag
}

// formatTick prints an axis value without noise digits.
func formatTick(v float64) string {
	switch {
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.3g", v)
}
