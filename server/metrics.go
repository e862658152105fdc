package server

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/image-serve/image-serve/tree"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// treeStatsEvery is how often, at most, a scrape reads the tree's
// repository and tag counts again; scrapes in between get the last ones.
var treeStatsEvery = 30 * time.Second

// treeBytesEvery is how often, at most, the tree's size is measured: a
// walk of the tree, in the background, never while a scrape waits.
var treeBytesEvery = 5 * time.Minute

// unrouted is the route class of a request refused before the route
// table is consulted: a method other than GET and HEAD, a body, a path
// that is no clean path.
const unrouted = "none"

// Metrics are the embedded server's Prometheus metrics, served by
// Handler on an address of their own. The HTTP metrics take
// distribution's names (registry_http_*) and labels, with the route
// table's names (tree.Routes) as the handler label; what distribution has
// no metric for is image_serve_*. See docs/production.md.
type Metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	size      *prometheus.HistogramVec
	inFlight  prometheus.Gauge
	repoBytes *prometheus.CounterVec
}

// NewMetrics returns the metrics of a server of root, with the Go
// runtime's and the process's own (go_*, process_*). The tree's
// repository and tag counts are read from its _catalog and tags/list
// files — what every writer keeps up to date — at most every
// treeStatsEvery, when scraped. treeBytes, if not nil, measures the
// tree's size: it is called now and then at most every treeBytesEvery, in
// the background, and scrapes report its last answer.
func NewMetrics(root tree.Reader, log *slog.Logger, treeBytes func() (int64, error)) *Metrics {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "registry", Subsystem: "http", Name: "requests_total",
			Help: "Requests answered, by status code, method and route (handler).",
		}, []string{"code", "method", "handler"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "registry", Subsystem: "http", Name: "request_duration_seconds",
			Help:    "Time from the request's headers read to the last byte of the answer written, by route (handler) and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"handler", "method"}),
		size: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "registry", Subsystem: "http", Name: "response_size_bytes",
			Help:    "Bytes of response bodies sent, by route (handler).",
			Buckets: prometheus.ExponentialBuckets(256, 8, 9), // 256 B … 4 GiB
		}, []string{"handler"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "registry", Subsystem: "http", Name: "in_flight_requests",
			Help: "Requests being answered.",
		}),
		repoBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "image_serve", Name: "repository_sent_bytes_total",
			Help: "Body bytes of successful (2xx) answers about a repository (manifests, blobs, tags, referrers), by repository.",
		}, []string{"repository"}),
	}
	m.reg.MustRegister(m.requests, m.duration, m.size, m.inFlight, m.repoBytes,
		newTreeCollector(root, log, treeBytes),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in Prometheus's exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Gatherer is the registry the metrics are in, for tests.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// observe records one answered request of route class rt (unrouted for
// none), about repository repo ("" for none).
func (m *Metrics) observe(method, rt, repo string, status int, bytes int64, d time.Duration) {
	if rt == "" {
		rt = unrouted
	}
	method = methodLabel(method)
	m.requests.WithLabelValues(strconv.Itoa(status), method, rt).Inc()
	m.duration.WithLabelValues(rt, method).Observe(d.Seconds())
	m.size.WithLabelValues(rt).Observe(float64(bytes))
	// Only a 2xx names a repository that exists: a name from a 404 would
	// let any client create label values without end.
	if repo != "" && status >= 200 && status < 300 {
		m.repoBytes.WithLabelValues(repo).Add(float64(bytes))
	}
}

// methodLabel is method as a label value: the methods of RFC 9110 and
// PATCH as they are, anything else "other", so that no client can create
// label values without end.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return method
	}
	return "other"
}

// treeCollector reports the tree's repository and tag counts, read from
// the files the servers send for _catalog and tags/list.
type treeCollector struct {
	root      tree.Reader
	log       *slog.Logger
	treeBytes func() (int64, error) // nil: no size reported

	mu      sync.Mutex
	read    time.Time
	repos   int
	tags    int
	readErr bool

	sizeMu    sync.Mutex
	measured  time.Time // when the last measure started
	measuring bool
	bytes     int64
	sizeErr   bool
}

