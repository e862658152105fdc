// Package bench holds what the benchmarks share: medians and ratios of
// runs alternated with a reference tool, a peak-heap sampler, and a
// generator of OCI image layouts with incompressible layers.
//
// Machines here are noisy (two cores shared by client, server and
// reference), so benchmarks report medians and ratios, never absolute
// thresholds. A ratio is always our time over the reference's time for
// the same work: below 1 we are faster.
//
// Metric names follow one convention, which cmd/benchsummary relies on:
// "<name>-ms" is the median wall time of one run of <name>, and
// "ratio-vs-<ref>" is the median time of ours divided by that of <ref>.
package bench

import (
	"math"
	"slices"
	"testing"
	"time"
)

// Median returns the median of ds (the mean of the middle two for an even
// count), or 0 for none.
func Median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Ratio returns a/b, NaN when b is 0.
func Ratio(a, b time.Duration) float64 {
	if b == 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}

// Pair collects the wall times of two contenders run alternately: ours and
// a reference. Alternating, and swapping who goes first on every round,
// spreads the machine's noise (other jobs, page cache, CPU frequency) over
// both instead of over whichever ran last.
type Pair struct {
	Ours, Ref         string // names in metrics: "image-serve", "skopeo"
	OursRuns, RefRuns []time.Duration
	round             int
}

// Round runs ours and ref once each, ours first on even rounds and ref
// first on odd ones, and records their wall times. It stops at the first
// error.
func (p *Pair) Round(ours, ref func() error) error {
	first, second := ours, ref
	firstRuns, secondRuns := &p.OursRuns, &p.RefRuns
	if p.round%2 == 1 {
		first, second = ref, ours
		firstRuns, secondRuns = &p.RefRuns, &p.OursRuns
	}
	p.round++
	for _, r := range []struct {
		f    func() error
		runs *[]time.Duration
	}{{first, firstRuns}, {second, secondRuns}} {
		start := time.Now()
		if err := r.f(); err != nil {
			return err
		}
		*r.runs = append(*r.runs, time.Since(start))
	}
	return nil
}

// Medians returns the median time of ours and of the reference.
func (p *Pair) Medians() (ours, ref time.Duration) {
	return Median(p.OursRuns), Median(p.RefRuns)
}

// Report reports the two medians in milliseconds ("<name>-ms") and their
// ratio ("ratio-vs-<ref>") as metrics of b.
func (p *Pair) Report(b *testing.B) {
	b.Helper()
	ours, ref := p.Medians()
	b.ReportMetric(Millis(ours), p.Ours+"-ms")
	b.ReportMetric(Millis(ref), p.Ref+"-ms")
	b.ReportMetric(Ratio(ours, ref), "ratio-vs-"+p.Ref)
	b.Logf("%d rounds: %s median %v %v; %s median %v %v", len(p.OursRuns),
		p.Ours, ours.Round(time.Microsecond), round(p.OursRuns),
		p.Ref, ref.Round(time.Microsecond), round(p.RefRuns))
}

// Millis returns d in (fractional) milliseconds.
func Millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func round(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Microsecond)
	}
	return out
}
