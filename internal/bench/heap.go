package bench

import (
	"runtime"
	"runtime/metrics"
	"sync"
	"time"
)

// heapMetric is the bytes of heap objects, live or not yet swept: what the
// heap holds, without the garbage collector's slack.
const heapMetric = "/memory/classes/heap/objects:bytes"

// HeapSampler records the peak heap of the process over a span, sampling
// runtime/metrics (which does not stop the world) at a fixed interval. A
// peak can fall between samples; with an interval well below the time of
// one blob transfer it still shows whether memory grows with content size.
type HeapSampler struct {
	base     uint64
	peak     uint64
	stop     chan struct{}
	done     sync.WaitGroup
	sample   []metrics.Sample
	interval time.Duration
}

// StartHeapSampler collects garbage, takes the heap's size as the baseline
// and samples it every interval until Stop.
func StartHeapSampler(interval time.Duration) *HeapSampler {
	runtime.GC()
	h := &HeapSampler{
		stop:     make(chan struct{}),
		sample:   []metrics.Sample{{Name: heapMetric}},
		interval: interval,
	}
	h.base = h.read()
	h.peak = h.base
	h.done.Add(1)
	go h.run()
	return h
}

func (h *HeapSampler) read() uint64 {
	metrics.Read(h.sample)
	if h.sample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return h.sample[0].Value.Uint64()
}

func (h *HeapSampler) run() {
	defer h.done.Done()
	t := time.NewTicker(h.interval)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
			h.peak = max(h.peak, h.read())
		}
	}
}

// Stop ends sampling and returns the peak growth of the heap over the
// baseline, in bytes.
func (h *HeapSampler) Stop() uint64 {
	close(h.stop)
	h.done.Wait()
	h.peak = max(h.peak, h.read())
	return h.peak - h.base
}

// TotalAlloc returns the bytes allocated by the process so far.
func TotalAlloc() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc
}