func newTreeCollector(root tree.Reader, log *slog.Logger, treeBytes func() (int64, error)) *treeCollector {
	c := &treeCollector{root: root, log: log, treeBytes: treeBytes}
	c.measure()
	return c
}

// measure starts a measure of the tree's size unless one runs or the last
// one started less than treeBytesEvery ago.
func (c *treeCollector) measure() {
	if c.treeBytes == nil {
		return
	}
	c.sizeMu.Lock()
	defer c.sizeMu.Unlock()
	if now := time.Now(); c.measuring || (!c.measured.IsZero() && now.Sub(c.measured) < treeBytesEvery) {
		return
	}
	c.measuring, c.measured = true, time.Now()
	go func() {
		n, err := c.treeBytes()
		c.sizeMu.Lock()
		defer c.sizeMu.Unlock()
		c.measuring = false
		if err != nil {
			if !c.sizeErr {
				c.log.Warn("metrics: cannot measure the tree", "err", err)
			}
			c.sizeErr = true
			return
		}
		c.bytes, c.sizeErr = n, false
	}()
}

var (
	treeReposDesc = prometheus.NewDesc("image_serve_tree_repositories",
		"Repositories the tree's _catalog lists (read at most every 30 s).", nil, nil)
	treeTagsDesc = prometheus.NewDesc("image_serve_tree_tags",
		"Tags the tree's tags/list files list, all repositories together (read at most every 30 s).", nil, nil)
	treeBytesDesc = prometheus.NewDesc("image_serve_tree_bytes",
		"Bytes of the tree's files, each inode once (measured at most every 5 min, in the background; 0 until the first measure ends).", nil, nil)
)

func (c *treeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- treeReposDesc
	ch <- treeTagsDesc
	if c.treeBytes != nil {
		ch <- treeBytesDesc
	}
}

func (c *treeCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); c.read.IsZero() || now.Sub(c.read) >= treeStatsEvery {
		c.read = now
		repos, tags, err := countTags(c.root)
		if err != nil {
			// Logged once per failing spell, not per scrape.
			if !c.readErr {
				c.log.Warn("metrics: cannot count the tree's tags", "err", err)
			}
			c.readErr = true
		} else {
			c.repos, c.tags, c.readErr = repos, tags, false
		}
	}
	ch <- prometheus.MustNewConstMetric(treeReposDesc, prometheus.GaugeValue, float64(c.repos))
	ch <- prometheus.MustNewConstMetric(treeTagsDesc, prometheus.GaugeValue, float64(c.tags))
	if c.treeBytes != nil {
		c.measure()
		c.sizeMu.Lock()
		n := c.bytes
		c.sizeMu.Unlock()
		ch <- prometheus.MustNewConstMetric(treeBytesDesc, prometheus.GaugeValue, float64(n))
	}
}

// countTags reads _catalog, then every listed repository's tags/list,
// through the tree's FS. A root awaiting its first tree has none.
func countTags(root tree.Reader) (repos, tags int, err error) {
	fsys := root.FS().Hold()
	defer fsys.Close()
	var catalog struct {
		Repositories []string `json:"repositories"`
	}
	if err := readJSON(fsys, route(tree.RouteCatalog), tree.Match{}, &catalog); err != nil {
		if missing(err) {
			return 0, 0, nil
		}
		return 0, 0, err
	}
	for _, repo := range catalog.Repositories {
		var list struct {
			Tags []string `json:"tags"`
		}
		if err := readJSON(fsys, route(tree.RouteTagsList), tree.Match{Repo: repo}, &list); err != nil {
			if missing(err) { // removed since _catalog was read
				continue
			}
			return 0, 0, err
		}
		tags += len(list.Tags)
	}
	return len(catalog.Repositories), tags, nil
}

// maxListing bounds a listing read for the metrics.
const maxListing = 64 << 20

func readJSON(fsys tree.FS, rt *tree.Route, m tree.Match, v any) error {
	f, _, err := openFile(fsys, m.Expand(rt.Files[0]))
	if err != nil {
		return err
	}
	defer f.Close()
	return json.NewDecoder(io.LimitReader(f, maxListing)).Decode(v)
}
