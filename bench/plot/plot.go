// Package plot draws the benchmark charts as standalone SVG, with no
// dependency: a line chart (memory per connection against connections) and
// a grouped bar chart (deliveries per second per library).
package plot

import (
	"fmt"
	"math"
	"strings"
)

// Series is one library's values, one per x (Lines) or per group (Bars).
type Series struct {
	Name   string
	Values []float64
}

// palette gives each series a color that stays distinguishable in print.
var palette = []string{"#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d"}

const (
	width, height          = 720, 400
	left, right, top, bott = 80, 170, 40, 50
)

type canvas struct{ strings.Builder }

func (c *canvas) printf(format string, args ...any) { fmt.Fprintf(c, format, args...) }

func begin(title string) *canvas {
	c := new(canvas)
	c.printf(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	c.printf(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	c.printf(`<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", left, escape(title))
	return c
}

func (c *canvas) end() []byte {
	c.printf("</svg>\n")
	return []byte(c.String())
}

// axes draws the y axis from 0 to ymax with gridlines, and its label.
func (c *canvas) axes(ymax float64, ylabel string) {
	x0, y0, y1 := left, height-bott, top
	c.printf(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", x0, y0, width-right, y0)
	c.printf(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", x0, y0, x0, y1)
	for i := 0; i <= 5; i++ {
		v := ymax * float64(i) / 5
		y := yPos(v, ymax)
		c.printf(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", x0+1, y, width-right, y)
		c.printf(`<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", x0-6, y+4, human(v))
	}
	c.printf(`<text transform="translate(16 %d) rotate(-90)" text-anchor="middle">%s</text>`+"\n", (y0+y1)/2, escape(ylabel))
}

func (c *canvas) legend(series []Series) {
	for i, s := range series {
		y := top + 10 + 20*i
		c.printf(`<rect x="%d" y="%d" width="14" height="10" fill="%s"/>`+"\n", width-right+16, y-9, color(i))
		c.printf(`<text x="%d" y="%d">%s</text>`+"\n", width-right+36, y, escape(s.Name))
	}
}

func yPos(v, ymax float64) float64 {
	return float64(height-bott) - v/ymax*float64(height-bott-top)
}

// niceMax rounds the largest value up to 1, 2 or 5 times a power of ten.
func niceMax(series []Series) float64 {
	m := 0.0
	for _, s := range series {
		for _, v := range s.Values {
			m = max(m, v)
		}
	}
	if m <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(m)))
	for _, f := range []float64{1, 2, 5, 10} {
		if f*p >= m {
			return f * p
		}
	}
	return 10 * p
}

// Lines draws one line per series over xs, on a logarithmic y axis when
// logY is set (values spanning orders of magnitude, as memory does).
func Lines(title, xlabel, ylabel string, xs []float64, series []Series, logY bool) []byte {
	c := begin(title)
	y := func(v float64) float64 { return v }
	ymax := niceMax(series)
	if logY {
		// Plot log10(v) on a linear axis labelled in powers of ten.
		y = func(v float64) float64 { return math.Log10(max(v, 1)) }
		ymax = math.Ceil(y(ymax))
		x0, y0, y1 := left, height-bott, top
		c.printf(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", x0, y0, width-right, y0)
		c.printf(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", x0, y0, x0, y1)
		for e := 0.0; e <= ymax; e++ {
			yy := yPos(e, ymax)
			c.printf(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", x0+1, yy, width-right, yy)
			c.printf(`<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", x0-6, yy+4, human(math.Pow(10, e)))
		}
		c.printf(`<text transform="translate(16 %d) rotate(-90)" text-anchor="middle">%s</text>`+"\n", (y0+y1)/2, escape(ylabel))
	} else {
		c.axes(ymax, ylabel)
	}
	xmax := xs[len(xs)-1]
	xPos := func(x float64) float64 { return left + x/xmax*float64(width-right-left) }
	for _, x := range xs {
		c.printf(`<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", xPos(x), height-bott+16, human(x))
	}
	c.printf(`<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", (left+width-right)/2, height-12, escape(xlabel))
	for i, s := range series {
		var pts []string
		for j, v := range s.Values {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", xPos(xs[j]), yPos(y(v), ymax)))
		}
		c.printf(`<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(pts, " "), color(i))
		for _, p := range pts {
			xy := strings.Split(p, ",")
			c.printf(`<circle cx="%s" cy="%s" r="3" fill="%s"/>`+"\n", xy[0], xy[1], color(i))
		}
	}
	c.legend(series)
	return c.end()
}

// Bars draws, for each group, one bar per series.
func Bars(title, ylabel string, groups []string, series []Series) []byte {
	c := begin(title)
	ymax := niceMax(series)
	c.axes(ymax, ylabel)
	gw := float64(width-right-left) / float64(len(groups))
	bw := gw * 0.8 / float64(len(series))
	for g, name := range groups {
		gx := left + gw*float64(g)
		// A label "a, b" goes on two lines, so that long ones do not collide.
		for k, line := range strings.SplitN(name, ", ", 2) {
			c.printf(`<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", gx+gw/2, height-bott+16+14*k, escape(line))
		}
		for i, s := range series {
			if g >= len(s.Values) {
				continue
			}
			v := s.Values[g]
			x := gx + gw*0.1 + bw*float64(i)
			y := yPos(v, ymax)
			c.printf(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s: %s</title></rect>`+"\n",
				x, y, bw-1, float64(height-bott)-y, color(i), escape(s.Name), human(v))
		}
	}
	c.legend(series)
	return c.end()
}

func color(i int) string { return palette[i%len(palette)] }

// human formats a value with k or M, as axis labels do.
func human(v float64) string {
	switch {
	case v >= 1e6:
		return trim(fmt.Sprintf("%.1fM", v/1e6))
	case v >= 1e3:
		return trim(fmt.Sprintf("%.1fk", v/1e3))
	}
	return trim(fmt.Sprintf("%.1f", v))
}

func trim(s string) string { return strings.Replace(s, ".0", "", 1) }

func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
