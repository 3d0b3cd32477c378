package plot

import (
	"encoding/xml"
	"io"
	"strings"
	"testing"
)

// wellFormed parses svg as XML, as a browser would before drawing it.
func wellFormed(t *testing.T, svg []byte) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(string(svg)))
	for {
		_, err := d.Token()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("not well-formed: %v\n%s", err, svg)
		}
	}
}

func TestCharts(t *testing.T) {
	series := []Series{{"a<b", []float64{200, 150, 120}}, {"c", []float64{17000, 17100, 17200}}}
	lines := Lines("memory", "connections", "bytes", []float64{2000, 5000, 19000}, series, true)
	wellFormed(t, lines)
	if !strings.Contains(string(lines), "a&lt;b") || strings.Count(string(lines), "<polyline") != 2 {
		t.Errorf("line chart lacks its series:\n%s", lines)
	}
	bars := Bars("broadcast", "deliveries/s", []string{"64 B", "1 KiB"}, series[:1])
	wellFormed(t, bars)
	if strings.Count(string(bars), "<rect") != 2+2 { // background, legend, two bars
		t.Errorf("bar chart has %d rects:\n%s", strings.Count(string(bars), "<rect"), bars)
	}
}
