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
// treeStatsEvery, when scraped.
func NewMetrics(root tree.Reader, log *slog.Logger) *Metrics {
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
		&treeCollector{root: root, log: log},
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
	m.requests.WithLabelValues(strconv.Itoa(status), method, rt).Inc()
	m.duration.WithLabelValues(rt, method).Observe(d.Seconds())
	m.size.WithLabelValues(rt).Observe(float64(bytes))
	// Only a 2xx names a repository that exists: a name from a 404 would
	// let any client create label values without end.
	if repo != "" && status >= 200 && status < 300 {
		m.repoBytes.WithLabelValues(repo).Add(float64(bytes))
	}
}

// treeCollector reports the tree's repository and tag counts, read from
// the files the servers send for _catalog and tags/list.
type treeCollector struct {
	root tree.Reader
	log  *slog.Logger

	mu      sync.Mutex
	read    time.Time
	repos   int
	tags    int
	readErr bool
}

var (
	treeReposDesc = prometheus.NewDesc("image_serve_tree_repositories",
		"Repositories the tree's _catalog lists (read at most every 30 s).", nil, nil)
	treeTagsDesc = prometheus.NewDesc("image_serve_tree_tags",
		"Tags the tree's tags/list files list, all repositories together (read at most every 30 s).", nil, nil)
)

func (c *treeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- treeReposDesc
	ch <- treeTagsDesc
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
