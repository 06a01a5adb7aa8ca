package main

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"strings"
	"time"
)

// Geometry of the timeline, in pixels.
const (
	svgWidth   = 1100
	svgLeft    = 200 // start of the plot; labels to the left
	svgRight   = 20
	svgTop     = 78 // below the title and legend
	svgBand    = 96 // height of one run
	svgHalf    = 34 // the tallest bar, above (ok) or below (failed) the baseline
	svgBin     = 100 * time.Millisecond
	svgAxis    = 40
	svgMinFail = 3 // the height of a bin with one failure: always visible
)

// Colours.
const (
	colOK      = "#4caf50"
	colFail    = "#d32f2f"
	colSigterm = "#ef6c00"
	colRemoved = "#1565c0"
	colExit    = "#616161"
	colHoldEnd = "#6a1b9a"
	colWindow  = "#fff3cd" // SIGTERM → endpoint removal: the balancer still routes here
)

// writeSVG writes a timeline: one band per run, time across, successes
// per 100ms above the line and failures below it, with the SIGTERM, the
// endpoint removal, the end of the hold (lameduck, adaptive) and the exit
// of every replaced backend marked.
func writeSVG(w io.Writer, cfg config, results []*result) error {
	bw := bufio.NewWriter(w)
	var span time.Duration
	var maxOK, maxFail int
	type bins struct{ ok, fail []int }
	all := make([]bins, len(results))
	for _, r := range results {
		span = max(span, r.total)
	}
	n := int(span/svgBin) + 1
	for i, r := range results {
		b := bins{make([]int, n), make([]int, n)}
		for _, o := range r.outcomes {
			j := min(int(o.end/svgBin), n-1)
			if o.kind == kindOK {
				b.ok[j]++
			} else {
				b.fail[j]++
			}
		}
		for j := range n {
			maxOK, maxFail = max(maxOK, b.ok[j]), max(maxFail, b.fail[j])
		}
		all[i] = b
	}
	plotW := float64(svgWidth - svgLeft - svgRight)
	x := func(d time.Duration) float64 { return svgLeft + plotW*float64(d)/float64(span) }
	binW := plotW * float64(svgBin) / float64(span)
	height := svgTop + svgBand*len(results) + svgAxis

	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif" font-size="12">`+"\n",
		svgWidth, height, svgWidth, height)
	p(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	p(`<text x="12" y="22" font-size="16" font-weight="bold">Rolling restart of %d backends: requests per %v, successes up, failures down</text>`+"\n",
		cfg.Backends, svgBin)
	p(`<text x="12" y="40" fill="#444">%d clients, %d%% POST, endpoint removal %v–%v after SIGTERM, lameduck hold %v, adaptive hold %v–%v (quiet %v), seed %d</text>`+"\n",
		cfg.Workers, int(100*cfg.PostRatio+0.5), cfg.DelayMin, cfg.DelayMax, cfg.Hold, cfg.Hold, cfg.HoldMax, cfg.HoldQuiet, cfg.Seed)
	legend := []struct{ kind, colour, text string }{
		{"bar", colOK, "ok"},
		{"bar", colFail, "failed (any kind)"},
		{"box", colWindow, "SIGTERM sent, endpoint still listed"},
		{"line", colSigterm, "SIGTERM"},
		{"line", colRemoved, "endpoint removed"},
		{"dot", colHoldEnd, "hold ended"},
		{"dash", colExit, "old process exited"},
	}
	lx := 12.0
	for _, l := range legend {
		switch l.kind {
		case "bar":
			p(`<rect x="%.0f" y="52" width="10" height="12" fill="%s"/>`, lx, l.colour)
		case "box":
			p(`<rect x="%.0f" y="52" width="10" height="12" fill="%s" stroke="#e0c070"/>`, lx, l.colour)
		case "line":
			p(`<line x1="%.0f" y1="51" x2="%.0f" y2="65" stroke="%s" stroke-width="2"/>`, lx+5, lx+5, l.colour)
		case "dot":
			p(`<line x1="%.0f" y1="51" x2="%.0f" y2="65" stroke="%s" stroke-width="2.5" stroke-dasharray="1.5,1.5"/>`, lx+5, lx+5, l.colour)
		case "dash":
			p(`<line x1="%.0f" y1="51" x2="%.0f" y2="65" stroke="%s" stroke-width="2" stroke-dasharray="3,2"/>`, lx+5, lx+5, l.colour)
		}
		p(`<text x="%.0f" y="62">%s</text>`+"\n", lx+15, html.EscapeString(l.text))
		lx += 15 + 7*float64(len(l.text)) + 18
	}

	for i, r := range results {
		top := float64(svgTop + svgBand*i)
		base := top + svgBand/2
		if i%2 == 1 {
			p(`<rect x="0" y="%.0f" width="%d" height="%d" fill="#f7f7f7"/>`+"\n", top, svgWidth, svgBand)
		}
		for _, s := range r.steps {
			p(`<rect x="%.1f" y="%.0f" width="%.1f" height="%d" fill="%s"/>`+"\n",
				x(s.sigterm), top+4, max(x(s.removed)-x(s.sigterm), 1), svgBand-8, colWindow)
		}
		b := all[i]
		for j := range n {
			bx := svgLeft + float64(j)*binW
			if b.ok[j] > 0 {
				h := float64(svgHalf) * float64(b.ok[j]) / float64(maxOK)
				p(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`, bx, base-h, binW*0.9, h, colOK)
			}
			if b.fail[j] > 0 {
				h := svgMinFail + float64(svgHalf-svgMinFail)*float64(b.fail[j]-1)/float64(max(maxFail-1, 1))
				p(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%d failed</title></rect>`,
					bx, base, binW*0.9, h, colFail, b.fail[j])
			}
		}
		p("\n")
		p(`<line x1="%d" y1="%.0f" x2="%d" y2="%.0f" stroke="#999" stroke-width="0.5"/>`+"\n", svgLeft, base, svgWidth-svgRight, base)
		for _, s := range r.steps {
			p(`<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="%s" stroke-width="1.5"/>`, x(s.sigterm), top+4, x(s.sigterm), top+svgBand-4, colSigterm)
			p(`<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="%s" stroke-width="1.5"/>`, x(s.removed), top+4, x(s.removed), top+svgBand-4, colRemoved)
			if end, ok := s.holdEnd(); ok {
				p(`<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="%s" stroke-width="2.5" stroke-dasharray="1.5,1.5"><title>held %v</title></line>`,
					x(end), top+4, x(end), top+svgBand-4, colHoldEnd, s.held.Round(time.Millisecond))
			}
			p(`<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="%s" stroke-width="1.5" stroke-dasharray="3,2"/>`+"\n",
				x(s.exited), top+4, x(s.exited), top+svgBand-4, colExit)
		}
		verdict, colour := fmt.Sprintf("%d failed", r.failed()), colFail
		if r.failed() == 0 {
			verdict, colour = "0 failed", "#2e7d32"
		}
		p(`<text x="12" y="%.0f" font-size="14" font-weight="bold">%s · %s</text>`+"\n", base-8, html.EscapeString(r.behaviour), strings.ToUpper(r.mode))
		p(`<text x="12" y="%.0f" font-size="13" fill="%s" font-weight="bold">%s</text>`+"\n", base+10, colour, verdict)
		p(`<text x="12" y="%.0f" fill="#555">of %d requests</text>`+"\n", base+26, r.requests())
	}

	axisY := float64(svgTop + svgBand*len(results))
	p(`<line x1="%d" y1="%.0f" x2="%d" y2="%.0f" stroke="#333"/>`+"\n", svgLeft, axisY, svgWidth-svgRight, axisY)
	for t := time.Duration(0); t <= span; t += time.Second {
		p(`<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#333"/>`, x(t), axisY, x(t), axisY+5)
		p(`<text x="%.1f" y="%.0f" text-anchor="middle">%ds</text>`+"\n", x(t), axisY+18, int(t.Seconds()))
	}
	p(`<text x="%d" y="%.0f" text-anchor="end" fill="#555">time since the load started (bars: %v bins, same scale in every row)</text>`+"\n",
		svgWidth-svgRight, axisY+34, svgBin)
	p("</svg>\n")
	return bw.Flush()
}
